"""Credentials in the store: the one-statement read of a credential and its ARO (every request's)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.audit import AuditEvent
from smki.store import Store
from smki.store.credentials import CredentialRecord, credential_reads, credential_writes

_NOW = datetime(2026, 12, 6, tzinfo=UTC)

#: (kind, how it names its ARO: by aro_id, by an empty aro_id and its name, or by its name alone,
#: whether that ARO exists, whether the name is also another existing ARO's id)
_shapes = st.tuples(st.sampled_from(["aro", "system", "staff"]), st.sampled_from(["aro_id", "empty", "none"]),
                    st.booleans(), st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=st.lists(_shapes, min_size=1, max_size=4))
def test_a_credential_and_its_aro_read_in_one_statement_are_the_two_reads(
        store: Store, shapes: list[tuple[str, str, bool, bool]]) -> None:
    """``credential_and_aro`` is what the identity check read in two statements: the credential, and
    the ARO named by its ``aro_id`` (or, when that is empty, its ``name``), none for RA staff."""
    tag = uuid.uuid4().hex[:8]
    reads = credential_reads(store)
    serials = []
    with store.transaction() as tx:
        tx.registry.add_party(f"P-{tag}", "Party", "other")
        tx.registry.add_aro(f"other-{tag}", f"P-{tag}", "Other", "ra:test")
        for n, (kind, naming, exists, name_is_other) in enumerate(shapes):
            aro_id = f"A{n}-{tag}"
            if exists:
                tx.registry.add_aro(aro_id, f"P-{tag}", f"ARO {n}", "ra:test")
            name = f"other-{tag}" if name_is_other else aro_id
            serial = f"{tag}{n:04x}"
            credential_writes(tx).add_credential(CredentialRecord(
                serial, kind, name if naming != "aro_id" else f"name-{n}", f"P-{tag}",
                {"aro_id": aro_id, "empty": "", "none": None}[naming], "active", _NOW, _NOW + timedelta(days=1),
                _NOW, None, b"der"))
            serials.append(serial)
        tx.append_audit([AuditEvent("ra:test", "credential.issued", tag)])
    for serial in [*serials, f"{tag}-unknown"]:
        record = reads.credential(serial)
        expected = None if record is None or record.kind == "staff" else store.registry.aro(
            record.aro_id or record.name)
        assert reads.credential_and_aro(serial) == (record, expected)
