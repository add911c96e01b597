"""The JSON API over real TLS: Organisation and Device CSRs on both routes, search, downloads, errors."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.ca.devcsr import make_device_csr, make_organisation_csr
from smki.domain import CertKind, RemotePartyRole, Route, Usage
from smki.services.context import Home
from smki.services.revocation import CRL, publish
from tests.api.conftest import ENTITY, OTHER_ENTITY, PARTY, ClientFiles, LiveListeners

DEVICE = bytes.fromhex("00db123456789001")


def _pem_csr(der: bytes) -> str:
    return x509.load_der_x509_csr(der).public_bytes(Encoding.PEM).decode()


def _verify_with_openssl(home: Home, pem: str, kind: CertKind, tmp_path: Path) -> None:
    root = home.ca_certificate(CertKind.ROOT).public_bytes(Encoding.PEM)
    issuer = home.ca_certificate(kind).public_bytes(Encoding.PEM)
    (tmp_path / "root.pem").write_bytes(root)
    (tmp_path / "issuer.pem").write_bytes(issuer)
    (tmp_path / "leaf.pem").write_text(pem)
    done = subprocess.run(["openssl", "verify", "-partial_chain", "-CAfile", str(tmp_path / "root.pem"),
                           "-untrusted", str(tmp_path / "issuer.pem"), str(tmp_path / "leaf.pem")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_spoti_and_gateway_issue_organisation_certificates(live: LiveListeners, home: Home, aro: ClientFiles,
                                                           tmp_path: Path) -> None:
    for route in (Route.SPOTI, Route.GATEWAY):
        csr = make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS)
        # base64 DER on one route, PEM on the other: both are accepted.
        text = base64.b64encode(csr).decode() if route is Route.SPOTI else _pem_csr(csr)
        response = live.client(aro, route).post("/api/v1/organisation-certificates", json={"csr": text})
        assert response.status_code == 201, response.text
        body = response.json()
        cert = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
        assert f"{cert.serial_number:032x}" == body["serial"]
        assert body["entity_id"] == ENTITY.hex() and body["role"] == 2 and body["kind"] == "org"
        _verify_with_openssl(home, body["certificate_pem"], CertKind.ORGANISATION_CA, tmp_path)
        audit = home.store.audit_rows_for(body["serial"], "certificate.issued")[0].details_dict
        assert audit["route"] == route.value and audit["party"] == PARTY


def test_another_partys_entity_is_refused_with_the_rule(live: LiveListeners, aro: ClientFiles) -> None:
    csr = make_organisation_csr(OTHER_ENTITY, RemotePartyRole.SUPPLIER, Usage.KA)
    response = live.client(aro, Route.SPOTI).post("/api/v1/organisation-certificates", json={"csr": _pem_csr(csr)})
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "ra.refused"
    assert "org.entity-belongs-to-party" in [r["id"] for r in error["rules"]]
    assert error["rules"][0]["reference"] and error["rules"][0]["reason"]


def test_the_same_device_subscriber_gets_certificates_on_the_gateway_and_403_on_spoti(
        live: LiveListeners, home: Home, aro: ClientFiles, tmp_path: Path) -> None:
    csr = _pem_csr(make_device_csr(DEVICE, Usage.DS))
    gateway = live.client(aro, Route.GATEWAY).post("/api/v1/device-certificates", json={"csr": csr})
    assert gateway.status_code == 201, gateway.text
    body = gateway.json()
    assert body["device_id"] == DEVICE.hex() and body["usage"] == "DS" and body["status"] == "I"
    _verify_with_openssl(home, body["certificate_pem"], CertKind.DEVICE_CA, tmp_path)

    before = home.store.audit_head()[0]
    spoti = live.client(aro, Route.SPOTI).post("/api/v1/device-certificates", json={"csr": csr})
    assert spoti.status_code == 403
    error = spoti.json()["error"]
    assert error["code"] == "ra.refused"
    ids = [r["id"] for r in error["rules"]]
    assert "channel.device-via-gateway" in ids
    rule = next(r for r in error["rules"] if r["id"] == "channel.device-via-gateway")
    assert "MP074" in rule["reference"] and "Gateway" in rule["reference"]
    refused = [r for r in home.store.audit_rows(before + 1) if r.action == "request.refused"]
    assert refused and "channel.device-via-gateway" in refused[0].details_dict["rules"]
    assert refused[0].details_dict["route"] == "spoti"
    # and the SPOTI batch endpoint refuses the same way, before anything is stored
    batch = live.client(aro, Route.SPOTI).post("/api/v1/device-batches", json={"csrs": [{"id": "a", "csr": csr}]})
    assert batch.status_code == 403
    assert "channel.device-via-gateway" in [r["id"] for r in batch.json()["error"]["rules"]]


def test_a_json_batch_runs_in_the_background_with_progress_and_results(live: LiveListeners, home: Home,
                                                                        aro: ClientFiles) -> None:
    client = live.client(aro)
    csrs = [{"id": f"c{i}", "csr": base64.b64encode(make_device_csr(bytes([0, 0xDB, 0, 0, 0, 0, 1, i]),
                                                                       Usage.KA)).decode()} for i in range(6)]
    csrs.append({"id": "bad", "csr": "bm90IGEgQ1NS"})
    response = client.post("/api/v1/device-batches", json={"reference": "my-batch", "csrs": csrs})
    assert response.status_code == 202, response.text
    batch_id = response.json()["batch_id"]
    assert response.headers["location"] == f"/api/v1/device-batches/{batch_id}"
    deadline = time.monotonic() + 30
    while (status := client.get(f"/api/v1/device-batches/{batch_id}").json())["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status["total"] == 7 and status["issued"] == 6 and status["rejected"] == 1 and status["percent"] == 100
    page = client.get(f"/api/v1/device-batches/{batch_id}/results", params={"limit": 4}).json()
    assert [r["id"] for r in page["results"]] == ["c0", "c1", "c2", "c3"] and page["next_after"] == 3
    rest = client.get(f"/api/v1/device-batches/{batch_id}/results", params={"after": 3}).json()
    assert rest["next_after"] is None
    bad = rest["results"][-1]
    assert bad["status"] == "refused" and bad["error"]["code"] == "csr.malformed"
    for result in page["results"] + rest["results"][:-1]:
        cert = x509.load_pem_x509_certificate(result["certificate_pem"].encode())
        assert f"{cert.serial_number:032x}" == result["serial"]
    # another Party cannot see it
    assert home.store.certificate_by_serial(page["results"][0]["serial"]) is not None


def test_search_and_download(live: LiveListeners, home: Home, aro: ClientFiles, tmp_path: Path) -> None:
    client = live.client(aro)
    issued = client.post("/api/v1/device-certificates",
                         json={"csr": _pem_csr(make_device_csr(DEVICE, Usage.KA))}).json()
    serial = issued["serial"]
    found = client.get("/api/v1/certificates", params={"device_id": "00-DB-12-34-56-78-90-01"}).json()
    assert [c["serial"] for c in found["certificates"]] == [serial]
    assert client.get("/api/v1/certificates", params={"serial": serial.upper(), "usage": "KA"}).json()[
        "certificates"][0]["serial"] == serial
    assert client.get("/api/v1/certificates", params={"serial": serial, "usage": "DS"}).json()["certificates"] == []
    cas = client.get("/api/v1/certificates", params={"kind": "device-ca", "status": "I"}).json()["certificates"]
    assert len(cas) == 1
    der = client.get(f"/api/v1/certificates/{serial}/download", params={"format": "der"})
    assert der.headers["content-type"] == "application/pkix-cert"
    pem = client.get(f"/api/v1/certificates/{serial}/download")
    assert x509.load_pem_x509_certificate(pem.content).public_bytes(Encoding.DER) == der.content
    assert client.get("/api/v1/certificates/00ff").status_code == 404
    bad = client.get("/api/v1/certificates", params={"device_id": "nope"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "eui64.invalid"


def test_crl_and_arl_download_latest_and_by_number(live: LiveListeners, home: Home, aro: ClientFiles,
                                                   tmp_path: Path) -> None:
    client = live.client(aro, Route.SPOTI)
    # right after the key ceremony: its empty CRL (Organisation CA) and ARL (Root), number 1 each
    for kind, issuer_kind in (("crl", CertKind.ORGANISATION_CA), ("arl", CertKind.ROOT)):
        served = client.get(f"/api/v1/{kind}")
        assert served.status_code == 200 and served.headers["content-type"] == "application/pkix-crl"
        assert client.get(f"/api/v1/{kind}/1").content == served.content
        issued = x509.load_der_x509_crl(served.content)
        issuer = home.ca_certificate(issuer_kind)
        assert issued.issuer == issuer.subject and issued.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        assert issued.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
        assert issued.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == (
            issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
        assert len(issued) == 0
    publish(home, CRL, actor="t")
    publish(home, CRL, actor="t")
    latest = client.get("/api/v1/crl")
    assert latest.status_code == 200 and latest.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(latest.content)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    first = client.get("/api/v1/crl/1", params={"format": "pem"})
    assert x509.load_pem_x509_crl(first.content).extensions.get_extension_for_class(
        x509.CRLNumber).value.crl_number == 1
    path = tmp_path / "crl.pem"
    path.write_bytes(first.content)
    done = subprocess.run(["openssl", "crl", "-in", str(path), "-noout", "-crlnumber"], capture_output=True, text=True)
    assert done.returncode == 0 and "crlNumber=0x01" in done.stdout
    assert client.get("/api/v1/arl/7").status_code == 404


def test_errors_have_one_shape_and_the_right_status(live: LiveListeners, aro: ClientFiles) -> None:
    client = live.client(aro)
    cases = [
        (client.post("/api/v1/organisation-certificates", content=b"{not json",
                     headers={"content-type": "application/json"}), 400, "request.bad-json"),
        (client.post("/api/v1/organisation-certificates", json={"csr": ""}), 422, "request.invalid"),
        (client.post("/api/v1/organisation-certificates", json={"csr": "x", "extra": 1}), 422, "request.invalid"),
        (client.post("/api/v1/organisation-certificates", json={"csr": "AAAA"}), 422, "csr.malformed"),
        (client.post("/api/v1/organisation-certificates", json={"csr": "a" * 300_000}), 413, "request.too-large"),
        (client.get("/api/v1/nothing-here"), 404, "http.not-found"),
        (client.get("/api/v1/device-batches/999"), 404, "batch.not-found"),
        # ids and references the batch's XML result (and Portal pages) could not carry back: once
        # stored, its CSRBatchResult was a 200 cut off after its headers, for good
        *((client.post("/api/v1/device-batches", json={"csrs": [{"id": bad, "csr": "x"}]}), 422, "request.invalid")
          for bad in ("a\u0001b", "\u0000", "ok\u001f", "x\ufffe", "x\uffff", "zero\u200bwidth")),
        (client.post("/api/v1/device-batches", json={"reference": "\u0001../x\u0000",
                                                     "csrs": [{"id": "a", "csr": "x"}]}), 422, "request.invalid"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, (code, response.text)
        assert set(response.json()) == {"error"}
        assert response.json()["error"]["code"] == code
        assert set(response.json()["error"]) == {"code", "message", "rules", "request_id"}
        assert response.json()["error"]["request_id"] == response.headers["x-request-id"]


def test_a_chunked_body_over_the_limit_is_refused(live: LiveListeners, aro: ClientFiles) -> None:
    def chunks() -> object:
        for _ in range(100):
            yield b"x" * 8192

    response = live.client(aro).post("/api/v1/organisation-certificates", content=chunks(),  # type: ignore[arg-type]
                                     headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request.too-large"


def test_the_same_device_csr_posted_three_times_gets_one_certificate(live: LiveListeners, home: Home,
                                                                     aro: ClientFiles) -> None:
    """Issue 13: it used to give three certificates; now the second and third are csr.duplicate."""
    csr = _pem_csr(make_device_csr(bytes.fromhex("00db0000000d0001"), Usage.DS))
    client = live.client(aro, Route.GATEWAY)
    answers = [client.post("/api/v1/device-certificates", json={"csr": csr}) for _ in range(3)]
    assert answers[0].status_code == 201, answers[0].text
    for again in answers[1:]:
        assert again.status_code >= 400 and again.json()["error"]["code"] == "csr.duplicate"
    assert len(home.store.certificates_for_device(bytes.fromhex("00db0000000d0001"))) == 1


def test_head_is_answered_wherever_get_is(live: LiveListeners, aro: ClientFiles) -> None:
    """RFC 9110 §9.3.2: HEAD was 405 ``http.method-not-allowed`` (found by an exploratory run)."""
    client = live.client(aro)
    for path in ("/api/v1/whoami", "/api/v1/crl"):
        got, head = client.get(path), client.head(path)
        assert got.status_code == head.status_code == 200, (path, head.status_code)
        assert head.content == b"" and head.headers["content-length"] == str(len(got.content))
        assert head.headers["content-type"] == got.headers["content-type"]
    assert client.head("/api/v1/device-batches/999").status_code == 404  # the GET's own refusal
    refused = client.head("/api/v1/organisation-certificates")  # no GET there: no HEAD either
    assert refused.status_code == 405 and refused.content == b""


def test_json_sent_as_another_content_type_is_told_so(live: LiveListeners, aro: ClientFiles) -> None:
    """It was a bare 422 "request: Input should be a valid dictionary" (found by an exploratory run)."""
    client = live.client(aro)
    sent = client.post("/api/v1/device-batches", content=b'{"csrs": [{"id": "a", "csr": "x"}]}',
                       headers={"content-type": "text/plain"})
    assert sent.status_code == 422 and sent.json()["error"]["code"] == "request.invalid"
    assert sent.json()["error"]["message"].startswith(
        "the body must be JSON, sent as Content-Type: application/json (not text/plain); ")
