"""A hostile user against the Portal, over real HTTPS with real SMKI client credentials.

Each test drives a live listener (``tests.api.conftest.start_listeners``: uvicorn, mutual TLS
against the credentials CA, on 127.0.0.1) the way a browser or a script would: cross-site form
posts, another Party's ids in URLs, RA staff acting beyond their role, markup in every field a user
fills, and hostile batch ZIPs. The Portal has no password login and no cookie session: the client
certificate is checked on every request (see docs/portal.md, "Misuse").
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pytest

from smki.audit import AuditEvent
from smki.ca.devcsr import make_device_csr, make_organisation_csr
from smki.domain import CertificatePolicy, CertStatus, RemotePartyRole, Route, Usage
from smki.services import applications as apps
from smki.services import registry as reg
from smki.services.batch_jobs import submit_batch
from smki.services.capacity import capacity_settings
from smki.services.context import Home
from smki.services.requests import Requester, request_organisation
from tests.api.conftest import ClientFiles, LiveListeners, credential, start_listeners
from tests.portal.conftest import (
    APPROVER,
    ARO,
    AUDITOR,
    ENTITY,
    OPERATOR,
    OTHER_ENTITY,
    OTHER_PARTY,
    PARTY,
    approve_device,
    register,
)

OTHER_ARO = "aro2"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
HEADERS = {
    "content-security-policy": "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


@dataclass
class Portal:
    live: LiveListeners
    aro: httpx.Client
    other_aro: httpx.Client
    operator: httpx.Client
    approver: httpx.Client
    auditor: httpx.Client
    application: int
    org_serial: str
    other_serial: str


@pytest.fixture
def portal(home: Home, tmp_path: Path) -> Iterator[Portal]:
    application = register(home)
    assert application is not None
    approve_device(home, application)
    reg.nominate_aro(home, OTHER_ARO, OTHER_PARTY, "Oscar Other", "SRO Sue", staff_id=OPERATOR)
    reg.verify_aro(home, OTHER_ARO, "passport", staff_id=OPERATOR)
    reg.screen_aro(home, OTHER_ARO, date(2021, 3, 1), "BS 7858:2019", staff_id=OPERATOR)
    with home.store.transaction() as tx:
        tx.registry.update_party(OTHER_PARTY, srept_passed=date(2019, 1, 10), uept_completed=date(2019, 2, 1))
        tx.registry.start_period(OTHER_PARTY, "registered-role", "import-supplier", on=date(2019, 2, 1), by="admin")
        tx.registry.start_period(OTHER_PARTY, "gateway-connection", "DGC-002", on=date(2019, 2, 1), by="admin")
        tx.registry.set_subscription(OTHER_PARTY, "organisation", "approved")
        tx.append_audit([AuditEvent("admin", "test.setup", OTHER_PARTY)])
    approve_device(home, apps.apply(home, OTHER_PARTY, CertificatePolicy.DEVICE, staff_id=OPERATOR).application_id)
    org = request_organisation(home, Requester(PARTY, ARO, Route.GATEWAY),
                               make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS))
    other = request_organisation(home, Requester(OTHER_PARTY, OTHER_ARO, Route.GATEWAY),
                                 make_organisation_csr(OTHER_ENTITY, RemotePartyRole.NETWORK_OPERATOR, Usage.DS))
    files: dict[str, ClientFiles] = {
        "aro": credential(home, tmp_path, "aro", ARO), "other_aro": credential(home, tmp_path, "aro", OTHER_ARO),
        "operator": credential(home, tmp_path, "staff", OPERATOR),
        "approver": credential(home, tmp_path, "staff", APPROVER),
        "auditor": credential(home, tmp_path, "staff", AUDITOR)}
    live = start_listeners(home, runner=False)
    try:
        yield Portal(live, *(live.client(files[k]) for k in ("aro", "other_aro", "operator", "approver", "auditor")),
                     application, org.serial, other.serial)
    finally:
        live.stop()


def token(client: httpx.Client, page: str) -> str:
    match = CSRF.search(client.get(page).text)
    assert match, page
    return match.group(1)


def refused(reply: httpx.Response, status: int, code: str) -> None:
    assert reply.status_code == status, (reply.status_code, reply.text[-800:])
    assert code in reply.text, reply.text[-800:]
    assert "Traceback" not in reply.text


# --- cross-site request forgery ---------------------------------------------------------------


def test_a_post_without_a_token_or_with_another_users_token_changes_nothing(portal: Portal, home: Home) -> None:
    serial = portal.org_serial
    theirs = token(portal.other_aro, "/portal/aro")
    for form in ({}, {"csrf": ""}, {"csrf": theirs}, {"csrf": "0" * 64}):
        reply = portal.aro.post(f"/portal/aro/certificates/{serial}/revoke",
                                data={**form, "confirm": "yes", "reason": "keyCompromise"})
        refused(reply, 403, "portal.form-expired")
    assert home.store.certificate_by_serial(serial).status is CertStatus.IN_USE  # type: ignore[union-attr]
    # a staff form with an ARO's token, and with another staff member's
    for forged in (token(portal.aro, "/portal/aro"), token(portal.operator, "/portal/staff/parties")):
        reply = portal.approver.post("/portal/staff/aros/aro1/suspend", data={"csrf": forged, "reason": "x"})
        refused(reply, 403, "portal.form-expired")
    assert home.store.registry.aro(ARO).status == "active"  # type: ignore[union-attr]
    # the user's own token does work (the check above refused the token, not the action)
    reply = portal.aro.post(f"/portal/aro/certificates/{serial}/revoke", follow_redirects=False,
                            data={"csrf": token(portal.aro, "/portal/aro"), "confirm": "yes", "reason": "superseded"})
    assert reply.status_code == 303


def test_form_tokens_of_two_identities_never_coincide(portal: Portal, home: Home, tmp_path: Path) -> None:
    """Register ids may hold ':': ARO 'B:C' of Party 'A' and ARO 'C' of Party 'A:B' were both named
    'aro:A:B:C' for the form token, so each one's token forged the other's forms."""
    clients = []
    for party, aro in (("A", "B:C"), ("A:B", "C")):
        with home.store.transaction() as tx:
            tx.registry.add_party(party, f"Party {party}", "large-supplier")
            tx.append_audit([AuditEvent("admin", "test.setup", party)])
        reg.nominate_aro(home, aro, party, f"Officer {aro}", "SRO", staff_id=OPERATOR)
        reg.verify_aro(home, aro, "passport", staff_id=OPERATOR)
        reg.screen_aro(home, aro, date(2021, 3, 1), "BS 7858:2019", staff_id=OPERATOR)
        clients.append(portal.live.client(credential(home, tmp_path / party.replace(":", "_"), "aro", aro)))
    first, second = clients
    reply = second.post("/portal/aro/apply", data={"csrf": token(first, "/portal/aro"), "policy": "organisation"})
    refused(reply, 403, "portal.form-expired")
    assert not home.store.registry.applications(party_id="A:B")


# --- sessions: there are none ---------------------------------------------------------------


def test_no_cookie_is_ever_set_and_every_page_sends_the_security_headers(portal: Portal, home: Home) -> None:
    job = submit_batch(home, Requester(PARTY, ARO, Route.GATEWAY),
                       [("1", make_device_csr(bytes.fromhex("00db000000000501"), Usage.DS))],
                       interface="json", client_ref="ref", capacity=capacity_settings(home))
    gets = [(portal.aro, "/portal/aro"), (portal.aro, "/portal/aro/certificates"),
            (portal.aro, f"/portal/aro/certificates/{portal.org_serial}"),
            (portal.aro, f"/portal/aro/certificates/{portal.org_serial}.pem"),
            (portal.aro, f"/portal/aro/batches/{job.id}"), (portal.aro, f"/portal/aro/batches/{job.id}/status"),
            (portal.aro, "/portal/aro/batches/999"), (portal.aro, "/portal/staff"),
            (portal.aro, "/portal/no-such-page"), (portal.aro, "/portal/aro/apply"),
            (portal.auditor, "/portal/staff/audit"), (portal.auditor, "/portal/staff/audit.csv"),
            (portal.aro, "/portal/static/portal.css")]
    for client, path in gets:
        reply = client.get(path)
        assert "set-cookie" not in reply.headers, path
        for name, value in HEADERS.items():
            assert value in reply.headers.get(name, ""), (path, reply.status_code, name, dict(reply.headers))
        if "static" not in path:
            assert reply.headers.get("cache-control") == "no-store", (path, dict(reply.headers))
    # a mistyped or made-up Portal URL is the Portal's own page, not the JSON API's error object
    refused(portal.aro.get("/portal/no-such-page"), 404, "http.not-found")
    wrong = portal.aro.get("/portal/aro/apply")
    refused(wrong, 405, "http.method-not-allowed")
    assert wrong.headers["allow"] == "POST" and wrong.headers["content-type"].startswith("text/html")
    redirect = portal.aro.get("/portal/", follow_redirects=False)
    assert redirect.status_code == 303 and "set-cookie" not in redirect.headers
    # a refusal the listener makes (a body over the limit) is the Portal's page, with the headers
    big = portal.aro.post("/portal/aro/apply", content=b"x" * (300 * 1024),
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413
    for name, value in HEADERS.items():
        assert value in big.headers.get(name, ""), (name, dict(big.headers))


# --- authorisation -------------------------------------------------------------------------


def test_an_aro_reaches_neither_staff_pages_nor_another_partys_things(portal: Portal, home: Home) -> None:
    for path in ("/portal/staff", "/portal/staff/applications", "/portal/staff/audit", "/portal/staff/audit.csv",
                 "/portal/staff/audit/1", "/portal/staff/parties", "/portal/staff/batches", "/portal/staff/devices"):
        refused(portal.aro.get(path), 403, "portal.forbidden")
    for path in ("/portal/aro", "/portal/aro/certificates", "/portal/aro/batches"):
        refused(portal.operator.get(path), 403, "portal.forbidden")
    staff_token = token(portal.aro, "/portal/aro")
    refused(portal.aro.post("/portal/staff/aros/aro2/suspend", data={"csrf": staff_token}), 403, "portal.forbidden")
    # another Party's certificate, batch and application, by id
    other = portal.other_serial
    for path in (f"/portal/aro/certificates/{other}", f"/portal/aro/certificates/{other}.pem",
                 f"/portal/aro/certificates/{other}.der"):
        refused(portal.aro.get(path), 404, "certificate.not-found")
    mine = token(portal.aro, "/portal/aro")
    refused(portal.aro.post(f"/portal/aro/certificates/{other}/revoke",
                            data={"csrf": mine, "confirm": "yes", "reason": "keyCompromise"}), 404, "not-found")
    assert home.store.certificate_by_serial(other).status is CertStatus.IN_USE  # type: ignore[union-attr]
    job = submit_batch(home, Requester(OTHER_PARTY, OTHER_ARO, Route.GATEWAY),
                       [("1", make_device_csr(bytes.fromhex("00db000000000601"), Usage.DS))],
                       interface="json", client_ref="theirs", capacity=capacity_settings(home))
    for path in (f"/portal/aro/batches/{job.id}", f"/portal/aro/batches/{job.id}/response.zip"):
        refused(portal.aro.get(path), 404, "batch.not-found")
    assert portal.aro.get(f"/portal/aro/batches/{job.id}/status").status_code == 404
    assert "theirs" not in portal.aro.get("/portal/aro/batches").text
    theirs = home.store.registry.applications(party_id=PARTY)[0].application_id
    other_token = token(portal.other_aro, "/portal/aro")
    reply = portal.other_aro.post(f"/portal/aro/applications/{theirs}/evidence", data={"csrf": other_token},
                                  files={"document": ("doc.pdf", b"%PDF-1.4", "application/pdf")})
    refused(reply, 404, "ra.application-not-found")
    assert not list((home.settings.home / "portal").glob("evidence/**/*.pdf"))


def test_staff_act_only_as_their_role_permits(portal: Portal, home: Home) -> None:
    """Each staff member posts with their own valid token: the role check, not the form check, refuses."""
    reg.nominate_aro(home, "aro3", PARTY, "Third", "SRO Sam", staff_id=OPERATOR)
    job = submit_batch(home, Requester(PARTY, ARO, Route.GATEWAY),
                       [("1", make_device_csr(bytes.fromhex("00db000000000701"), Usage.DS))],
                       interface="json", client_ref="held", capacity=capacity_settings(home))
    approver = token(portal.approver, "/portal/staff/parties")
    for path, form in (("/portal/staff/aros/aro3/verify", {"check": "passport"}),
                       ("/portal/staff/aros/aro3/screen", {"standard": "BS 7858:2019"}),
                       ("/portal/staff/publish/crl", {}),
                       (f"/portal/staff/applications/{portal.application}/propose", {}),
                       (f"/portal/staff/applications/{portal.application}/evidence",
                        {"kind": "installation-need", "reference": "x"})):
        refused(portal.approver.post(path, data={"csrf": approver, **form}), 403, "role")
    refused(portal.approver.post("/portal/staff/aros", data={"csrf": approver, "aro_id": "aro9", "party_id": PARTY,
                                                             "name": "N", "nominated_by": "S"}), 403, "ra.staff-role")
    assert home.store.registry.aro("aro9") is None
    assert home.store.registry.aro("aro3").identity_verified is None  # type: ignore[union-attr]
    operator = token(portal.operator, "/portal/staff/parties")
    for path in (f"/portal/staff/batches/{job.id}/approve", f"/portal/staff/batches/{job.id}/reject",
                 f"/portal/staff/applications/{portal.application}/approve",
                 f"/portal/staff/applications/{portal.application}/refuse"):
        reply = portal.operator.post(path, data={"csrf": operator, "reason": "no"})
        assert reply.status_code in (403, 404), (path, reply.status_code)  # 404: the batch was not PENDING
        assert "Traceback" not in reply.text
    # the auditor's pages offer no form, so the auditor has no token: any post is refused
    assert not CSRF.search(portal.auditor.get("/portal/staff/parties").text)
    refused(portal.auditor.post("/portal/staff/aros/aro1/suspend", data={"csrf": approver}), 403,
            "portal.form-expired")
    assert home.store.registry.aro(ARO).status == "active"  # type: ignore[union-attr]


# --- output encoding -----------------------------------------------------------------------

MARKUP = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"


def test_what_users_type_is_shown_escaped(portal: Portal, home: Home) -> None:
    job = submit_batch(home, Requester(PARTY, ARO, Route.GATEWAY),
                       [("1", make_device_csr(bytes.fromhex("00db000000000801"), Usage.DS))],
                       interface="json", client_ref=MARKUP + "\r\nX-Evil: 1", capacity=capacity_settings(home))
    mine = token(portal.aro, "/portal/aro")
    applied = portal.aro.post("/portal/aro/apply", data={"csrf": mine, "policy": "organisation"})
    application = home.store.registry.applications(party_id=PARTY)[-1].application_id
    reply = portal.aro.post(f"/portal/aro/applications/{application}/evidence",
                            data={"csrf": mine, "description": MARKUP},
                            files={"document": (MARKUP + ".pdf", b"%PDF-1.4", "application/pdf")})
    assert reply.status_code in (200, 303, 400), (applied.status_code, reply.status_code)
    pages = [portal.aro.get("/portal/aro/batches"), portal.aro.get(f"/portal/aro/batches/{job.id}"),
             portal.aro.get("/portal/aro"), portal.operator.get("/portal/staff/applications"),
             portal.aro.get("/portal/aro/certificates", params={"serial": MARKUP, "device": MARKUP}),
             portal.aro.get(f"/portal/aro/batches/{MARKUP}"), portal.aro.get(f"/portal/aro/certificates/{MARKUP}"),
             portal.auditor.get("/portal/staff/audit", params={"actor": MARKUP, "subject": MARKUP}),
             portal.auditor.get("/portal/staff/devices", params={"device": MARKUP})]
    audit_pages = [portal.auditor.get(f"/portal/staff/audit/{r.seq}") for r in list(home.store.audit_rows(1))[-15:]]
    for page in pages + audit_pages:
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, (page.url, page.text[-600:])
    with portal.aro.stream("GET", f"/portal/aro/batches/{job.id}/response.zip") as download:
        disposition = download.headers.get("content-disposition", "")
        assert "\r" not in disposition and "\n" not in disposition and "<" not in disposition
        assert "x-evil" not in download.headers


# --- uploads -------------------------------------------------------------------------------


def _zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def _non_utf8_zip() -> bytes:
    data = bytearray(_zip([("abcdef.csr", b"x")]))
    # the name's bytes, in both the local header and the central directory: Latin-1 'é', no UTF-8 flag
    return bytes(data.replace(b"abcdef.csr", b"ab\xe9\xff\xfef.csr"))


def test_hostile_batch_zips_get_a_refusal_page(portal: Portal, home: Home) -> None:
    csr = make_device_csr(bytes.fromhex("00db000000000901"), Usage.DS)
    # 1,100 files of 1 MiB of zeros: about 1 MB of ZIP, over 64 MB as read (64 KiB + 1 byte of each)
    bomb = _zip([(f"{i:04d}.csr", bytes(1024 * 1024)) for i in range(1_100)])
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w", zipfile.ZIP_STORED) as archive:
        for i in range(50_001):
            archive.writestr(f"{i}.csr", b"")
    cases = {
        "not-a-zip": (b"PK\x03\x04 garbage", "portal.zip-invalid"),
        "bomb": (bomb, "portal.zip-too-large"),
        "traversal": (_zip([("../../etc/x.csr", csr)]), "portal.zip-bad-entry"),
        "absolute": (_zip([("/tmp/x.csr", csr)]), "portal.zip-bad-entry"),
        "backslash": (_zip([("..\\x.csr", csr)]), "portal.zip-bad-entry"),
        "nested": (_zip([("dir/a.csr", csr)]), "portal.zip-bad-entry"),
        "duplicate": (_zip([("a.csr", csr), ("A.CSR", csr)]), "portal.zip-duplicate"),
        "non-utf8": (_non_utf8_zip(), "portal.zip-bad-entry"),
        "markup": (_zip([("<b>x</b>.csr", csr)]), "portal.zip-bad-entry"),
        "too-many": (many.getvalue(), "portal.zip-too-many"),
        "empty": (_zip([]), "portal.zip-"),
    }
    before = len(home.store.registry.applications())
    for label, (data, code) in cases.items():
        mine = token(portal.aro, "/portal/aro/batches")
        reply = portal.aro.post("/portal/aro/batches", data={"csrf": mine},
                                files={"batch": (f'{label}"\r\n<x>.zip', data, "application/zip")})
        assert reply.status_code == 400, (label, reply.status_code, reply.text[-600:])
        assert code in reply.text and "Traceback" not in reply.text, (label, reply.text[-600:])
        assert "<b>x</b>" not in reply.text
    assert len(home.store.registry.applications()) == before


def test_the_response_zip_of_a_json_batch_names_no_file_outside_where_it_is_unpacked(portal: Portal,
                                                                                      home: Home) -> None:
    """A JSON or XML batch's CSR ids are any text (1-100 characters): the Portal's response ZIP named
    each certificate '<id>.crt', so '../../x' or '/etc/x' was a path that unzip writes outside its folder."""
    from smki.services.batch_jobs import BatchRunner

    ids = ["../../evil", "/etc/evil", "..\\win", "a/b", "a_b", "ok-1", "<x>", ".hidden"]
    job = submit_batch(home, Requester(PARTY, ARO, Route.GATEWAY),
                       [(item, make_device_csr(bytes.fromhex(f"00db0000000010{n:02x}"), Usage.DS))
                        for n, item in enumerate(ids)],
                       interface="json", client_ref="../../ref", capacity=capacity_settings(home))
    BatchRunner(home, workers=0, poll=0.01).run_once()
    reply = portal.aro.get(f"/portal/aro/batches/{job.id}/response.zip")
    assert reply.status_code == 200, reply.text[-500:]
    with zipfile.ZipFile(io.BytesIO(reply.content)) as outer:
        names = outer.namelist()
        inner_name = next(n for n in names if n.endswith("-response.zip"))
        record = outer.read(next(n for n in names if n.endswith("-response.txt"))).decode()
        with zipfile.ZipFile(io.BytesIO(outer.read(inner_name))) as inner:
            names += inner.namelist()
    for name in names:
        assert "/" not in name and "\\" not in name and not name.startswith(".") and "<" not in name, names
    assert len({n.lower() for n in names}) == len(names), names  # no two entries alike
    assert sum(n.endswith(".crt") for n in names) == len(ids) and "ok-1.crt" in names
    assert all(item in record for item in ("../../evil", "a/b"))  # the record still names each CSR's own id


def test_the_audit_csv_starts_no_cell_with_a_spreadsheet_formula(portal: Portal, home: Home) -> None:
    """A staff member's refused action is audited with the id from the URL as its subject: an
    approver posting to /staff/aros/=HYPERLINK(…)/verify planted a formula that the auditor's
    spreadsheet ran when it opened the export."""
    approver = token(portal.approver, "/portal/staff/parties")
    planted = '=HYPERLINK("https:evil.example","x")'
    reply = portal.approver.post(f"/portal/staff/aros/{planted}/verify", data={"csrf": approver, "check": "x"})
    refused(reply, 403, "ra.staff-role")
    refused(portal.approver.post("/portal/staff/aros/@SUM(1+1)/screen", data={"csrf": approver, "standard": "x"}),
            403, "ra.staff-role")
    exported = portal.auditor.get("/portal/staff/audit.csv")
    assert exported.status_code == 200
    import csv

    rows = list(csv.reader(io.StringIO(exported.text)))
    subjects = [row[4] for row in rows[1:]]
    assert "'" + planted in subjects and "'@SUM(1+1)" in subjects
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row


def test_a_form_the_server_cannot_parse_is_the_portals_refusal_page(portal: Portal) -> None:
    """Starlette refuses some multipart bodies itself (over 1,000 fields or files, a field over 1 MB,
    no boundary); that surfaced as the JSON API's 'request.bad-json' object on a Portal page."""
    many = [("f", ("x", b"1")) for _ in range(1_001)]
    bodies = [
        ("/portal/aro/batches", {"files": many}),
        ("/portal/aro/batches", {"files": {"note": (None, b"x" * (1024 * 1024 + 10))}}),
        ("/portal/aro/apply", {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}}),
        ("/portal/aro/apply", {"content": b"\xff\xfe=\xff", "headers": {
            "content-type": "application/x-www-form-urlencoded"}}),
    ]
    for path, how in bodies:
        reply = portal.aro.post(path, **how)  # type: ignore[arg-type]
        assert reply.status_code in (400, 403), (path, reply.status_code, reply.text[-300:])
        assert reply.headers["content-type"].startswith("text/html"), (path, reply.text[-300:])
        assert "bad-json" not in reply.text and "Traceback" not in reply.text
        assert "frame-ancestors 'none'" in reply.headers.get("content-security-policy", "")


def test_a_refused_evidence_upload_leaves_no_file_behind(portal: Portal, home: Home) -> None:
    """The document was written under <home>/portal/evidence before the service refused it (an
    application already decided), so an ARO could fill the disk 10 MB a post with refused uploads."""
    from smki.services import applications as apps_service

    with home.store.transaction() as tx:
        tx.registry.set_subscription(PARTY, "organisation", "none")
        tx.append_audit([AuditEvent("admin", "test.setup", PARTY)])
    mine = token(portal.aro, "/portal/aro")

    def apply() -> None:
        reply = portal.aro.post("/portal/aro/apply", data={"csrf": mine, "policy": "organisation"},
                                follow_redirects=False)
        assert reply.status_code == 303, reply.text[-400:]

    apply()
    application = home.store.registry.applications(party_id=PARTY)[-1].application_id
    apps_service.propose(home, application, staff_id=OPERATOR)
    apps_service.refuse(home, application, "no need shown", staff_id=APPROVER)
    for n in range(3):
        reply = portal.aro.post(f"/portal/aro/applications/{application}/evidence", data={"csrf": mine},
                                files={"document": (f"doc{n}.pdf", b"%PDF-1.4 " + bytes([n]) * 999, "application/pdf")})
        refused(reply, 400, "ra.application-status")
    assert not [p for p in (home.settings.home / "portal").rglob("*") if p.is_file()]
    # an accepted one is kept, under its digest and safe name
    apply()
    open_one = home.store.registry.applications(party_id=PARTY)[-1].application_id
    reply = portal.aro.post(f"/portal/aro/applications/{open_one}/evidence", data={"csrf": mine},
                            files={"document": ("../../plan.pdf", b"%PDF-1.4 plan", "application/pdf")},
                            follow_redirects=False)
    assert reply.status_code == 303, reply.text[-400:]
    kept = [p for p in (home.settings.home / "portal").rglob("*") if p.is_file()]
    assert len(kept) == 1 and kept[0].parent.parent == home.settings.home / "portal" / "evidence"
    assert kept[0].name.endswith("plan.pdf") and kept[0].read_bytes() == b"%PDF-1.4 plan"


# --- what stands in for sessions: the client certificate, checked on every request -------------


def test_suspension_and_revocation_end_access_on_the_open_connection(portal: Portal, home: Home) -> None:
    """No session to fixate, steal or forget to end: a suspended ARO or a revoked credential is
    refused on its very next request, even down the keep-alive connection it already has open."""
    from smki.services.credentials import list_credentials, revoke_credential

    assert portal.aro.get("/portal/aro").status_code == 200
    suspend = token(portal.approver, "/portal/staff/parties")
    assert portal.approver.post(f"/portal/staff/aros/{ARO}/suspend", data={"csrf": suspend},
                                follow_redirects=False).status_code == 303
    refused(portal.aro.get("/portal/aro"), 403, "credential.aro-suspended")
    assert portal.approver.get("/portal/staff").status_code == 200
    serial = next(c.serial for c in list_credentials(home, "staff") if c.name == APPROVER)
    revoke_credential(home, serial, actor="operator:test")
    reply = portal.approver.get("/portal/staff")
    assert reply.status_code in (401, 403) and "credential.revoked" in reply.text


def test_suspension_holds_in_every_worker_process(home: Home, tmp_path: Path) -> None:
    """With ``--workers 2`` each fresh connection may reach either process: none lets the ARO in."""
    from tests.api.serve_process import ServeProcess, write_api_config
    from tests.portal.conftest import PASSPHRASE

    register(home)
    aro = credential(home, tmp_path, "aro", ARO)
    write_api_config(home.settings.home)
    server = ServeProcess(home.settings.home, PASSPHRASE, "--workers", "2", "--batch-workers", "0")
    try:
        def status() -> set[int]:
            seen = set()
            for _ in range(8):
                with httpx.Client(base_url=server.url(Route.GATEWAY), verify=aro.context(), timeout=30) as client:
                    seen.add(client.get("/portal/aro").status_code)
            return seen

        assert status() == {200}
        reg.set_aro_status(home, ARO, "suspended", staff_id=APPROVER, reason="test")
        assert status() == {403}
    finally:
        server.stop()


def test_a_form_token_expires(portal: Portal, home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    """A token was HMAC(key, identity) alone, the same for every page for as long as the key was not
    rotated by hand: one that leaked (a proxy log, a saved page) forged that user's forms for ever."""
    from smki.interfaces.portal import web

    start = web.now_seconds()
    monkeypatch.setattr(web, "now_seconds", lambda: start)
    first = token(portal.aro, "/portal/aro")
    monkeypatch.setattr(web, "now_seconds", lambda: start + 60)
    assert token(portal.aro, "/portal/aro") != first  # each page's own

    def post(form_token: str) -> httpx.Response:
        return portal.aro.post("/portal/aro/apply", data={"csrf": form_token, "policy": "no-such-policy"})

    monkeypatch.setattr(web, "now_seconds", lambda: start + web.FORM_TOKEN_SECONDS)
    refused(post(first), 400, "portal.bad-policy")  # still good at the end of its life
    monkeypatch.setattr(web, "now_seconds", lambda: start + web.FORM_TOKEN_SECONDS + 1)
    refused(post(first), 403, "portal.form-expired")
    # nor can its date be moved on: the time is part of what the HMAC covers
    later = f"{start + web.FORM_TOKEN_SECONDS:08x}" + first[8:]
    refused(post(later), 403, "portal.form-expired")
    refused(post(first[8:]), 403, "portal.form-expired")  # the old, undated form


def test_a_party_without_srept_reads_no_device_certificate_by_its_serial(portal: Portal, home: Home,
                                                                         tmp_path: Path) -> None:
    """Rule repository.srept-passed: a Party reads the Repository only once it has passed SREPT, on
    every route. The Portal's Device ID search asked it, but a Device Certificate's page and
    downloads by serial did not, so such a Party's ARO read any Device's certificate that way."""
    from smki.services.requests import request_device

    device = request_device(home, Requester(PARTY, ARO, Route.GATEWAY),
                            make_device_csr(bytes.fromhex("00db000000002001"), Usage.DS))
    assert device.serial is not None
    with home.store.transaction() as tx:
        tx.registry.add_party("NEW3", "New Three Ltd", "large-supplier")
        tx.append_audit([AuditEvent("admin", "test.setup", "NEW3")])
    reg.nominate_aro(home, "aro3", "NEW3", "Nina New", "SRO", staff_id=OPERATOR)
    reg.verify_aro(home, "aro3", "passport", staff_id=OPERATOR)
    reg.screen_aro(home, "aro3", date(2021, 3, 1), "BS 7858:2019", staff_id=OPERATOR)
    newcomer = portal.live.client(credential(home, tmp_path / "new3", "aro", "aro3"))
    for path in (f"/portal/aro/certificates/{device.serial}", f"/portal/aro/certificates/{device.serial}.pem",
                 f"/portal/aro/certificates/{device.serial}.der",
                 "/portal/aro/certificates?device=00db000000002001"):
        reply = newcomer.get(path)
        assert reply.status_code == 403, (path, reply.status_code)
        assert 'data-rule="repository.srept-passed"' in reply.text and "BEGIN CERTIFICATE" not in reply.text
    # a Party that has passed SREPT reads it, as before
    assert portal.other_aro.get(f"/portal/aro/certificates/{device.serial}.pem").status_code == 200
