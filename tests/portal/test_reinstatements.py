"""Reinstating a suspended subscriber or ARO from the Portal, under dual control: an RA operator
proposes it beside the suspended standing or ARO (Parties and AROs), a different RA approver
approves or refuses it on the Reinstatements page (``smki.services.reinstatement``)."""

from __future__ import annotations

import base64
import re

import httpx
from fastapi.testclient import TestClient

from smki.ca.devcsr import make_organisation_csr
from smki.domain import RemotePartyRole, Usage
from smki.services import registry as reg
from smki.services.context import Home
from tests.portal.conftest import APPROVER, ARO, AUDITOR, ENTITY, OPERATOR, PARTY, Clients, register, shows_rule
from tests.portal.test_pages import ARO_H, staff, token


def _csr(client: TestClient) -> httpx.Response:
    """The ARO asks for an Organisation Certificate (what a suspension stops and a reinstatement gives back)."""
    t = token(client.get("/portal/aro/csr", headers=ARO_H))
    csr = base64.b64encode(make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS)).decode()
    return client.post("/portal/aro/csr", headers=ARO_H, data={"csrf": t, "csr_text": csr})


def _audited(home: Home, action: str) -> list[tuple[str, str]]:
    return [(r.actor, r.subject) for r in home.store.audit_tail(200) if r.action == action]


def test_an_operator_proposes_reinstating_an_aro_and_a_different_approver_reinstates_it(
        home: Home, clients: Clients) -> None:
    register(home, device_applied=False)
    gw = clients.gateway
    reg.set_aro_status(home, ARO, "suspended", staff_id=APPROVER, reason="lost token")
    refused = _csr(gw)
    assert refused.status_code == 403 and 'data-rule="aro.active"' in refused.text
    # the operator is offered the proposal beside the suspended ARO; the approver and the auditor are not
    as_operator = gw.get("/portal/staff/parties", headers=staff(OPERATOR))
    assert f"/portal/staff/aros/{ARO}/reinstate" in as_operator.text
    for other in (APPROVER, AUDITOR):
        assert "/reinstate\"" not in gw.get("/portal/staff/parties", headers=staff(other)).text
    t_op = token(as_operator)
    proposed = gw.post(f"/portal/staff/aros/{ARO}/reinstate", headers=staff(OPERATOR),
                       data={"csrf": t_op, "reason": "token replaced"}, follow_redirects=False)
    assert proposed.status_code == 303 and proposed.headers["location"].endswith(
        "/portal/staff/parties?done=reinstatement-proposed")
    shown = gw.get(proposed.headers["location"], headers=staff(OPERATOR)).text
    assert "A different RA approver must now approve" in shown
    item = int(re.search(r'data-reinstatement="(\d+)"', shown).group(1))  # type: ignore[union-attr]
    assert f"/portal/staff/aros/{ARO}/reinstate" not in shown  # one proposal at a time
    again = gw.post(f"/portal/staff/aros/{ARO}/reinstate", headers=staff(OPERATOR), data={"csrf": t_op})
    assert again.status_code == 400 and "ra.already-proposed" in again.text
    t_ap = token(gw.get("/portal/staff/reinstatements", headers=staff(APPROVER)))
    wrong_role = gw.post(f"/portal/staff/aros/{ARO}/reinstate", headers=staff(APPROVER), data={"csrf": t_ap})
    assert wrong_role.status_code == 403 and shows_rule(wrong_role.text, "ra.staff-role")
    # the overview's count links to where the proposal is decided
    overview = gw.get("/portal/staff", headers=staff(OPERATOR)).text
    assert re.search(r'href="/portal/staff/reinstatements"><strong>1</strong> reinstatements pending', overview)
    assert re.search(r'href="/portal/staff/revocations"><strong>0</strong> CA revocations pending', overview)
    # the operator sees it but may not decide it
    queue = gw.get("/portal/staff/reinstatements", headers=staff(OPERATOR)).text
    assert f'id="reinstatement-{item}"' in queue and "token replaced" in queue and "/approve" not in queue
    operator_approves = gw.post(f"/portal/staff/reinstatements/{item}/approve", headers=staff(OPERATOR),
                                data={"csrf": t_op})
    assert operator_approves.status_code == 403 and "ra.staff-role" in operator_approves.text
    # a cross-site post (no token, a forged one, another person's) changes nothing
    for form in ({}, {"csrf": "0" * 72}, {"csrf": t_op}):
        forged = gw.post(f"/portal/staff/reinstatements/{item}/approve", headers=staff(APPROVER), data=form)
        assert forged.status_code == 403 and "portal.form-expired" in forged.text
    assert home.store.registry.aro(ARO).status == "suspended"  # type: ignore[union-attr]
    page = gw.get("/portal/staff/reinstatements", headers=staff(APPROVER))
    assert f"/portal/staff/reinstatements/{item}/approve" in page.text
    done = gw.post(f"/portal/staff/reinstatements/{item}/approve", headers=staff(APPROVER),
                   data={"csrf": token(page)}, follow_redirects=True)
    assert done.status_code == 200 and "The reinstatement was approved" in done.text
    assert "No reinstatement is waiting" in done.text and re.search(rf"Proposal {item} \(ARO {ARO}\)", done.text)
    assert home.store.registry.aro(ARO).status == "active"  # type: ignore[union-attr]
    assert _audited(home, "aro.reinstatement-proposed") == [(OPERATOR, ARO)]
    assert _audited(home, "aro.reinstated") == [(APPROVER, ARO)]
    # the ARO can request again
    assert _csr(gw).status_code == 200
    decided = gw.post(f"/portal/staff/reinstatements/{item}/refuse", headers=staff(APPROVER),
                      data={"csrf": token(page)})
    assert decided.status_code == 400 and "ra.already-decided" in decided.text


def test_the_proposer_cannot_approve_their_own_subscriber_reinstatement(home: Home, clients: Clients) -> None:
    from smki.services.staff import add_staff

    register(home, device_applied=False)
    add_staff(home, "both1", "Bo Th", ["ra-operator", "ra-approver"], actor="admin")
    gw = clients.gateway
    reg.set_subscriber_standing(home, PARTY, "organisation", "suspended", staff_id=APPROVER)
    assert _csr(gw).status_code == 403
    page = gw.get("/portal/staff/parties", headers=staff("both1"))
    assert f'action="/portal/staff/parties/{PARTY}/reinstate"' in page.text
    t = token(page)
    gw.post(f"/portal/staff/parties/{PARTY}/reinstate", headers=staff("both1"),
            data={"csrf": t, "policy": "organisation", "reason": "fees paid"})
    [first] = re.findall(r'id="reinstatement-(\d+)"', gw.get("/portal/staff/reinstatements",
                                                               headers=staff("both1")).text)
    own = gw.post(f"/portal/staff/reinstatements/{first}/approve", headers=staff("both1"), data={"csrf": t})
    assert own.status_code == 403 and "ra.dual-control" in own.text and 'role="alert"' in own.text
    assert "different" in own.text and shows_rule(own.text, "ra.dual-control")  # reason and reference shown
    assert _audited(home, "subscriber.dual-control-refused") == [("both1", PARTY)]
    assert home.store.registry.require_party(PARTY).subscriptions["organisation"] == "suspended"
    # a different approver refuses it, with a reason: still suspended, audited
    t_ap = token(gw.get("/portal/staff/reinstatements", headers=staff(APPROVER)))
    refused = gw.post(f"/portal/staff/reinstatements/{first}/refuse", headers=staff(APPROVER),
                      data={"csrf": t_ap, "reason": "fees not received"}, follow_redirects=True)
    assert "The reinstatement was refused" in refused.text and "Refused</span> by ap1" in refused.text
    assert _audited(home, "subscriber.reinstatement-refused") == [(APPROVER, PARTY)]
    assert home.store.registry.require_party(PARTY).subscriptions["organisation"] == "suspended"
    # proposed anew by one person, approved by another (both1, now the second person)
    t_op = token(gw.get("/portal/staff/parties", headers=staff(OPERATOR)))
    gw.post(f"/portal/staff/parties/{PARTY}/reinstate", headers=staff(OPERATOR),
            data={"csrf": t_op, "policy": "organisation"})
    [second] = re.findall(r'id="reinstatement-(\d+)"', gw.get("/portal/staff/reinstatements",
                                                                headers=staff(OPERATOR)).text)
    done = gw.post(f"/portal/staff/reinstatements/{second}/approve", headers=staff("both1"), data={"csrf": t},
                   follow_redirects=True)
    assert "The reinstatement was approved" in done.text
    assert home.store.registry.require_party(PARTY).subscriptions["organisation"] == "approved"
    assert _audited(home, "subscriber.reinstated") == [("both1", PARTY)]
    assert _csr(gw).status_code == 200


def test_refusals_of_the_propose_and_decide_forms_are_shown_on_their_pages(home: Home, clients: Clients) -> None:
    register(home, device_applied=False)
    gw = clients.gateway
    t_op = token(gw.get("/portal/staff/parties", headers=staff(OPERATOR)))
    active = gw.post(f"/portal/staff/aros/{ARO}/reinstate", headers=staff(OPERATOR), data={"csrf": t_op})
    assert active.status_code == 400 and "ra.bad-status" in active.text and "<h1>Parties and AROs</h1>" in active.text
    standing = gw.post(f"/portal/staff/parties/{PARTY}/reinstate", headers=staff(OPERATOR),
                       data={"csrf": t_op, "policy": "organisation"})
    assert standing.status_code == 400 and "ra.bad-standing" in standing.text
    reg.set_aro_status(home, ARO, "suspended", staff_id=APPROVER)
    gw.post(f"/portal/staff/aros/{ARO}/reinstate", headers=staff(OPERATOR), data={"csrf": t_op})
    t_ap = token(gw.get("/portal/staff/reinstatements", headers=staff(APPROVER)))
    for item, code in (("abc", 404), ("99", 404), ("9" * 30, 404)):
        reply = gw.post(f"/portal/staff/reinstatements/{item}/approve", headers=staff(APPROVER), data={"csrf": t_ap})
        assert reply.status_code == code and "ra.not-found" in reply.text and "<h1>Reinstatements</h1>" in reply.text
    # an ARO revoked after the proposal: approval is refused, the proposal stays for an approver to refuse
    reg.set_aro_status(home, ARO, "revoked", staff_id=APPROVER)
    [item] = re.findall(r'id="reinstatement-(\d+)"', gw.get("/portal/staff/reinstatements",
                                                              headers=staff(APPROVER)).text)
    late = gw.post(f"/portal/staff/reinstatements/{item}/approve", headers=staff(APPROVER), data={"csrf": t_ap})
    assert late.status_code == 400 and "ra.bad-status" in late.text and f'id="reinstatement-{item}"' in late.text
    assert home.store.registry.aro(ARO).status == "revoked"  # type: ignore[union-attr]
