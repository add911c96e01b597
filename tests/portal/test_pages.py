"""The Portal's pages over HTTP (no browser): identities, routes, refusals, downloads, dual control."""

from __future__ import annotations

import base64
import re
import subprocess
import zipfile
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.ca.devcsr import make_device_csr, make_organisation_csr
from smki.domain import RemotePartyRole, Usage
from smki.services.context import Home
from smki.services.portal_batches import read_response_zip, write_portal_zip
from tests.portal.conftest import (
    APPROVER,
    ARO,
    AUDITOR,
    ENTITY,
    OPERATOR,
    OTHER_ENTITY,
    PARTY,
    Clients,
    approve_device,
    register,
    shows_rule,
)

ARO_H = {"x-test-identity": f"aro:{PARTY}:{ARO}"}


def staff(sid: str) -> dict[str, str]:
    return {"x-test-identity": f"staff:{sid}"}


def token(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found, "page has no form token"
    return found.group(1)


def pem_csr(der: bytes) -> str:
    return x509.load_der_x509_csr(der).public_bytes(Encoding.PEM).decode()


def _columns(text: str, width: int) -> list[str]:
    return [text[i:i + width] for i in range(0, len(text), width)]


def test_without_a_credential_nothing_is_shown(clients: Clients) -> None:
    page = clients.gateway.get("/portal/aro")
    assert page.status_code == 401
    assert "portal.unauthenticated" in page.text
    assert "Content-Security-Policy" in page.headers and "default-src 'self'" in page.headers["content-security-policy"]


def test_aro_sees_standing_and_the_rule_by_rule_explanation(home: Home, clients: Clients) -> None:
    register(home)
    page = clients.gateway.get("/portal/aro", headers=ARO_H)
    assert page.status_code == 200
    assert 'data-policy="organisation">Approved' in page.text
    assert 'data-policy="device">Applied' in page.text
    # the open Device application fails only the evidence-of-need rule until the RA records evidence
    assert "device.evidence-of-need" in page.text and "1 of 4 rules fail" in page.text


def test_staff_pages_refuse_an_aro_and_aro_pages_refuse_staff(home: Home, clients: Clients) -> None:
    register(home)
    assert clients.gateway.get("/portal/staff/applications", headers=ARO_H).status_code == 403
    assert clients.gateway.get("/portal/aro", headers=staff(OPERATOR)).status_code == 403


def test_a_form_without_its_token_is_refused(home: Home, clients: Clients) -> None:
    register(home)
    reply = clients.gateway.post("/portal/aro/apply", data={"policy": "organisation"}, headers=ARO_H)
    assert reply.status_code == 403 and "portal.form-expired" in reply.text


def test_dual_control_over_http(home: Home, clients: Clients) -> None:
    app_id = register(home)
    gw = clients.gateway
    page = gw.get("/portal/staff/applications", headers=staff(OPERATOR))
    t_op = token(page)
    gw.post(f"/portal/staff/applications/{app_id}/evidence", headers=staff(OPERATOR),
            data={"csrf": t_op, "kind": "installation-need", "reference": "install plan 2024"})
    reply = gw.post(f"/portal/staff/applications/{app_id}/propose", headers=staff(OPERATOR),
                    data={"csrf": t_op}, follow_redirects=True)
    assert "A different RA approver must now approve" in reply.text
    # the operator cannot approve; nor can an auditor
    refused = gw.post(f"/portal/staff/applications/{app_id}/approve", headers=staff(OPERATOR), data={"csrf": t_op})
    assert refused.status_code == 403 and "ra.staff-role" in refused.text
    assert shows_rule(refused.text, "ra.staff-role")  # the rule, its reason and what it rests on
    for page_path in ("/portal/staff/applications", "/portal/staff/parties", "/portal/staff/revocations"):
        offered = gw.get(page_path, headers=staff(AUDITOR))  # an auditor is offered no action at all
        assert offered.status_code == 200 and 'method="post"' not in offered.text, page_path
    assert gw.post(f"/portal/staff/applications/{app_id}/approve", headers=staff(AUDITOR),
                   data={"csrf": t_op}).status_code == 403
    t_ap = token(gw.get("/portal/staff/applications", headers=staff(APPROVER)))
    done = gw.post(f"/portal/staff/applications/{app_id}/approve", headers=staff(APPROVER), data={"csrf": t_ap},
                   follow_redirects=True)
    assert done.status_code == 200 and "now an Authorised Subscriber" in done.text
    assert home.store.registry.require_party(PARTY).subscriptions["device"] == "approved"


def test_a_person_holding_both_roles_cannot_approve_their_own_proposal(home: Home, clients: Clients) -> None:
    from smki.services.staff import add_staff

    app_id = register(home)
    add_staff(home, "both1", "Bo Th", ["ra-operator", "ra-approver"], actor="admin")
    gw = clients.gateway
    t = token(gw.get("/portal/staff/applications", headers=staff("both1")))
    gw.post(f"/portal/staff/applications/{app_id}/evidence", headers=staff("both1"),
            data={"csrf": t, "kind": "installation-need", "reference": "plan"})
    gw.post(f"/portal/staff/applications/{app_id}/propose", headers=staff("both1"),
            data={"csrf": t})
    reply = gw.post(f"/portal/staff/applications/{app_id}/approve", headers=staff("both1"), data={"csrf": t})
    assert reply.status_code == 403 and "ra.dual-control" in reply.text
    assert shows_rule(reply.text, "ra.dual-control")
    # the rule's reason is on its line, once: the error message above it does not repeat it
    reason = re.search(r'class="rule-id">ra\.dual-control</strong> — ([^<]+)</p>', reply.text)
    assert reason is not None and reply.text.count(reason.group(1)) == 1, reply.text


def test_gateway_issues_a_device_certificate_and_openssl_verifies_it(home: Home, clients: Clients,
                                                                      tmp_path: Path) -> None:
    app_id = register(home)
    assert app_id is not None
    approve_device(home, app_id)
    gw = clients.gateway
    t = token(gw.get("/portal/aro/csr", headers=ARO_H))
    csr = make_device_csr(bytes.fromhex("00db123456789001"), Usage.KA)
    reply = gw.post("/portal/aro/csr", headers=ARO_H, data={"csrf": t, "csr_text": base64.b64encode(csr).decode()})
    assert reply.status_code == 200, reply.text
    serial = re.search(r'id="serial">([0-9a-f]+)<', reply.text)
    assert serial
    assert "<dt>Status</dt><dd>In use</dd>" in reply.text  # a word, as on the list, not the store's "I"
    der = gw.get(f"/portal/aro/certificates/{serial.group(1)}.der", headers=ARO_H)
    assert der.headers["content-disposition"].endswith('.der"')
    (tmp_path / "dev.der").write_bytes(der.content)
    result = subprocess.run(["openssl", "verify", "-CAfile", str(home.settings.home / "root.pem"), "-untrusted",
                             str(home.settings.home / "device-ca.pem"), "-inform", "DER", str(tmp_path / "dev.der")],
                            capture_output=True, text=True)
    if "-inform" in result.stderr:  # older openssl verify has no -inform: convert to PEM
        cert = x509.load_der_x509_certificate(der.content)
        (tmp_path / "dev.pem").write_bytes(cert.public_bytes(Encoding.PEM))
        result = subprocess.run(["openssl", "verify", "-CAfile", str(home.settings.home / "root.pem"), "-untrusted",
                                 str(home.settings.home / "device-ca.pem"), str(tmp_path / "dev.pem")],
                                capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_spoti_refuses_a_device_csr_naming_the_rule(home: Home, clients: Clients) -> None:
    app_id = register(home)
    assert app_id is not None
    approve_device(home, app_id)
    sp = clients.spoti
    batches = sp.get("/portal/aro/batches", headers=ARO_H)  # the Device pages are refused by rule
    assert batches.status_code == 403 and 'data-rule="channel.spoti-organisation-access"' in batches.text
    t = token(sp.get("/portal/aro/csr", headers=ARO_H))
    pasted = pem_csr(make_device_csr(bytes.fromhex("00db123456789001"), Usage.DS))
    reply = sp.post("/portal/aro/csr", headers=ARO_H, data={"csrf": t, "csr_text": pasted})
    assert reply.status_code == 403
    assert 'data-rule="channel.device-via-gateway"' in reply.text
    assert "MP074 (SEC November 2019 Release)" in reply.text
    assert pasted.splitlines()[1] in reply.text  # the form keeps what was pasted


def test_organisation_csr_in_every_text_form_on_spoti(home: Home, clients: Clients) -> None:
    register(home, device_applied=False)
    sp = clients.spoti
    t = token(sp.get("/portal/aro/csr", headers=ARO_H))
    shapes = {
        "pem": lambda der: pem_csr(der),
        "pem-no-headers": lambda der: "\n".join(pem_csr(der).splitlines()[1:-1]),
        "one-line": lambda der: base64.b64encode(der).decode(),
        "76-crlf": lambda der: "\r\n".join(_columns(base64.b64encode(der).decode(), 76)),
    }
    for shape, render in shapes.items():
        text = render(make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS))
        reply = sp.post("/portal/aro/csr", headers=ARO_H, data={"csrf": t, "csr_text": text})
        assert reply.status_code == 200, (shape, reply.text[-800:])
        assert "BEGIN CERTIFICATE" in reply.text
    # uploaded as a file (DER) works too, and a CSR for another Party's entity is refused by rule
    other = make_organisation_csr(OTHER_ENTITY, RemotePartyRole.NETWORK_OPERATOR, Usage.DS)
    refused = sp.post("/portal/aro/csr", headers=ARO_H, data={"csrf": t},
                      files={"csr_file": ("other.csr", other, "application/octet-stream")})
    assert refused.status_code == 403 and 'data-rule="org.entity-belongs-to-party"' in refused.text


def test_aro_lists_and_revokes_an_organisation_certificate(home: Home, clients: Clients) -> None:
    register(home, device_applied=False)
    sp = clients.spoti
    t = token(sp.get("/portal/aro/csr", headers=ARO_H))
    der = make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.KA)
    issued = sp.post("/portal/aro/csr", headers=ARO_H, data={"csrf": t},
                     files={"csr_file": ("mine.csr", der, "application/octet-stream")})
    serial = re.search(r'id="serial">([0-9a-f]+)<', issued.text)
    assert serial
    listing = sp.get("/portal/aro/certificates", headers=ARO_H, params={"status": "I"})
    assert serial.group(1) in listing.text
    unconfirmed = sp.post(f"/portal/aro/certificates/{serial.group(1)}/revoke", headers=ARO_H,
                          data={"csrf": t, "reason": "keyCompromise"})
    assert unconfirmed.status_code == 400 and "portal.confirm" in unconfirmed.text
    done = sp.post(f"/portal/aro/certificates/{serial.group(1)}/revoke", headers=ARO_H,
                   data={"csrf": t, "reason": "keyCompromise", "confirm": "yes"}, follow_redirects=True)
    assert "a new CRL was published" in done.text
    record = home.store.certificate_by_serial(serial.group(1))
    assert record is not None and record.status.value == "R"
    crl = x509.load_der_x509_crl((home.settings.home / "crl" / "organisation-ca.crl").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(serial.group(1), 16)) is not None
    # another Party's ARO can neither download nor revoke it
    other = {"x-test-identity": f"aro:NETOP2:{ARO}"}
    assert sp.get(f"/portal/aro/certificates/{serial.group(1)}.pem", headers=other).status_code == 404


def test_zip_batch_over_http(home: Home, clients: Clients) -> None:
    app_id = register(home)
    assert app_id is not None
    approve_device(home, app_id)
    gw = clients.gateway
    t = token(gw.get("/portal/aro/batches", headers=ARO_H))
    good = [(f"meter{n}.csr", base64.b64encode(make_device_csr((0x00DB000000000100 + n).to_bytes(8, "big"),
                                                                 Usage.DS))) for n in range(3)]
    upload = write_portal_zip([*good, ("broken.csr", b"not a csr")])
    reply = gw.post("/portal/aro/batches", headers=ARO_H, data={"csrf": t},
                    files={"batch": ("week 12.zip", upload, "application/zip")}, follow_redirects=False)
    assert reply.status_code == 303
    ref = reply.headers["location"].rsplit("/", 1)[-1]
    status = {}
    for _ in range(200):
        status = gw.get(f"/portal/aro/batches/{ref}/status", headers=ARO_H).json()
        if status["status"] in ("COMPLETED", "FAILED"):
            break
        import time

        time.sleep(0.05)
    assert status["status"] == "COMPLETED" and status["percent"] == 100
    assert status["counts"] == {"success": 3, "error": 1, "anomaly": 0, "ineligible": 0}
    data = gw.get(f"/portal/aro/batches/{ref}/response.zip", headers=ARO_H)
    response = read_response_zip(data.content, "week-12")
    assert sorted(response.certificates) == ["meter0.crt", "meter1.crt", "meter2.crt"]
    lines = [(line.identifier, line.file_name, line.status, line.error_code) for line in response.lines]
    assert lines == [("1", "broken.csr", "error", "CR:CC3"), ("2", "meter0.csr", "success", ""),
                     ("3", "meter1.csr", "success", ""), ("4", "meter2.csr", "success", "")]
    # the batch page names each file that got no certificate, with its status and code
    page = gw.get(f"/portal/aro/batches/{ref}", headers=ARO_H).text
    failed = re.findall(r'<td data-label="File" class="wrap">([^<]+)</td><td data-label="Status">([^<]+)</td>\s*'
                        r'<td data-label="Code"><code class="rule">([^<]+)</code>', page)
    assert failed == [("broken.csr", "error", "CR:CC3")]
    # the list holds the Portal batch and one the Party's system sent over the JSON API, from the store
    from smki.domain import Route
    from smki.services.batch_jobs import submit_batch
    from smki.services.capacity import capacity_settings
    from smki.services.requests import Requester

    der = make_device_csr((0x00DB000000000200).to_bytes(8, "big"), Usage.DS)
    job = submit_batch(home, Requester(PARTY, ARO, Route.GATEWAY), [("1", der)], interface="json",
                       client_ref="nightly", capacity=capacity_settings(home))
    listing = gw.get("/portal/aro/batches", headers=ARO_H).text
    rows = re.findall(r'<tr data-interface="(\w+)">\s*<td data-label="Batch">(?:<a [^>]+>)?([^<]+)', listing)
    assert rows == [("JSON", f"{job.id} (nightly)"), ("Portal", "week-12")]
    assert re.search(r'data-label="Status">(Queued|Awaiting RA approval)<', listing)  # labels, not codes
    assert 'data-label="Status">Completed<' in listing
    # another Party cannot see it
    assert gw.get(f"/portal/aro/batches/{ref}/status", headers={"x-test-identity": f"aro:NETOP2:{ARO}"}
                  ).status_code == 404
    assert "nightly" not in gw.get("/portal/aro/batches", headers={"x-test-identity": f"aro:NETOP2:{ARO}"}).text


@pytest.mark.parametrize("reference", ["Zürich ☃", 'q"uote;x=1', "line\r\nX-Injected: yes"])
def test_a_json_batch_response_downloads_whatever_its_reference(home: Home, clients: Clients,
                                                                reference: str) -> None:
    """A JSON batch's reference is any text its system sent; as the download's file name it made a
    500 (not Latin-1), a broken header (a quote) or a dropped connection (a line break)."""
    from smki.domain import Route
    from smki.services.batch_jobs import BatchRunner, submit_batch
    from smki.services.capacity import capacity_settings
    from smki.services.requests import Requester

    app_id = register(home)
    assert app_id is not None
    approve_device(home, app_id)
    der = make_device_csr((0x00DB000000000300).to_bytes(8, "big"), Usage.DS)
    job = submit_batch(home, Requester(PARTY, ARO, Route.GATEWAY), [("1", der)], interface="json",
                       client_ref=reference, capacity=capacity_settings(home))
    BatchRunner(home, workers=0, poll=0.01).run_once()
    reply = clients.gateway.get(f"/portal/aro/batches/{job.id}/response.zip", headers=ARO_H)
    assert reply.status_code == 200
    disposition = reply.headers["content-disposition"]
    name = re.fullmatch(r'attachment; filename="([A-Za-z0-9._-]+)"', disposition)
    assert name is not None and name.group(1).endswith("-result.zip")
    assert zipfile.ZipFile(BytesIO(reply.content)).namelist()


def test_a_zip_upload_is_unpacked_and_stored_off_the_event_loop(home: Home, clients: Clients,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Unpacking and storing 50,000 CSRs takes seconds; on the event loop (the handler is async) it
    held up every other request of the process, both listeners and every Party, for as long."""
    import asyncio

    import smki.interfaces.portal.aro_pages as pages

    app_id = register(home)
    assert app_id is not None
    approve_device(home, app_id)
    on_loop: list[str] = []

    def watched(name: str, real: object) -> object:
        def run(*args: object, **kwargs: object) -> object:
            try:
                asyncio.get_running_loop()
                on_loop.append(name)
            except RuntimeError:
                pass  # a worker thread: no event loop running here
            return real(*args, **kwargs)  # type: ignore[operator]
        return run

    monkeypatch.setattr(pages, "read_portal_zip", watched("read_portal_zip", pages.read_portal_zip))
    monkeypatch.setattr(pages, "submit_portal_batch", watched("submit_portal_batch", pages.submit_portal_batch))
    gw = clients.gateway
    t = token(gw.get("/portal/aro/batches", headers=ARO_H))
    csr = base64.b64encode(make_device_csr((0x00DB000000000400).to_bytes(8, "big"), Usage.DS))
    reply = gw.post("/portal/aro/batches", headers=ARO_H, data={"csrf": t},
                    files={"batch": ("one.zip", write_portal_zip([("m.csr", csr)]), "application/zip")},
                    follow_redirects=False)
    assert reply.status_code == 303
    assert on_loop == []


def test_a_bad_zip_is_refused_whole(home: Home, clients: Clients) -> None:
    app_id = register(home)
    assert app_id is not None
    approve_device(home, app_id)
    gw = clients.gateway
    t = token(gw.get("/portal/aro/batches", headers=ARO_H))
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("nested/a.csr", b"x")
    reply = gw.post("/portal/aro/batches", headers=ARO_H, data={"csrf": t},
                    files={"batch": ("b.zip", buffer.getvalue(), "application/zip")})
    assert reply.status_code == 400 and "portal.zip-bad-entry" in reply.text


def test_batch_upload_by_a_party_that_is_not_a_device_subscriber_names_the_rule(home: Home,
                                                                               clients: Clients) -> None:
    register(home)  # applied, not approved
    gw = clients.gateway
    t = token(gw.get("/portal/aro/batches", headers=ARO_H))
    upload = write_portal_zip([("a.csr", base64.b64encode(make_device_csr(b"\x01" * 8, Usage.DS)))])
    reply = gw.post("/portal/aro/batches", headers=ARO_H, data={"csrf": t},
                    files={"batch": ("b.zip", upload, "application/zip")})
    assert reply.status_code == 403 and 'data-rule="subscriber.authorised-for-policy"' in reply.text


def test_staff_parties_aros_audit_and_publication(home: Home, clients: Clients) -> None:
    register(home)
    gw = clients.gateway
    page = gw.get("/portal/staff/parties", headers=staff(OPERATOR))
    assert "Supplier One Ltd" in page.text and "passport and utility bill" in page.text
    assert "DGC-001 from 2019-02-01 (in force)" in page.text  # since when the Gateway Connection holds
    t = token(page)
    kept = gw.post("/portal/staff/aros", headers=staff(OPERATOR),
                   data={"csrf": t, "party_id": "NOPE", "aro_id": "x9", "name": "Kept Name", "nominated_by": "SRO"})
    assert kept.status_code == 404 and 'value="Kept Name"' in kept.text  # input kept on error
    gw.post("/portal/staff/aros", headers=staff(OPERATOR),
            data={"csrf": t, "party_id": PARTY, "aro_id": "aro2", "name": "Bea Second", "nominated_by": "SRO"})
    gw.post("/portal/staff/aros/aro2/suspend", headers=staff(OPERATOR), data={"csrf": t})
    aro2 = home.store.registry.aro("aro2")
    assert aro2 is not None and aro2.status == "suspended"
    published = gw.post("/portal/staff/publish/crl", headers=staff(OPERATOR), data={"csrf": t},
                        follow_redirects=True)
    assert published.status_code == 200
    # the operator's publication follows the key ceremony's CRL #1
    assert re.search(r'data-list="CRL"><td data-label="List">CRL</td>\s*<td data-label="Number">2</td>',
                     published.text)
    audit = gw.get("/portal/staff/audit", headers={**staff(AUDITOR), "Sec-Fetch-Site": "same-origin"},
                   params={"verify": "1"})
    assert re.search(r"Chain verified: all \d+ records are intact", audit.text)
    assert "aro.suspended" in audit.text
    # Another site's page cannot make a staff member's browser run the verification (it reads every
    # record): a browser names a cross-site request so (Fetch Metadata), and it is refused.
    for site in ("cross-site", "same-site"):
        forged = gw.get("/portal/staff/audit", headers={**staff(AUDITOR), "Sec-Fetch-Site": site},
                        params={"verify": "1"})
        assert forged.status_code == 403 and "portal.cross-site" in forged.text
        assert "Chain verified" not in forged.text


@pytest.mark.parametrize("path", ["/portal/static/portal.css", "/portal/static/portal.js"])
def test_assets_are_local(clients: Clients, path: str) -> None:
    reply = clients.gateway.get(path)
    assert reply.status_code == 200
    assert "http://" not in reply.text and "https://" not in reply.text


def test_staff_overview_shows_capacity_use_per_party(home: Home, clients: Clients) -> None:
    from smki.services.capacity import capacity_settings, consume

    register(home)
    settings = capacity_settings(home)
    name = "portal-adhoc" if "portal-adhoc" in settings.limits else sorted(settings.limits)[0]
    consume(home, settings, PARTY, name, 40, actor="test", interface="portal")
    page = clients.gateway.get("/portal/staff", headers=staff(AUDITOR))
    assert page.status_code == 200
    row = re.search(rf"<tr><td>{PARTY}</td><td>{name}</td><td>(\d+)</td><td>(\d+)</td>", page.text)
    assert row is not None, page.text
    assert int(row.group(1)) == 40


def test_a_portal_device_csr_for_a_device_with_100_certificates_is_refused(home: Home, clients: Clients) -> None:
    """Spec §3.2: a CSR is rejected once 100 Device Certificates have been issued for its Device ID —
    the Portal's single Device CSR too, as the web services and the Portal's ZIP batches do."""
    from smki.services.batch_sources import BatchItem
    from smki.services.device_issuance import issue_device_batch

    app_id = register(home)
    assert app_id is not None
    approve_device(home, app_id)
    full = bytes.fromhex("00db0000000000f1")
    filled = issue_device_batch(home, [BatchItem(i, f"f{i}", make_device_csr(full, Usage.DS)) for i in range(100)],
                                actor="test", batch_ref="fill-100", workers=0)
    assert filled.issued == 100
    gw = clients.gateway
    t = token(gw.get("/portal/aro/csr", headers=ARO_H))
    csr = make_device_csr(full, Usage.KA)
    refused = gw.post("/portal/aro/csr", headers=ARO_H, data={"csrf": t, "csr_text": base64.b64encode(csr).decode()})
    assert "csr.device-limit" in refused.text and "100 Device Certificates have already been issued" in refused.text
    assert len(home.store.certificates_for_device(full)) == 100  # never signed


def test_a_device_search_needs_srept(home: Home, clients: Clients) -> None:
    """Searching any Device's certificates is a Repository search: rule ``repository.srept-passed``
    (spec §1). The Party's own certificates stay listed."""
    from smki.audit import AuditEvent

    register(home)
    with home.store.transaction() as tx:
        tx.registry.update_party(PARTY, srept_passed=None)
        tx.append_audit([AuditEvent("admin", "test.setup", PARTY)])
    page = clients.gateway.get("/portal/aro/certificates", params={"device": "00db123456789001"}, headers=ARO_H)
    assert page.status_code == 403 and "repository.srept-passed" in page.text


def test_portal_device_csrs_count_against_the_partys_daily_capacity(home: Home, clients: Clients) -> None:
    from smki.services.capacity import capacity_settings, consume

    app_id = register(home)
    assert app_id is not None
    approve_device(home, app_id)
    settings = capacity_settings(home)
    consume(home, settings, PARTY, "portal-adhoc", int(settings.limits["portal-adhoc"].capacity),
            actor="test", interface="portal")
    gw = clients.gateway
    t = token(gw.get("/portal/aro/csr", headers=ARO_H))
    device = bytes.fromhex("00db0000000000aa")
    csr = make_device_csr(device, Usage.DS)
    refused = gw.post("/portal/aro/csr", headers=ARO_H, data={"csrf": t, "csr_text": base64.b64encode(csr).decode()})
    assert "capacity." in refused.text
    assert home.store.certificates_for_device(device) == []


def test_actions_follow_the_role_and_approve_is_disabled_naming_the_failing_rules(home: Home,
                                                                                  clients: Clients) -> None:
    from smki.services import applications as apps

    app_id = register(home)
    assert app_id is not None
    apps.propose(home, app_id, staff_id=OPERATOR)  # no evidence of need: the rules refuse
    gw = clients.gateway
    operator_page = gw.get("/portal/staff/applications", headers=staff(OPERATOR)).text
    assert f"/applications/{app_id}/approve" not in operator_page and f"/applications/{app_id}/refuse" \
        not in operator_page
    assert "A different RA approver decides" in operator_page
    approver_page = gw.get("/portal/staff/applications", headers=staff(APPROVER)).text
    assert f'action="/portal/staff/applications/{app_id}/approve"' not in approver_page  # no live Approve form
    blocked = re.search(rf'<button type="button" disabled aria-describedby="blocked-{app_id}">Approve</button>\s*'
                        rf'<span id="blocked-{app_id}">(.*?)</span>', approver_page, re.DOTALL)
    assert blocked and 'device.evidence-of-need' in blocked.group(1)
    assert f"/applications/{app_id}/refuse" in approver_page  # refusing stays possible
    assert "/evidence" not in approver_page and "/propose" not in approver_page
    parties = gw.get("/portal/staff/parties", headers=staff(APPROVER)).text
    assert "/verify" not in parties and "Nominate an ARO" not in parties and "/suspend" in parties
    assert "Publish CRL now" not in gw.get("/portal/staff/revocations", headers=staff(APPROVER)).text


def test_the_audit_log_filters_pages_exports_and_links_records_by_hash(home: Home, clients: Clients) -> None:
    import csv
    import io

    register(home)
    gw = clients.gateway
    total = home.store.audit_head()[0]
    first = gw.get("/portal/staff/audit", headers=staff(AUDITOR)).text
    seqs = [int(s) for s in re.findall(r'aria-label="Audit record (\d+)"', first)]
    assert seqs == list(range(total, max(total - 50, 0), -1))[: len(seqs)] and seqs[0] == total
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", first)  # to the second, in UTC
    only_aro = gw.get("/portal/staff/audit", headers=staff(AUDITOR), params={"action": "aro."}).text
    actions = set(re.findall(r'<td data-label="Action"><code class="rule">([^<]+)</code>', only_aro))
    assert actions and all(a.startswith("aro.") for a in actions)
    by_actor = gw.get("/portal/staff/audit", headers=staff(AUDITOR), params={"actor": OPERATOR}).text
    assert all(OPERATOR in a for a in re.findall(r'<td data-label="Actor">([^<]+)</td>', by_actor))
    none = gw.get("/portal/staff/audit", headers=staff(AUDITOR), params={"until": "2000-01-01"}).text
    assert "No audit record matches." in none
    bad = gw.get("/portal/staff/audit", headers=staff(AUDITOR), params={"since": "yesterday"})
    assert bad.status_code == 400 and "portal.bad-date" in bad.text
    older = gw.get("/portal/staff/audit", headers=staff(AUDITOR), params={"before": "3"}).text
    assert [int(s) for s in re.findall(r'aria-label="Audit record (\d+)"', older)] == [2, 1]
    exported = gw.get("/portal/staff/audit.csv", headers=staff(AUDITOR), params={"action": "aro."})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows and {r["action"] for r in rows} == actions and all(len(r["hash"]) == 64 for r in rows)
    detail = gw.get("/portal/staff/audit/2", headers=staff(AUDITOR)).text
    one = home.store.audit_record(2)
    assert one is not None and one.prev_hash.hex() in detail and one.hash.hex() in detail
    assert 'href="/portal/staff/audit/1" rel="prev"' in detail and 'href="/portal/staff/audit/3" rel="next"' in detail
    assert "matches" in detail and "recomputed and equal" in detail
    assert gw.get("/portal/staff/audit/999999", headers=staff(AUDITOR)).status_code == 404


def test_an_aro_asking_to_revoke_a_device_certificate_is_refused_with_the_documented_code(
        home: Home, clients: Clients) -> None:
    """The Portal refuses with the same code as every other interface (README:
    ``revocation.device-certificate``), and nothing changes."""
    from smki.domain import CertKind
    from smki.services.populate import populate_devices
    from smki.store import CertificateQuery

    register(home, device_applied=False)
    populate_devices(home, 1, actor="test")
    device = home.store.find_certificates(CertificateQuery(kind=CertKind.DEVICE, limit=1))[0]
    gw = clients.gateway
    t = token(gw.get("/portal/aro/csr", headers=ARO_H))
    refused = gw.post(f"/portal/aro/certificates/{device.serial}/revoke", headers=ARO_H,
                      data={"csrf": t, "reason": "keyCompromise", "confirm": "yes"})
    assert refused.status_code == 400 and "revocation.device-certificate" in refused.text
    record = home.store.certificate_by_serial(device.serial)
    assert record is not None and record.status is device.status
