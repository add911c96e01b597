"""Applications under dual control: propose, approve or refuse, stored decisions, explanations."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from smki.audit import AuditEvent
from smki.errors import SmkiError
from smki.ra import Decision, PolicyRefusal
from smki.services import applications as apps
from smki.services import registry as reg
from smki.services.context import Home
from tests.ra_services.conftest import ENTITY, OTHER_ENTITY, audit_after, head, qualified_party

NEED = "installation-need"


def _device_application(home: Home, *, evidence: bool = True) -> int:
    app = apps.apply(home, "P1", "device", staff_id="op1")
    if evidence:
        apps.add_evidence(home, app.application_id, NEED, "RA-EV-0042 rollout plan", staff_id="op1")
    return app.application_id


def test_propose_then_a_different_approver_approves_and_both_decisions_are_stored(staffed: Home) -> None:
    home = staffed
    qualified_party(home)
    app_id = _device_application(home)
    assert reg.show_party(home, "P1").subscriptions == {"device": "applied"}
    seq = head(home)
    proposed = apps.propose(home, app_id, staff_id="op1")
    assert proposed.application.status == "proposed" and proposed.decision.approved
    done = apps.approve(home, app_id, staff_id="ap1")
    assert done.application.status == "approved" and done.application.decided_by == "ap1"
    assert reg.show_party(home, "P1").subscriptions == {"device": "approved"}
    proposal, final = apps.stored_decisions(done.application)
    assert proposal == proposed.decision and final == done.decision
    assert final is not None and final.ruleset == "MP127"
    assert [r.rule_id for r in final.results] == [
        "any.srept-passed", "device.evidence-of-need", "device.uept-completed", "device.gateway-channel"]
    events = audit_after(home, seq)
    assert [(actor, action) for actor, action, _ in events] == [
        ("op1", "application.proposed"), ("ap1", "application.approved")]
    assert Decision.from_dict(events[1][2]["decision"]) == final  # type: ignore[arg-type]
    text = apps.explain(home, app_id)
    assert "== Proposal by op1" in text and "== Decision: approved by ap1" in text
    assert "RA-EV-0042 rollout plan" in text
    assert text.count("PASS    device.uept-completed") == 2
    assert "ref: SEC Appendix D (SMKI RAPP) §5.5" in text


def test_the_proposer_can_never_decide_even_holding_both_roles(staffed: Home) -> None:
    home = staffed
    qualified_party(home)
    app_id = _device_application(home)
    apps.propose(home, app_id, staff_id="boss")
    seq = head(home)
    for decide in (lambda: apps.approve(home, app_id, staff_id="boss"),
                   lambda: apps.refuse(home, app_id, "no", staff_id="boss")):
        with pytest.raises(SmkiError) as info:
            decide()
        assert info.value.code == "ra.dual-control"
        assert "boss proposed this" in info.value.message
    with pytest.raises(SmkiError) as info:  # an operator is not an approver
        apps.approve(home, app_id, staff_id="op2")
    assert info.value.code == "ra.staff-role"
    events = audit_after(home, seq)
    assert [action for _, action, _ in events] == [
        "application.dual-control-refused", "application.dual-control-refused", "staff.refused"]
    assert apps.approve(home, app_id, staff_id="ap1").application.status == "approved"


def test_approval_reruns_the_rules_and_refuses_when_the_register_changed(staffed: Home) -> None:
    home = staffed
    qualified_party(home)
    app_id = _device_application(home)
    assert apps.propose(home, app_id, staff_id="op1").decision.approved
    reg.set_party_status(home, "P1", reg.StatusChange(drop_gateways=("GW-1",)), staff_id="op1")
    seq = head(home)
    with pytest.raises(PolicyRefusal) as info:
        apps.approve(home, app_id, staff_id="ap1")
    assert info.value.code == "ra.refused"
    assert info.value.decision.failed_ids == ("device.gateway-channel",)
    assert apps.explain(home, app_id).count("== Decision") == 0
    record = apps.queue(home)[0]
    assert record.status == "proposed" and reg.show_party(home, "P1").subscriptions["device"] == "applied"
    [(actor, action, details)] = audit_after(home, seq)
    assert (actor, action, details["failed"]) == ("ap1", "application.approval-refused", ["device.gateway-channel"])
    refused = apps.refuse(home, app_id, "no DCC Gateway Connection any more", staff_id="ap1")
    assert refused.application.status == "refused"
    assert refused.application.decision is not None
    assert refused.application.decision["reason"] == "no DCC Gateway Connection any more"
    assert reg.show_party(home, "P1").subscriptions["device"] == "refused"
    text = apps.explain(home, app_id)
    assert "Reason given: no DCC Gateway Connection any more" in text
    assert "FAIL    device.gateway-channel" in text
    assert apps.queue(home) == []


def test_new_evidence_withdraws_a_proposal(staffed: Home) -> None:
    home = staffed
    qualified_party(home)
    app_id = _device_application(home, evidence=False)
    proposed = apps.propose(home, app_id, staff_id="op1")
    assert proposed.decision.failed_ids == ("device.evidence-of-need",)
    with pytest.raises(PolicyRefusal):
        apps.approve(home, app_id, staff_id="ap1")
    record = apps.add_evidence(home, app_id, NEED, "RA-EV-7", staff_id="op2")
    assert (record.status, record.proposal, record.proposed_by) == ("open", None, None)
    with pytest.raises(SmkiError) as info:
        apps.approve(home, app_id, staff_id="ap1")
    assert info.value.code == "ra.application-status"
    assert apps.propose(home, app_id, staff_id="op2").decision.approved
    assert apps.approve(home, app_id, staff_id="ap1").application.status == "approved"
    with pytest.raises(SmkiError) as info:  # decided: no more evidence, no second decision
        apps.add_evidence(home, app_id, NEED, "late", staff_id="op1")
    assert info.value.code == "ra.application-status"


def test_one_open_application_per_policy_and_none_while_subscribed(staffed: Home) -> None:
    home = staffed
    qualified_party(home)
    app_id = _device_application(home)
    with pytest.raises(SmkiError) as info:
        apps.apply(home, "P1", "device", staff_id="op1")
    assert info.value.code == "ra.application-open"
    org = apps.apply(home, "P1", "org", staff_id="op1")
    assert org.policy == "organisation"
    apps.propose(home, app_id, staff_id="op1")
    apps.approve(home, app_id, staff_id="ap1")
    with pytest.raises(SmkiError) as info:
        apps.apply(home, "P1", "device", staff_id="op1")
    assert info.value.code == "ra.already-subscriber"
    reg.set_subscriber_standing(home, "P1", "device", "withdrawn", staff_id="op1")
    assert apps.apply(home, "P1", "device", staff_id="op1").status == "open"
    with pytest.raises(SmkiError) as info:
        apps.refuse(home, org.application_id, "  ", staff_id="ap1")
    assert info.value.code == "ra.reason-required"
    for bad in ("x", "999"):
        with pytest.raises(SmkiError) as info:
            apps.explain(home, bad)
        assert info.value.code == "ra.application-not-found"


@pytest.mark.parametrize(("on", "ruleset", "approved"), [
    (date(2019, 11, 6), "baseline", True),  # before MP074: UEPT and the Gateway were not required
    (date(2019, 11, 7), "MP074", False),
    (date(2020, 11, 28), "MP074", False),
    (date(2020, 11, 29), "MP127", False),
])
def test_the_rule_set_in_force_on_the_decision_date_decides(staffed: Home, on: date, ruleset: str,
                                                            approved: bool) -> None:
    home = staffed
    qualified_party(home, uept=False, gateway=False)
    app_id = _device_application(home)
    with home.store.transaction() as tx:  # evidence dated before the earliest decision date
        tx.registry.add_evidence(app_id, NEED, "RA-EV-2019", "op1", date(2019, 10, 1))
        tx.append_audit([AuditEvent("test", "test.setup", str(app_id))])
    decision = apps.propose(home, app_id, staff_id="op1", on=on).decision
    assert decision.ruleset == ruleset and decision.approved is approved
    if not approved:
        assert decision.failed_ids == ("device.uept-completed", "device.gateway-channel")


def test_the_configured_evidence_basis_is_used_and_validated(staffed: Home) -> None:
    home = staffed
    qualified_party(home)
    app_id = _device_application(home, evidence=False)
    basis_home = replace(home, settings=replace(home.settings, evidence_basis="registered-user"))
    decision = apps.propose(basis_home, app_id, staff_id="op1").decision
    assert decision.approved and decision.evidence_basis.value == "registered-user"
    bad_home = replace(home, settings=replace(home.settings, evidence_basis="vibes"))
    with pytest.raises(SmkiError) as info:
        apps.approve(bad_home, app_id, staff_id="ap1")
    assert info.value.code == "ra.evidence-basis-unknown"


def test_an_aro_opens_and_documents_only_its_own_partys_application(staffed: Home) -> None:
    """The Portal's ARO path goes through the same service functions as RA staff (``aro=``)."""
    from smki.domain import Route
    from smki.services.requests import Requester

    qualified_party(staffed, "P1", ENTITY)
    qualified_party(staffed, "P2", OTHER_ENTITY)
    aro = Requester("P1", "A1", Route.GATEWAY)
    with pytest.raises(SmkiError) as other:
        apps.apply(staffed, "P2", "device", aro=aro)
    assert other.value.code == "ra.application-not-found"
    record = apps.apply(staffed, "P1", "device", aro=aro)
    theirs = apps.apply(staffed, "P2", "device", staff_id="op1")
    with pytest.raises(SmkiError) as kind:
        apps.add_evidence(staffed, record.application_id, "installation-need", "plan", aro=aro)
    assert kind.value.code == "ra.aro-document-only"
    [refused] = [r.details_dict for r in staffed.store.audit_rows() if r.action == "application.evidence-refused"]
    assert (refused["rule"], refused["kind"], refused["aro"]) == ("ra.aro-document-only", "installation-need", "A1")
    assert "RAPP" in str(refused["reference"])
    with pytest.raises(SmkiError) as foreign:
        apps.add_evidence(staffed, theirs.application_id, apps.DOCUMENT, "x.pdf", aro=aro)
    assert foreign.value.code == "ra.application-not-found"
    documented = apps.add_evidence(staffed, record.application_id, apps.DOCUMENT,
                                           "plan.pdf sha256:00", aro=aro)
    assert [(e.kind, e.reference, e.recorded_by) for e in documented.evidence] == [
        ("document", "plan.pdf sha256:00", "aro:A1@P1")]
    actions = [(r.actor, r.action) for r in staffed.store.audit_rows() if r.subject.startswith("application:")]
    assert ("aro:A1@P1", "application.opened") in actions and ("aro:A1@P1", "application.evidence-added") in actions
