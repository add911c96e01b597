"""RA actions that take something away, from the Portal: revoking a CA certificate under dual control
(an RA operator proposes on Revocations, a different RA approver approves or refuses it there, seeing
exactly what is revoked), an RA operator revoking an Organisation Certificate, and suspending or
withdrawing a Party's Authorised Subscriber standing (one person: ``smki.services.registry``)."""

from __future__ import annotations

import base64
import re

import httpx
from cryptography import x509
from fastapi.testclient import TestClient

from smki.ca.devcsr import make_organisation_csr
from smki.domain import CertKind, RemotePartyRole, Route, Usage
from smki.services.context import Home
from tests.portal.conftest import APPROVER, AUDITOR, ENTITY, OPERATOR, PARTY, Clients, register, shows_rule
from tests.portal.test_pages import ARO_H, staff, token

REVOCATIONS = "/portal/staff/revocations"


def _audited(home: Home, action: str) -> list[tuple[str, str]]:
    return [(r.actor, r.subject) for r in home.store.audit_tail(300) if r.action == action]


def _ca_serial(home: Home, kind: CertKind) -> str:
    record = home.store.ca_certificate(kind)
    assert record is not None
    return record.serial


def _arl(home: Home) -> x509.CertificateRevocationList:
    record = home.store.revocation_list("ARL")
    assert record is not None
    return x509.load_der_x509_crl(record.der)


def _token_of(home: Home, who: str) -> str:
    """A valid form token for ``who`` (an auditor is offered no form at all, so no page carries one)."""
    from smki.interfaces.portal.identity import PortalIdentity
    from smki.interfaces.portal.web import PortalContext

    return PortalContext(lambda: home, Route.GATEWAY).token(PortalIdentity("staff", staff_id=who))


def _propose(client: TestClient, home: Home, serial: str, who: str = OPERATOR,
             reason: str = "cACompromise") -> httpx.Response:
    t = _token_of(home, who)
    return client.post(f"/portal/staff/ca-certificates/{serial}/propose", headers=staff(who),
                       data={"csrf": t, "reason": reason})


def _item(page: str) -> int:
    found = re.search(r'data-ca-revocation="(\d+)"', page)
    assert found, "no CA revocation proposal is shown"
    return int(found.group(1))


def test_a_ca_revocation_is_proposed_shown_in_full_and_approved_by_a_different_approver(
        home: Home, clients: Clients) -> None:
    register(home, device_applied=False)
    gw = clients.gateway
    serial = _ca_serial(home, CertKind.DEVICE_CA)
    subject = x509.load_der_x509_certificate(
        home.store.certificate_by_serial(serial).der).subject.rfc4514_string()  # type: ignore[union-attr]
    # only an RA operator is offered, and may use, the proposal form
    assert f"/portal/staff/ca-certificates/{serial}/propose" in gw.get(REVOCATIONS, headers=staff(OPERATOR)).text
    for other in (APPROVER, AUDITOR):
        page = gw.get(REVOCATIONS, headers=staff(other))
        assert "/propose\"" not in page.text
        refused = _propose(gw, home, serial, who=other)
        assert refused.status_code == 403 and "ra.staff-holds-role" in refused.text and 'role="alert"' in refused.text
        assert "staff.role-required" in refused.text and shows_rule(refused.text, "ra.staff-holds-role")
    proposed = _propose(gw, home, serial)
    assert proposed.status_code == 200 and "A different RA approver must now approve or refuse it" in proposed.text
    item = _item(proposed.text)
    assert _propose(gw, home, serial).status_code == 400  # one proposal at a time (revocation.already-proposed)
    assert _audited(home, "ca.revocation-proposed") == [(f"staff:{OPERATOR}", serial)]
    # the overview counts it; the operator sees it but is offered no decision, and may not take one
    overview = gw.get("/portal/staff", headers=staff(OPERATOR)).text
    assert re.search(r'<strong>1</strong> CA revocations pending', overview)
    as_operator = gw.get(REVOCATIONS, headers=staff(OPERATOR))
    assert f'id="ca-revocation-{item}"' in as_operator.text and "/approve" not in as_operator.text
    t_op = token(as_operator)
    operator_approves = gw.post(f"/portal/staff/revocations/{item}/approve", headers=staff(OPERATOR),
                                data={"csrf": t_op, "confirm": "yes"})
    assert operator_approves.status_code == 403 and "ra.staff-holds-role" in operator_approves.text
    # the approver sees exactly what is revoked before deciding
    page = gw.get(REVOCATIONS, headers=staff(APPROVER))
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert operator_approves.headers["x-frame-options"] == "DENY"  # refusals are Portal pages too
    card = page.text[page.text.index(f'id="ca-revocation-{item}"'):]
    card = card[:card.index("</article>")]
    for fact in (subject, serial, "Device CA", "cACompromise (code 2)", OPERATOR, "cannot be undone"):
        assert fact in card, fact
    t_ap = token(page)
    # a cross-site post (no token, a forged one, another person's) changes nothing
    for form in ({"confirm": "yes"}, {"csrf": "0" * 72, "confirm": "yes"}, {"csrf": t_op, "confirm": "yes"}):
        forged = gw.post(f"/portal/staff/revocations/{item}/approve", headers=staff(APPROVER), data=form)
        assert forged.status_code == 403 and "portal.form-expired" in forged.text
    # the confirmation box must be ticked
    unconfirmed = gw.post(f"/portal/staff/revocations/{item}/approve", headers=staff(APPROVER), data={"csrf": t_ap})
    assert unconfirmed.status_code == 400 and "portal.confirm" in unconfirmed.text
    assert home.store.certificate_by_serial(serial).status.value != "R"  # type: ignore[union-attr]
    before = home.store.revocation_list("ARL")
    done = gw.post(f"/portal/staff/revocations/{item}/approve", headers=staff(APPROVER),
                   data={"csrf": t_ap, "confirm": "yes"}, follow_redirects=True)
    assert done.status_code == 200 and "a new ARL was signed and published" in done.text
    assert "No CA revocation is waiting" in done.text and re.search(rf"Proposal {item} \(Device CA", done.text)
    record = home.store.certificate_by_serial(serial)
    assert record is not None and record.status.value == "R" and record.revocation_reason == 2
    arl = _arl(home)
    assert before is None or arl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > before.number
    entry = arl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.ca_compromise
    assert arl.is_signature_valid(home.ca_certificate(CertKind.ROOT).public_key())  # type: ignore[arg-type]
    assert _audited(home, "ca.revoked") == [(f"staff:{APPROVER}", serial)]
    again = gw.post(f"/portal/staff/revocations/{item}/refuse", headers=staff(APPROVER), data={"csrf": t_ap})
    assert again.status_code == 400 and "ra.already-decided" in again.text


def test_the_proposer_cannot_approve_a_ca_revocation_even_holding_both_roles(home: Home, clients: Clients) -> None:
    from smki.services.staff import add_staff

    register(home, device_applied=False)
    add_staff(home, "both1", "Bo Th", ["ra-operator", "ra-approver"], actor="admin")
    gw = clients.gateway
    serial = _ca_serial(home, CertKind.ORGANISATION_CA)
    item = _item(_propose(gw, home, serial, who="both1", reason="superseded").text)
    page = gw.get(REVOCATIONS, headers=staff("both1"))
    assert "You proposed this" in page.text
    t = token(page)
    own = gw.post(f"/portal/staff/revocations/{item}/approve", headers=staff("both1"),
                  data={"csrf": t, "confirm": "yes"})
    assert own.status_code == 403 and "ra.dual-control" in own.text and "different" in own.text
    assert shows_rule(own.text, "ra.dual-control")
    assert _audited(home, "ca.dual-control-refused") == [("staff:both1", serial)]
    assert home.store.certificate_by_serial(serial).status.value != "R"  # type: ignore[union-attr]
    # a different approver refuses it, with a reason: nothing revoked, audited with that reason
    t_ap = _token_of(home, APPROVER)
    refused = gw.post(f"/portal/staff/revocations/{item}/refuse", headers=staff(APPROVER),
                      data={"csrf": t_ap, "reason": "wrong certificate"}, follow_redirects=True)
    assert "The CA revocation was refused" in refused.text and "Refused</span> by ap1" in refused.text
    [record] = [r for r in home.store.audit_tail(50) if r.action == "ca.revocation-refused"]
    assert record.actor == f"staff:{APPROVER}" and record.details_dict["refusal"] == "wrong certificate"
    assert home.store.certificate_by_serial(serial).status.value != "R"  # type: ignore[union-attr]
    # proposed anew by the operator, both1 is now the second person and may approve
    item2 = _item(_propose(gw, home, serial, reason="superseded").text)
    done = gw.post(f"/portal/staff/revocations/{item2}/approve", headers=staff("both1"),
                   data={"csrf": t, "confirm": "yes"}, follow_redirects=True)
    assert "a new ARL was signed" in done.text
    assert _arl(home).get_revoked_certificate_by_serial_number(int(serial, 16)) is not None


def test_refusals_of_the_ca_revocation_forms_are_shown_on_the_page(home: Home, clients: Clients) -> None:
    register(home, device_applied=False)
    gw = clients.gateway
    t_ap = _token_of(home, APPROVER)
    for item in ("abc", "99", "9" * 30):
        reply = gw.post(f"/portal/staff/revocations/{item}/approve", headers=staff(APPROVER),
                        data={"csrf": t_ap, "confirm": "yes"})
        assert reply.status_code == 404 and "ra.not-found" in reply.text and "<h1>Revocations and publication</h1>" \
            in reply.text
    root = _ca_serial(home, CertKind.ROOT)
    assert _propose(gw, home, root).status_code == 400 and "revocation.not-a-ca" in _propose(gw, home, root).text
    bad = _propose(gw, home, _ca_serial(home, CertKind.DEVICE_CA), reason="nonsense")
    assert bad.status_code == 400 and "revocation.bad-reason" in bad.text
    not_hex = _propose(gw, home, "zz")
    assert not_hex.status_code == 400 and "store.bad-serial" in not_hex.text
    unknown = _propose(gw, home, "abcdef")
    assert unknown.status_code == 404 and "certificate.not-found" in unknown.text


def _issue_organisation_certificate(client: TestClient) -> str:
    t = token(client.get("/portal/aro/csr", headers=ARO_H))
    csr = base64.b64encode(make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS)).decode()
    issued = client.post("/portal/aro/csr", headers=ARO_H, data={"csrf": t, "csr_text": csr})
    found = re.search(r'id="serial">([0-9a-f]+)<', issued.text)
    assert found, issued.text
    return found.group(1)


def test_an_ra_operator_revokes_an_organisation_certificate(home: Home, clients: Clients) -> None:
    register(home, device_applied=False)
    gw = clients.gateway
    serial = _issue_organisation_certificate(gw)
    assert 'action="/portal/staff/certificates/revoke"' not in gw.get(REVOCATIONS, headers=staff(APPROVER)).text
    t_ap = _token_of(home, APPROVER)
    wrong = gw.post("/portal/staff/certificates/revoke", headers=staff(APPROVER),
                    data={"csrf": t_ap, "serial": serial, "reason": "keyCompromise", "confirm": "yes"})
    assert wrong.status_code == 403 and "ra.staff-holds-role" in wrong.text
    page = gw.get(REVOCATIONS, headers=staff(OPERATOR))
    assert 'action="/portal/staff/certificates/revoke"' in page.text
    t = token(page)
    forged = gw.post("/portal/staff/certificates/revoke", headers=staff(OPERATOR),
                     data={"csrf": t_ap, "serial": serial, "reason": "keyCompromise", "confirm": "yes"})
    assert forged.status_code == 403 and "portal.form-expired" in forged.text
    unconfirmed = gw.post("/portal/staff/certificates/revoke", headers=staff(OPERATOR),
                          data={"csrf": t, "serial": serial, "reason": "keyCompromise"})
    assert unconfirmed.status_code == 400 and "portal.confirm" in unconfirmed.text and serial in unconfirmed.text
    ca = gw.post("/portal/staff/certificates/revoke", headers=staff(OPERATOR),
                 data={"csrf": t, "serial": _ca_serial(home, CertKind.DEVICE_CA), "reason": "keyCompromise",
                       "confirm": "yes"})
    assert ca.status_code == 400 and "revocation.ca-needs-dual-control" in ca.text
    done = gw.post("/portal/staff/certificates/revoke", headers=staff(OPERATOR),
                   data={"csrf": t, "serial": serial, "reason": "keyCompromise", "confirm": "yes"},
                   follow_redirects=True)
    assert "a new CRL was published" in done.text
    crl = x509.load_der_x509_crl(home.store.revocation_list("CRL").der)  # type: ignore[union-attr]
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
    assert _audited(home, "certificate.revoked") == [(f"staff:{OPERATOR}", serial)]


def test_suspending_and_withdrawing_a_subscriber_standing(home: Home, clients: Clients) -> None:
    register(home, device_applied=False)
    gw = clients.gateway
    assert "/suspend\"" not in gw.get("/portal/staff/parties", headers=staff(AUDITOR)).text.replace(
        "/aros/", "")  # the auditor is offered nothing
    page = gw.get("/portal/staff/parties", headers=staff(OPERATOR))
    assert f'action="/portal/staff/parties/{PARTY}/suspend"' in page.text
    assert f'action="/portal/staff/parties/{PARTY}/withdraw"' in page.text
    t = token(page)
    t_aud = _token_of(home, AUDITOR)
    auditor = gw.post(f"/portal/staff/parties/{PARTY}/suspend", headers=staff(AUDITOR),
                      data={"csrf": t_aud, "policy": "organisation"})
    assert auditor.status_code == 403 and "ra.staff-role" in auditor.text
    forged = gw.post(f"/portal/staff/parties/{PARTY}/suspend", headers=staff(OPERATOR),
                     data={"csrf": t_aud, "policy": "organisation"})
    assert forged.status_code == 403 and "portal.form-expired" in forged.text
    assert home.store.registry.require_party(PARTY).subscriptions["organisation"] == "approved"
    done = gw.post(f"/portal/staff/parties/{PARTY}/suspend", headers=staff(OPERATOR),
                   data={"csrf": t, "policy": "organisation", "reason": "key in doubt"}, follow_redirects=True)
    assert done.status_code == 200 and "The subscriber standing was suspended" in done.text
    assert home.store.registry.require_party(PARTY).subscriptions["organisation"] == "suspended"
    [record] = [r for r in home.store.audit_tail(50) if r.action == "subscriber.suspended"]
    assert (record.actor, record.subject) == (OPERATOR, PARTY)
    assert record.details_dict["reason"] == "key in doubt"
    # the ARO's request is refused from now on
    t_aro = token(gw.get("/portal/aro/csr", headers=ARO_H))
    csr = base64.b64encode(make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS)).decode()
    refused = gw.post("/portal/aro/csr", headers=ARO_H, data={"csrf": t_aro, "csr_text": csr})
    assert refused.status_code == 403 and "ra.refused" in refused.text
    # suspended: offered reinstatement (proposal) and withdrawal, not suspension again
    shown = gw.get("/portal/staff/parties", headers=staff(APPROVER)).text
    assert f'action="/portal/staff/parties/{PARTY}/suspend"' not in shown
    again = gw.post(f"/portal/staff/parties/{PARTY}/suspend", headers=staff(OPERATOR),
                    data={"csrf": t, "policy": "organisation"})
    assert again.status_code == 400 and "ra.bad-standing" in again.text and "<h1>Parties and AROs</h1>" in again.text
    t_ap = token(gw.get("/portal/staff/parties", headers=staff(APPROVER)))
    unconfirmed = gw.post(f"/portal/staff/parties/{PARTY}/withdraw", headers=staff(APPROVER),
                          data={"csrf": t_ap, "policy": "organisation"})
    assert unconfirmed.status_code == 400 and "portal.confirm" in unconfirmed.text
    bad_policy = gw.post(f"/portal/staff/parties/{PARTY}/withdraw", headers=staff(APPROVER),
                         data={"csrf": t_ap, "policy": "nonsense", "confirm": "yes"})
    assert bad_policy.status_code == 400
    withdrawn = gw.post(f"/portal/staff/parties/{PARTY}/withdraw", headers=staff(APPROVER),
                        data={"csrf": t_ap, "policy": "organisation", "confirm": "yes", "reason": "left the DCC"},
                        follow_redirects=True)
    assert "The subscriber standing was withdrawn" in withdrawn.text
    assert home.store.registry.require_party(PARTY).subscriptions["organisation"] == "withdrawn"
    assert _audited(home, "subscriber.withdrawn") == [(APPROVER, PARTY)]
    assert f"/portal/staff/parties/{PARTY}/reinstate" not in gw.get("/portal/staff/parties",
                                                                   headers=staff(OPERATOR)).text
    unknown = gw.post("/portal/staff/parties/NOPE/suspend", headers=staff(OPERATOR),
                      data={"csrf": t, "policy": "organisation"})
    assert unknown.status_code == 404
