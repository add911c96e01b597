"""The DCC-compatible XML services over real TLS, message by message (spec §3.1, §3.2)."""

from __future__ import annotations

import base64
import subprocess
import time
from datetime import date
from pathlib import Path

import httpx
from cryptography import x509

from smki.ca.devcsr import make_device_csr
from smki.domain import CertKind, Route, Usage
from smki.interfaces.dcc import codec as dx
from smki.services.batch_sources import BatchItem
from smki.services.context import Home
from smki.services.device_issuance import issue_device_batch
from smki.services.requests import Requester, request_device
from tests.api.conftest import ARO, OTHER_PARTY, PARTY, ClientFiles, LiveListeners, start_listeners
from tests.api.test_dcc_xml_support import require_xsd

ADHOC = "/1.0/DeviceCSR"
SUBMIT = "/1.0/PortalCSRBatch/SubmitCSRBatch"
RESULT = "/1.0/PortalCSRBatch/CSRBatchResult"
XML = {"content-type": "application/xml"}
KNOWN = bytes.fromhex("00db1234567890a1")


def _adhoc(client: httpx.Client, csr_der: bytes, rid: str = "REQ-1") -> dx.DeviceCertificateSigningResponse:
    body = dx.render_device_csr_request(dx.DeviceCertificateSigningRequest(rid, csr_der))
    response = client.post(ADHOC, content=body, headers=XML)
    assert response.status_code == 200 and response.headers["content-type"] == "application/xml"
    assert require_xsd().errors_for("device-csr-adhoc.xsd", response.content) == []
    return dx.parse_device_csr_response(response.content)


def _known(home: Home, device: bytes = KNOWN) -> None:
    """A first certificate for ``device`` (the Ad Hoc service replaces certificates; it does not start them)."""
    request_device(home, Requester(PARTY, ARO, Route.GATEWAY), make_device_csr(device, Usage.DS))


def _openssl_verify(home: Home, der: bytes, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    (tmp_path / "root.pem").write_bytes(home.ca_certificate(CertKind.ROOT).public_bytes(Encoding.PEM))
    (tmp_path / "ca.pem").write_bytes(home.ca_certificate(CertKind.DEVICE_CA).public_bytes(Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM))
    done = subprocess.run(["openssl", "verify", "-partial_chain", "-CAfile", str(tmp_path / "root.pem"), "-untrusted",
                           str(tmp_path / "ca.pem"), str(tmp_path / "leaf.pem")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------------------------------------
# Ad Hoc


def test_adhoc_success_for_a_known_device(live: LiveListeners, home: Home, aro: ClientFiles, tmp_path: Path) -> None:
    _known(home)
    answer = _adhoc(live.client(aro), make_device_csr(KNOWN, Usage.KA), "replace-ka")
    assert answer.status is dx.AdHocStatus.SUCCESS and answer.id == "replace-ka" and answer.transaction_id > 0
    assert answer.certificate_der is not None
    _openssl_verify(home, answer.certificate_der, tmp_path)
    assert len(home.store.certificates_for_device(KNOWN)) == 2


def test_adhoc_unknown_device(live: LiveListeners, home: Home, aro: ClientFiles) -> None:
    answer = _adhoc(live.client(aro), make_device_csr(bytes.fromhex("00db0000000000ff"), Usage.DS))
    assert answer.status is dx.AdHocStatus.UNKNOWN_DEVICE
    assert answer.error is not None and answer.error.code == "UD:AA1"
    assert home.store.certificates_for_device(bytes.fromhex("00db0000000000ff")) == []


def test_adhoc_format_csr_and_route_errors(live: LiveListeners, home: Home, aro: ClientFiles) -> None:
    client = live.client(aro)
    not_xml = client.post(ADHOC, content=b"<nope", headers=XML)
    parsed = dx.parse_device_csr_response(not_xml.content)
    assert not_xml.status_code == 200 and parsed.status is dx.AdHocStatus.FORMAT_ERROR and parsed.id is None
    assert parsed.error is not None and parsed.error.code == "FM:AA1"
    bad_b64 = (b'<DeviceCertificateSigningRequest ID="R9"><Version>1.0</Version>'
               b"<CertificateSigningRequest>-----BEGIN</CertificateSigningRequest></DeviceCertificateSigningRequest>")
    parsed = dx.parse_device_csr_response(client.post(ADHOC, content=bad_b64, headers=XML).content)
    assert parsed.status is dx.AdHocStatus.FORMAT_ERROR and parsed.id == "R9"
    garbage = _adhoc(client, b"\x30\x03\x02\x01\x01", "R10")
    assert garbage.status is dx.AdHocStatus.CSR_ERROR and garbage.error is not None
    assert garbage.error.code.startswith("CR:")
    _known(home)
    spoti = _adhoc(live.client(aro, Route.SPOTI), make_device_csr(KNOWN, Usage.DS), "R11")
    assert spoti.status is dx.AdHocStatus.WORKFLOW_ERROR and spoti.error is not None
    assert spoti.error.code == "WF:RA1" and "channel.device-via-gateway" in spoti.error.text


def test_adhoc_is_for_import_and_gas_suppliers_and_the_dcc(live: LiveListeners, home: Home,
                                                           other_aro: ClientFiles) -> None:
    from smki.audit import AuditEvent

    with home.store.transaction() as tx:
        tx.registry.end_period(OTHER_PARTY, "registered-role", "import-supplier", on=date.today(), by="admin")
        tx.registry.start_period(OTHER_PARTY, "registered-role", "other-user", on=date.today(), by="admin")
        tx.append_audit([AuditEvent("admin", "test.setup", OTHER_PARTY)])
    answer = _adhoc(live.client(other_aro), make_device_csr(KNOWN, Usage.DS))
    assert answer.status is dx.AdHocStatus.WORKFLOW_ERROR and answer.error is not None
    assert answer.error.code == "WF:AA1" and "workflow.role-not-permitted" in answer.error.text


def test_the_101st_certificate_for_one_device_is_refused(live: LiveListeners, home: Home, aro: ClientFiles) -> None:
    device = bytes.fromhex("00db000000000100")
    items = [BatchItem(i, f"i{i}", make_device_csr(device, Usage.DS if i % 2 else Usage.KA)) for i in range(100)]
    summary = issue_device_batch(home, items, actor="test", batch_ref="fill-100", workers=0)
    assert summary.issued == 100 and home.store.count_device_certificates(device) == 100
    answer = _adhoc(live.client(aro), make_device_csr(device, Usage.DS))
    assert answer.status is dx.AdHocStatus.CSR_ERROR and answer.error is not None and answer.error.code == "CR:CL1"
    # and in a batch, per CSR, alongside a good one
    other = bytes.fromhex("00db000000000101")
    batch = dx.SubmitCSRBatch("lim", (dx.DeviceCSR("over", make_device_csr(device, Usage.KA)),
                                      dx.DeviceCSR("fine", make_device_csr(other, Usage.KA))))
    result = _run_batch(live.client(aro), batch)
    statuses = {c.id: (c.status, c.error.code if c.error else None) for c in result.certificates}
    assert statuses == {"over": (dx.DeviceStatus.CSR_ERROR, "CR:CL1"), "fine": (dx.DeviceStatus.SUCCESS, None)}
    assert home.store.count_device_certificates(device) == 100


# ---------------------------------------------------------------------------------------------
# Batches


def _submit(client: httpx.Client, batch: dx.SubmitCSRBatch | bytes) -> dx.SubmitCSRBatchStatus:
    body = batch if isinstance(batch, bytes) else dx.render_submit_csr_batch(batch)
    response = client.post(SUBMIT, content=body, headers=XML)
    assert response.status_code == 200, response.text
    assert require_xsd().errors_for("device-csr-batch.xsd", response.content) == []
    return dx.parse_submit_csr_batch_status(response.content)


def _result(client: httpx.Client, batch_id: object) -> dx.CSRBatchResult:
    response = client.get(RESULT, params={"BatchId": str(batch_id)})
    assert response.status_code == 200 and response.headers["content-type"] == "application/xml"
    assert require_xsd().errors_for("device-csr-batch.xsd", response.content) == []
    return dx.parse_csr_batch_result(response.content)


def _run_batch(client: httpx.Client, batch: dx.SubmitCSRBatch, timeout: float = 60) -> dx.CSRBatchResult:
    status = _submit(client, batch)
    assert status.status is dx.SubmitStatus.PENDING and status.batch_id is not None
    deadline = time.monotonic() + timeout
    seen = set()
    while (result := _result(client, status.batch_id)).status is not dx.BatchStatus.COMPLETED:
        seen.add(result.status)
        # auto-approved batches pass through QUEUED on their way to the runner (issue 13's lifecycle)
        assert result.status in (dx.BatchStatus.PENDING, dx.BatchStatus.QUEUED, dx.BatchStatus.PROCESSING)
        assert time.monotonic() < deadline, "batch did not complete"
        time.sleep(0.05)
    return result


def test_a_batch_is_accepted_processed_and_reported_per_csr(live: LiveListeners, home: Home, aro: ClientFiles,
                                                            tmp_path: Path) -> None:
    csrs = [dx.DeviceCSR(f"ID{i}", make_device_csr(bytes([0, 0xDB, 0, 0, 0, 0, 2, i]), Usage.DS)) for i in range(5)]
    csrs.append(dx.DeviceCSR("broken", b"\x30\x00"))
    result = _run_batch(live.client(aro), dx.SubmitCSRBatch("b-2024-06-01", tuple(csrs)))
    assert [c.id for c in result.certificates] == [f"ID{i}" for i in range(5)] + ["broken"]
    for entry in result.certificates[:5]:
        assert entry.status is dx.DeviceStatus.SUCCESS and entry.certificate_der is not None
        _openssl_verify(home, entry.certificate_der, tmp_path)
    broken = result.certificates[5]
    assert broken.status is dx.DeviceStatus.CSR_ERROR and broken.error is not None and broken.error.code == "CR:CC3"
    audit = [r.action for r in home.store.audit_rows() if r.subject.startswith("xml-")]
    assert audit[0] == "batch.accepted" and "device-certificates.issued" in audit and audit[-1] == "batch.completed"


def test_batch_format_errors_and_other_partys_batches(live: LiveListeners, aro: ClientFiles,
                                                      other_aro: ClientFiles) -> None:
    client = live.client(aro)
    invalid = _submit(client, b"<SubmitCSRBatch ID='x'><Version>1.0</Version></Oops>")
    assert invalid.status is dx.SubmitStatus.FORMAT_ERROR and invalid.error is not None
    assert invalid.error.code == "FM:AA1"
    mine = _run_batch(client, dx.SubmitCSRBatch("one", (dx.DeviceCSR("a", make_device_csr(KNOWN, Usage.DS)),)))
    assert mine.status is dx.BatchStatus.COMPLETED
    submitted = _submit(client, dx.SubmitCSRBatch("two", (dx.DeviceCSR("a", make_device_csr(KNOWN, Usage.KA)),)))
    theirs = _result(live.client(other_aro), submitted.batch_id)
    assert theirs.status is dx.BatchStatus.FORMAT_ERROR and theirs.error is not None
    assert theirs.error.code == "FM:AA3"
    for bad in ("999999", "abc", "0", ""):
        unknown = _result(client, bad)
        assert unknown.error is not None and unknown.error.code == "FM:AA3"
    assert client.get(RESULT).status_code == 200  # no BatchId at all: FM:AA3 as well
    spoti = _submit(live.client(aro, Route.SPOTI), dx.SubmitCSRBatch("s", (dx.DeviceCSR("a", b"\x30\x00"),)))
    assert spoti.status is dx.SubmitStatus.WORKFLOW_ERROR and spoti.error is not None
    assert spoti.error.code == "WF:RA1" and "channel.device-via-gateway" in spoti.error.text


def test_50001_csrs_is_fm_aa2(live: LiveListeners, home: Home, aro: ClientFiles) -> None:
    one = base64.b64encode(make_device_csr(KNOWN, Usage.DS))
    body = b"".join([b'<?xml version="1.0" encoding="UTF-8"?><SubmitCSRBatch ID="big"><Version>1.0</Version>',
                     *(b'<DeviceCSR ID="%d">%s</DeviceCSR>' % (i, one) for i in range(50_001)),
                     b"</SubmitCSRBatch>"])
    answer = _submit(live.client(aro), body)
    assert answer.status is dx.SubmitStatus.FORMAT_ERROR and answer.error is not None
    assert answer.error.code == "FM:AA2" and answer.error.text == "Number of submitted CSRs exceeds maximum volume"
    assert [r for r in home.store.audit_rows() if r.action == "batch.accepted"] == []


# ---------------------------------------------------------------------------------------------
# Repository


def test_repository_search_and_retrieve(live: LiveListeners, home: Home, aro: ClientFiles) -> None:
    _known(home)
    client = live.client(aro, Route.GATEWAY)  # Device Certificates: never over SPOTI (tests/api/test_spoti_access.py)
    search = dx.render_certificate_search_request(dx.CertificateSearchRequest(dx.SearchBy.SUBJECT_ALT_NAME, KNOWN))
    response = client.post("/services/certificatesearch", content=search, headers=XML, params={"apikey": "any"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/xml"
    assert require_xsd().errors_for("repository.xsd", response.content) == []
    found = dx.parse_certificate_search_response(response.content)
    assert len(found.results) == 1 and found.results[0].status.value == "I" and found.results[0].usage.value == "DS"
    serial = found.results[0].serial
    data = dx.render_certificate_data_request(dx.CertificateDataRequest(serial))
    retrieved = client.post("/services/retrievecertificate", content=data, headers=XML)
    assert retrieved.status_code == 200
    assert require_xsd().errors_for("repository.xsd", retrieved.content) == []
    body = dx.parse_certificate_data_response(retrieved.content)
    assert x509.load_der_x509_certificate(body.der).serial_number == serial
    nothing = dx.render_certificate_search_request(
        dx.CertificateSearchRequest(dx.SearchBy.SUBJECT_NAME, bytes.fromhex("90b3d51f30099999")))
    assert client.post("/services/certificatesearch", content=nothing, headers=XML).status_code == 402
    assert client.post("/services/certificatesearch", content=b"<CertificateSearchRequest/>",
                       headers=XML).status_code == 401
    missing = dx.render_certificate_data_request(dx.CertificateDataRequest(0x1234))
    assert client.post("/services/retrievecertificate", content=missing, headers=XML).status_code == 402
    assert client.post("/services/retrievecertificate", content=b"<x/>", headers=XML).status_code == 401


def test_repository_apikey_when_configured(home: Home, aro: ClientFiles, api_settings: object) -> None:
    from dataclasses import replace

    from smki.interfaces.api.settings import ApiSettings

    assert isinstance(api_settings, ApiSettings)
    live = start_listeners(home, replace(api_settings, repository_apikey="s3cret"), runner=False)
    try:
        client = live.client(aro)
        search = dx.render_certificate_search_request(dx.CertificateSearchRequest(dx.SearchBy.SUBJECT_ALT_NAME, KNOWN))
        assert client.post("/services/certificatesearch", content=search, headers=XML).status_code == 403
        assert client.post("/services/certificatesearch", content=search, headers=XML,
                           params={"apikey": "s3cret"}).status_code == 402
    finally:
        live.stop()


def test_a_party_without_srept_may_not_read_the_repository(live: LiveListeners, home: Home,
                                                         other_aro: ClientFiles) -> None:
    """Spec §1: SREPT "must be passed before a Party may ... access the SMKI Repository" — rule
    ``repository.srept-passed`` on the XML Repository services and the JSON API's Repository reads
    (certificates, CRL, ARL), each refusal audited: the JSON API answers 403 naming the rule and its
    reference; the XML services 403 with an empty ``application/xml`` body, the shape of their other
    refusals of the caller (DCC clients cannot read smki's JSON); passed SREPT opens them."""
    from datetime import date, timedelta

    from smki.audit import AuditEvent

    _known(home)

    def srept(day: date | None) -> None:
        with home.store.transaction() as tx:
            tx.registry.update_party(OTHER_PARTY, srept_passed=day)
            tx.append_audit([AuditEvent("admin", "test.setup", OTHER_PARTY)])

    client = live.client(other_aro, Route.GATEWAY)
    search = dx.render_certificate_search_request(dx.CertificateSearchRequest(dx.SearchBy.SUBJECT_ALT_NAME, KNOWN))
    serial = home.store.certificates_for_device(KNOWN)[0].serial
    data = dx.render_certificate_data_request(dx.CertificateDataRequest(int(serial, 16)))

    def reads() -> list[httpx.Response]:
        return [client.post("/services/certificatesearch", content=search, headers=XML),
                client.post("/services/retrievecertificate", content=data, headers=XML),
                client.get("/api/v1/certificates", params={"device_id": KNOWN.hex()}),
                client.get(f"/api/v1/certificates/{serial}"), client.get(f"/api/v1/certificates/{serial}/download"),
                client.get("/api/v1/crl"), client.get("/api/v1/arl")]

    for day, why in ((None, "SREPT passed: not recorded"), (date.today() + timedelta(days=1), "after the decision")):
        srept(day)
        since = home.store.audit_head()[0]
        refused = reads()
        audited = [r.details_dict for r in home.store.audit_rows(since + 1) if r.action == "access.refused"]
        assert [(a["party"], a["rules"]) for a in audited] == [(OTHER_PARTY, ["repository.srept-passed"])] * 7
        for response in refused[:2]:  # the DCC XML services: their own shape
            assert response.status_code == 403, response.text
            assert response.headers["content-type"].startswith("application/xml") and response.content == b""
        for response in refused[2:]:  # the JSON API: its error object
            assert response.status_code == 403, response.text
            error = response.json()["error"]
            assert error["code"] == "ra.refused" and why in error["message"]
            assert [rule["id"] for rule in error["rules"]] == ["repository.srept-passed"]
            assert "access the SMKI Repository" in error["rules"][0]["reference"]
    srept(date(2019, 1, 10))
    assert [r.status_code for r in reads()] == [200] * 7  # the key ceremony published the CRL and ARL
