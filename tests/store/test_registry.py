"""The RA register in the store: records round-trip, conflicts are coded, changes need an audit record."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.audit import AuditEvent
from smki.errors import SmkiError
from smki.store import Store

ENTITY = bytes.fromhex("90b3d51f30010000")


def _audit(tx_action: str) -> list[AuditEvent]:
    return [AuditEvent("ra:test", tx_action, "x")]


def test_party_with_entities_subscriptions_and_aros_round_trips(store: Store) -> None:
    with store.transaction() as tx:
        tx.registry.add_party("SUP1", "Supplier One", "large-supplier")
        tx.registry.update_party("SUP1", srept_passed=date(2019, 1, 2))
        tx.registry.start_period("SUP1", "gateway-connection", "GW-1", on=date(2019, 1, 2), by="op1")
        tx.registry.start_period("SUP1", "registered-role", "import-supplier", on=date(2019, 1, 2), by="op1")
        tx.registry.set_entity("SUP1", ENTITY, [2, 2, 127])
        tx.registry.set_subscription("SUP1", "device", "approved")
        tx.registry.add_aro("ARO1", "SUP1", "Ann Example", "SRO Sam")
        tx.registry.update_aro("ARO1", identity_verified=date(2020, 1, 1), verified_by="op1",
                               identity_check="passport")
        tx.append_audit(_audit("party.added"))
    party = store.registry.require_party("SUP1")
    assert party.srept_passed == date(2019, 1, 2) and party.uept_completed is None
    assert party.gateway_connections == ("GW-1",)
    assert party.entities == {ENTITY: (2, 127)}
    assert party.subscriptions == {"device": "approved"}
    assert store.registry.party_for_entity(ENTITY) == "SUP1"
    aro = store.registry.aro("ARO1")
    assert aro is not None and aro.identity_verified == date(2020, 1, 1) and aro.status == "active"
    with store.transaction() as tx:
        tx.registry.set_subscription("SUP1", "device", "suspended")
        tx.append_audit(_audit("subscriber.suspended"))
    assert store.registry.require_party("SUP1").subscriptions["device"] == "suspended"


def test_an_entity_identifier_belongs_to_one_party(store: Store) -> None:
    with store.transaction() as tx:
        tx.registry.add_party("A", "A", "other")
        tx.registry.add_party("B", "B", "other")
        tx.registry.set_entity("A", ENTITY, [2])
        tx.append_audit(_audit("party.added"))
    with pytest.raises(SmkiError) as info, store.transaction() as tx:
        tx.registry.set_entity("B", ENTITY, [2])
    assert info.value.code == "ra.entity-taken"


def test_application_status_changes_only_from_the_expected_status(store: Store) -> None:
    with store.transaction() as tx:
        tx.registry.add_party("A", "A", "other")
        app_id = tx.registry.add_application("A", "device")
        tx.registry.add_evidence(app_id, "installation-need", "REF-1", "op1", date(2020, 1, 1))
        tx.registry.update_application(app_id, expect_status="open", status="proposed", proposed_by="op1",
                                       proposal={"outcome": "approve"})
        tx.append_audit(_audit("application.proposed"))
    record = store.registry.application(app_id)
    assert record is not None and record.status == "proposed" and record.proposal == {"outcome": "approve"}
    assert [e.reference for e in record.evidence] == ["REF-1"]
    with pytest.raises(SmkiError) as info, store.transaction() as tx:  # a concurrent decision got there first
        tx.registry.update_application(app_id, expect_status="open", status="proposed")
    assert info.value.code == "ra.already-decided"
    with pytest.raises(SmkiError) as info, store.transaction() as tx:
        tx.registry.update_application(app_id + 99, expect_status="open", status="proposed")
    assert info.value.code == "ra.not-found"
    with store.transaction() as tx:
        item = tx.registry.propose_dual_control("ca.revoke", "01", {}, "op1")
        tx.registry.decide_dual_control(item, "approved", "ap1")
        tx.append_audit(_audit("ca.revocation-approved"))
    for target, code in ((item, "ra.already-decided"), (item + 99, "ra.not-found")):  # the loser of a race; none
        with pytest.raises(SmkiError) as info, store.transaction() as tx:
            tx.registry.decide_dual_control(target, "approved", "ap2")
        assert info.value.code == code


def test_register_changes_need_an_audit_record(store: Store) -> None:
    with pytest.raises(SmkiError) as info, store.transaction() as tx:
        tx.registry.add_party("A", "A", "other")
    assert info.value.code == "store.unaudited-change"
    assert store.registry.party("A") is None


_entity_sets = st.dictionaries(st.binary(min_size=8, max_size=8),
                               st.lists(st.sampled_from([1, 2, 3, 4, 127]), min_size=1, max_size=4), max_size=4)
_subscription_sets = st.dictionaries(st.sampled_from(["organisation", "device"]),
                                     st.sampled_from(["approved", "suspended", "withdrawn"]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=st.lists(st.tuples(_entity_sets, _subscription_sets), min_size=1, max_size=3))
def test_a_party_read_in_one_statement_is_the_party_read_in_three(
        store: Store, shapes: list[tuple[dict[bytes, list[int]], dict[str, str]]]) -> None:
    """``registry.party`` reads a Party, its entities and its subscriptions in one statement (every
    Device request reads one); ``registry.parties`` still reads them one table at a time. Both
    give the same record, whatever the Party has or lacks."""
    tag = uuid.uuid4().hex[:8]
    seen: set[bytes] = set()
    with store.transaction() as tx:
        for n, (entities, subscriptions) in enumerate(shapes):
            tx.registry.add_party(f"{tag}-{n}", f"Party {n}", "other")
            for entity, roles in entities.items():
                entity = bytes([n]) + entity[1:]  # one Party's entities are not another's
                if entity in seen or store.registry.party_for_entity(entity) is not None:
                    continue
                seen.add(entity)
                tx.registry.set_entity(f"{tag}-{n}", entity, roles)
            for policy, standing in subscriptions.items():
                tx.registry.set_subscription(f"{tag}-{n}", policy, standing)
        tx.append_audit(_audit("party.added"))
    everyone = {p.party_id: p for p in store.registry.parties()}
    for n in range(len(shapes)):
        assert store.registry.party(f"{tag}-{n}") == everyone[f"{tag}-{n}"]
    assert store.registry.party(f"{tag}-none") is None
