"""Credentials in the store: the one-statement read of a credential, its ARO and its Party (every request's)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.audit import AuditEvent
from smki.store import Store
from smki.store.credentials import CredentialRecord, credential_reads, credential_writes

_NOW = datetime(2026, 12, 6, tzinfo=UTC)
_entity_numbers = itertools.count()

#: (kind, how it names its ARO: by aro_id, by an empty aro_id and its name, or by its name alone,
#: whether that ARO exists, whether the name is also another existing ARO's id, which Party it names:
#: one with entities and subscriptions, one with neither, none at all, or one that does not exist)
_shapes = st.tuples(st.sampled_from(["aro", "system", "staff"]), st.sampled_from(["aro_id", "empty", "none"]),
                    st.booleans(), st.booleans(), st.sampled_from(["full", "bare", "none", "missing"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=st.lists(_shapes, min_size=1, max_size=4), entities=st.integers(0, 3), subscriptions=st.integers(0, 2),
       periods=st.integers(0, 3))
def test_a_credential_its_aro_and_its_party_read_in_one_statement_are_the_three_reads(
        store: Store, shapes: list[tuple[str, str, bool, bool, str]], entities: int, subscriptions: int,
        periods: int) -> None:
    """``credential_aro_and_party`` is what a request read in three statements: the credential, the
    ARO named by its ``aro_id`` (or, when that is empty, its ``name``), none for RA staff, and the
    Party it names, with however many entities and subscriptions, or none."""
    tag = uuid.uuid4().hex[:8]
    reads = credential_reads(store)
    serials = []
    party_of = {"full": f"P-{tag}", "bare": f"Q-{tag}", "none": None, "missing": f"X-{tag}"}
    with store.transaction() as tx:
        tx.registry.add_party(f"P-{tag}", "Party", "other")
        tx.registry.add_party(f"Q-{tag}", "Bare Party", "other")
        for e in range(entities):
            # distinct across the examples sharing this store: two random bytes collided (ra.entity-taken)
            tx.registry.set_entity(f"P-{tag}", (0x90B3D51F30000000 + next(_entity_numbers)).to_bytes(8, "big"),
                                   [1 + e % 4])
        for policy in ("organisation", "device")[:subscriptions]:
            tx.registry.set_subscription(f"P-{tag}", policy, "approved")
        for p in range(periods):  # dated Gateway Connections (migration 0013), one of them ended
            tx.registry.start_period(f"P-{tag}", "gateway-connection", f"GW-{p}", on=date(2020, 1, 1 + p), by="t")
        if periods:
            tx.registry.end_period(f"P-{tag}", "gateway-connection", "GW-0", on=date(2021, 1, 1), by="t")
        tx.registry.add_aro(f"other-{tag}", f"P-{tag}", "Other", "ra:test")
        for n, (kind, naming, exists, name_is_other, party) in enumerate(shapes):
            aro_id = f"A{n}-{tag}"
            if exists:
                tx.registry.add_aro(aro_id, f"P-{tag}", f"ARO {n}", "ra:test")
            name = f"other-{tag}" if name_is_other else aro_id
            serial = f"{tag}{n:04x}"
            credential_writes(tx).add_credential(CredentialRecord(
                serial, kind, name if naming != "aro_id" else f"name-{n}", party_of[party],
                {"aro_id": aro_id, "empty": "", "none": None}[naming], "active", _NOW, _NOW + timedelta(days=1),
                _NOW, None, b"der"))
            serials.append(serial)
        tx.append_audit([AuditEvent("ra:test", "credential.issued", tag)])
    for serial in [*serials, f"{tag}-unknown"]:
        record = reads.credential(serial)
        aro = None if record is None or record.kind == "staff" else store.registry.aro(record.aro_id or record.name)
        party = None if record is None or record.party_id is None else store.registry.party(record.party_id)
        assert reads.credential_aro_and_party(serial) == (record, aro, party)
        if party is not None:  # the one-statement read is also what the per-table reads of ``parties()`` give
            assert party == next(p for p in store.registry.parties() if p.party_id == party.party_id)
