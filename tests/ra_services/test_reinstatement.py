"""Reinstating a suspended subscriber or ARO is under dual control: an RA operator proposes, a different
RA approver approves or refuses (``ra.dual-control``), every step and every refusal audited."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from smki.audit import AuditEvent
from smki.errors import SmkiError
from smki.services import registry as reg
from smki.services import reinstatement as rein
from smki.services.context import Home
from tests.ra_services.conftest import audit_after, head, qualified_party, verified_aro


def _suspended_subscriber(home: Home) -> None:
    qualified_party(home)
    with home.store.transaction() as tx:  # as an approved application would leave it
        tx.registry.set_subscription("P1", "device", "approved")
        tx.append_audit([AuditEvent("test", "test.setup", "P1")])
    reg.set_subscriber_standing(home, "P1", "device", "suspended", staff_id="op1", reason="complaint")


def _standing(home: Home) -> str:
    return reg.show_party(home, "P1").subscriptions["device"]


def _refused(code: str, attempt: Callable[[], object]) -> SmkiError:
    with pytest.raises(SmkiError) as info:
        attempt()
    assert info.value.code == code, info.value
    return info.value


def test_a_subscriber_is_reinstated_only_by_a_second_person(staffed: Home) -> None:
    home = staffed
    _suspended_subscriber(home)
    seq = head(home)
    _refused("ra.staff-role", lambda: rein.propose_subscriber_reinstatement(home, "P1", "device", staff_id="ap1"))
    proposal = rein.propose_subscriber_reinstatement(home, "P1", "device", staff_id="boss", reason="resolved")
    assert (proposal.kind, proposal.subject, proposal.policy, proposal.status) == ("subscriber", "P1", "device",
                                                                                  "pending")
    assert _standing(home) == "suspended"  # a proposal alone changes nothing
    _refused("ra.already-proposed", lambda: rein.propose_subscriber_reinstatement(home, "P1", "device",
                                                                                   staff_id="op1"))
    # The proposer never decides, even holding the approver role; an operator is not an approver.
    err = _refused("ra.dual-control", lambda: rein.decide_reinstatement(home, proposal.item, staff_id="boss",
                                                                         approve=True))
    assert "boss proposed this" in err.message
    _refused("ra.staff-role", lambda: rein.decide_reinstatement(home, proposal.item, staff_id="op2", approve=True))
    assert _standing(home) == "suspended"
    done = rein.decide_reinstatement(home, proposal.item, staff_id="ap1", approve=True)
    assert (done.status, done.decided_by) == ("approved", "ap1") and _standing(home) == "approved"
    _refused("ra.already-decided", lambda: rein.decide_reinstatement(home, proposal.item, staff_id="ap2",
                                                                      approve=False))
    events = audit_after(home, seq)
    assert [(actor, action) for actor, action, _ in events] == [
        ("ap1", "staff.refused"),
        ("boss", "subscriber.reinstatement-proposed"),
        ("boss", "subscriber.dual-control-refused"),
        ("op2", "staff.refused"),
        ("ap1", "subscriber.reinstated"),
    ]
    refused = events[2][2]
    assert refused["rule"] == "ra.dual-control" and refused["proposed_by"] == "boss"
    assert {k: events[4][2][k] for k in ("from", "to", "policy", "proposed_by", "item", "reason")} == {
        "from": "suspended", "to": "approved", "policy": "device", "proposed_by": "boss", "item": proposal.item,
        "reason": "resolved"}
    assert rein.reinstatements(home) == []
    assert [r.item for r in rein.reinstatements(home, pending_only=False)] == [proposal.item]


def test_the_same_person_is_refused_whatever_the_case_of_their_id(staffed: Home) -> None:
    home = staffed
    with home.store.transaction() as tx:  # ``add_staff`` refuses it now; a home from before may hold it
        tx.registry.add_staff("OP1", "Olive again, other case", ["ra-approver"])
        tx.append_audit([AuditEvent("admin", "staff.added", "OP1", {"roles": ["ra-approver"]})])
    _suspended_subscriber(home)
    proposal = rein.propose_subscriber_reinstatement(home, "P1", "device", staff_id="op1")
    _refused("ra.dual-control", lambda: rein.decide_reinstatement(home, proposal.item, staff_id="OP1",
                                                                   approve=True))
    assert _standing(home) == "suspended"


def test_only_a_suspended_subscriber_is_proposed_and_approval_checks_again(staffed: Home) -> None:
    home = staffed
    qualified_party(home)
    _refused("ra.bad-standing", lambda: rein.propose_subscriber_reinstatement(home, "P1", "device", staff_id="op1"))
    _refused("ra.party-not-found", lambda: rein.propose_subscriber_reinstatement(home, "NOPE", "device",
                                                                                 staff_id="op1"))
    with home.store.transaction() as tx:
        tx.registry.set_subscription("P1", "device", "approved")
        tx.append_audit([AuditEvent("test", "test.setup", "P1")])
    reg.set_subscriber_standing(home, "P1", "device", "suspended", staff_id="op1")
    proposal = rein.propose_subscriber_reinstatement(home, "P1", "device", staff_id="op1")
    reg.set_subscriber_standing(home, "P1", "device", "withdrawn", staff_id="op2")  # meanwhile: withdrawn
    _refused("ra.bad-standing", lambda: rein.decide_reinstatement(home, proposal.item, staff_id="ap1", approve=True))
    assert _standing(home) == "withdrawn"
    refused = rein.decide_reinstatement(home, proposal.item, staff_id="ap1", approve=False, reason="withdrawn")
    assert refused.status == "refused" and _standing(home) == "withdrawn"


def test_an_aro_is_reinstated_only_by_a_second_person_and_a_refusal_leaves_it_suspended(staffed: Home) -> None:
    home = staffed
    qualified_party(home)
    verified_aro(home)
    _refused("ra.bad-status", lambda: rein.propose_aro_reinstatement(home, "A1", staff_id="op1"))
    reg.set_aro_status(home, "A1", "suspended", staff_id="ap1", reason="investigation")
    first = rein.propose_aro_reinstatement(home, "A1", staff_id="op1")
    _refused("ra.staff-role", lambda: rein.decide_reinstatement(home, first.item, staff_id="op1", approve=False))
    assert rein.decide_reinstatement(home, first.item, staff_id="ap2", approve=False).status == "refused"
    assert home.store.registry.aro("A1").status == "suspended"  # type: ignore[union-attr]
    second = rein.propose_aro_reinstatement(home, "A1", staff_id="op2", reason="cleared")
    seq = head(home)
    assert rein.decide_reinstatement(home, second.item, staff_id="ap1", approve=True).kind == "aro"
    assert home.store.registry.aro("A1").status == "active"  # type: ignore[union-attr]
    [(actor, action, details)] = audit_after(home, seq)
    assert (actor, action, details["from"], details["to"], details["proposed_by"], details["party"]) == (
        "ap1", "aro.reinstated", "suspended", "active", "op2", "P1")
    reg.set_aro_status(home, "A1", "revoked", staff_id="op1")
    _refused("ra.bad-status", lambda: rein.propose_aro_reinstatement(home, "A1", staff_id="op1"))


def test_a_ca_revocation_proposal_is_not_a_reinstatement(staffed: Home) -> None:
    home = staffed
    with home.store.transaction() as tx:
        item = tx.registry.propose_dual_control("ca.revoke", "01", {"reason": 1, "kind": "organisation-ca"}, "op1")
        tx.append_audit([AuditEvent("test", "test.setup", "01")])
    _refused("ra.not-found", lambda: rein.decide_reinstatement(home, item, staff_id="ap1", approve=True))
    assert rein.reinstatements(home) == []


def test_an_approval_never_undoes_a_withdrawal_committed_after_its_checks(staffed: Home,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Approval checks that the subscriber is still suspended, then reinstates it in a transaction of
    its own: a withdrawal committed in between (stood in for by the check passing on a withdrawn
    subscriber) must stand, and the proposal stay pending."""
    home = staffed
    _suspended_subscriber(home)
    proposal = rein.propose_subscriber_reinstatement(home, "P1", "device", staff_id="op1")
    reg.set_subscriber_standing(home, "P1", "device", "withdrawn", staff_id="op1", reason="left the SEC")
    monkeypatch.setattr(rein, "_require_suspended_subscriber", lambda *_args: None)  # the check ran before it
    _refused("ra.bad-standing", lambda: rein.decide_reinstatement(home, proposal.item, staff_id="ap1", approve=True))
    assert _standing(home) == "withdrawn"
    assert rein.reinstatement(home, proposal.item).status == "pending"
