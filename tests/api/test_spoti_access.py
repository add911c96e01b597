"""MP074: "Parties using SPOTI can only access Organisation Certificates not Device Certificates".

Every route that hands out certificates, on both listeners over real TLS: SPOTI refuses (or leaves
out) Device Certificates and device batch results, naming ``channel.spoti-organisation-access``;
the Gateway serves them exactly as before; Organisation Certificates, the CRL and the ARL stay
readable on SPOTI.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.ca.devcsr import make_device_csr, make_organisation_csr
from smki.domain import RemotePartyRole, Route, Usage
from smki.interfaces.dcc import codec as dx
from smki.services.context import Home
from smki.services.revocation import CRL, publish
from tests.api.conftest import ENTITY, ClientFiles, LiveListeners

RULE = "channel.spoti-organisation-access"
XML = {"content-type": "application/xml"}
RESULT = "/1.0/PortalCSRBatch/CSRBatchResult"


def _pem(der: bytes) -> str:
    return x509.load_der_x509_csr(der).public_bytes(Encoding.PEM).decode()


def _device(client: httpx.Client, n: int) -> str:
    """A Device Certificate issued over ``client`` (the Gateway); its serial."""
    device = (0x00DB00000000A000 + n).to_bytes(8, "big")
    answer = client.post("/api/v1/device-certificates", json={"csr": _pem(make_device_csr(device, Usage.DS))})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["serial"])


def _organisation(client: httpx.Client) -> str:
    csr = _pem(make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS))
    answer = client.post("/api/v1/organisation-certificates", json={"csr": csr})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["serial"])


def _refused_by_the_rule(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "ra.refused" and set(error) == {"code", "message", "rules", "request_id"}
    assert [r["id"] for r in error["rules"]] == [RULE]
    assert "Parties using SPOTI can only access Organisation Certificates" in error["rules"][0]["reference"]


def _access_refusals(home: Home, since: int) -> list[dict[str, Any]]:
    return [r.details_dict for r in home.store.audit_rows(since + 1) if r.action == "access.refused"]


def _all_pages(client: httpx.Client, **params: object) -> list[list[dict[str, Any]]]:
    pages, after = [], 0
    while True:
        page = client.get("/api/v1/certificates", params={**params, "after": after, "limit": 2})
        assert page.status_code == 200, page.text
        pages.append(page.json()["certificates"])
        if page.json()["next_after"] is None:
            return pages
        after = page.json()["next_after"]


def test_json_device_certificate_reads_are_refused_on_spoti_and_served_on_the_gateway(
        live: LiveListeners, home: Home, aro: ClientFiles) -> None:
    gateway, spoti = live.client(aro, Route.GATEWAY), live.client(aro, Route.SPOTI)
    device, org = _device(gateway, 1), _organisation(spoti)
    before = home.store.audit_head()[0]
    for path in (f"/api/v1/certificates/{device}", f"/api/v1/certificates/{device}/download",
                 f"/api/v1/certificates/{device}/download?format=der"):
        _refused_by_the_rule(spoti.get(path))
        assert gateway.get(path).status_code == 200
    for params in ({"device_id": "00DB00000000A001"}, {"kind": "device"}, {"kind": "device", "serial": device},
                   {"device_id": "00DB00000000A001", "serial": device}):
        _refused_by_the_rule(spoti.get("/api/v1/certificates", params=params))
        assert [c["serial"] for c in gateway.get("/api/v1/certificates", params=params).json()[
            "certificates"]] == [device]
    # a search by serial that does not ask for Device Certificates finds none on SPOTI
    assert spoti.get("/api/v1/certificates", params={"serial": device}).json()["certificates"] == []
    assert [c["serial"] for c in gateway.get("/api/v1/certificates", params={"serial": device}).json()[
        "certificates"]] == [device]
    # Organisation Certificates (record, download, search), the CRL and the CA certificates stay on SPOTI
    assert spoti.get(f"/api/v1/certificates/{org}").json()["certificate_pem"].startswith("-----BEGIN CERTIFICATE")
    assert spoti.get(f"/api/v1/certificates/{org}/download", params={"format": "der"}).status_code == 200
    assert [c["serial"] for c in spoti.get("/api/v1/certificates", params={"serial": org}).json()[
        "certificates"]] == [org]
    assert len(spoti.get("/api/v1/certificates", params={"kind": "device-ca"}).json()["certificates"]) == 1
    publish(home, CRL, actor="t")
    assert spoti.get("/api/v1/crl").status_code == 200
    # every refusal is audited with the rule, the route and the decision; the Gateway reads are not
    refusals = _access_refusals(home, before)
    assert len(refusals) == 7
    assert all(r["route"] == "spoti" and r["rules"] == [RULE] and r["ruleset"] == r["decision"]["ruleset"]
               and r["decision"]["kind"] == "access" for r in refusals)


def test_json_search_on_spoti_leaves_device_certificates_out_and_pages_stay_full(
        live: LiveListeners, home: Home, aro: ClientFiles) -> None:
    gateway, spoti = live.client(aro, Route.GATEWAY), live.client(aro, Route.SPOTI)
    issued = []
    for n in range(9):  # Organisation and Device Certificates interleaved: runs of devices between pages
        issued.append(("org", _organisation(spoti)) if n % 3 == 0 else ("device", _device(gateway, 10 + n)))
    spoti_pages = _all_pages(spoti)
    gateway_pages = _all_pages(gateway)
    seen = [c for page in spoti_pages for c in page]
    assert all(c["kind"] != "device" for c in seen)
    assert [c["serial"] for c in seen if c["kind"] == "org"] == [s for kind, s in issued if kind == "org"]
    assert all(len(page) == 2 for page in spoti_pages[:-1])  # filtered in the query, not after the limit
    everything = [c for page in gateway_pages for c in page]
    assert [c["serial"] for c in everything if c["kind"] in ("org", "device")] == [s for _, s in issued]
    assert [c for c in everything if c["kind"] != "device"] == seen
    # with other criteria too (usage DS is every issued certificate here)
    ds = [c["serial"] for page in _all_pages(spoti, usage="DS") for c in page]
    assert ds == [s for kind, s in issued if kind == "org"]


def test_json_device_batch_status_and_results_only_on_the_gateway(live: LiveListeners, home: Home,
                                                                  aro: ClientFiles) -> None:
    gateway, spoti = live.client(aro, Route.GATEWAY), live.client(aro, Route.SPOTI)
    csrs = [{"id": "c1", "csr": _pem(make_device_csr(bytes.fromhex("00db00000000b001"), Usage.DS))}]
    batch_id = gateway.post("/api/v1/device-batches", json={"csrs": csrs}).json()["batch_id"]
    deadline = time.monotonic() + 30
    while gateway.get(f"/api/v1/device-batches/{batch_id}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    results = gateway.get(f"/api/v1/device-batches/{batch_id}/results").json()["results"]
    assert results[0]["status"] == "issued" and results[0]["certificate_pem"]
    for path in (f"/api/v1/device-batches/{batch_id}", f"/api/v1/device-batches/{batch_id}?wait=1",
                 f"/api/v1/device-batches/{batch_id}/results", "/api/v1/device-batches/999/results"):
        _refused_by_the_rule(spoti.get(path))


def _search(client: httpx.Client, by: dx.SearchBy, eui: bytes) -> httpx.Response:
    body = dx.render_certificate_search_request(dx.CertificateSearchRequest(by, eui))
    return client.post("/services/certificatesearch", content=body, headers=XML)


def _retrieve(client: httpx.Client, serial: str) -> httpx.Response:
    body = dx.render_certificate_data_request(dx.CertificateDataRequest(int(serial, 16)))
    return client.post("/services/retrievecertificate", content=body, headers=XML)


def test_xml_repository_on_spoti_holds_organisation_certificates_only(live: LiveListeners, home: Home,
                                                                       aro: ClientFiles) -> None:
    gateway, spoti = live.client(aro, Route.GATEWAY), live.client(aro, Route.SPOTI)
    device, org = _device(gateway, 1), _organisation(spoti)
    device_id = bytes.fromhex("00db00000000a001")
    before = home.store.audit_head()[0]
    # by Device ID: a search SPOTI does not offer (401), not "no result" (402)
    assert _search(spoti, dx.SearchBy.SUBJECT_ALT_NAME, device_id).status_code == 401
    found = dx.parse_certificate_search_response(_search(gateway, dx.SearchBy.SUBJECT_ALT_NAME, device_id).content)
    assert [f"{r.serial:032x}" for r in found.results] == [device]
    # a Device Certificate's serial: as if not in SPOTI's Repository (402); the Gateway returns it
    assert _retrieve(spoti, device).status_code == 402
    assert x509.load_der_x509_certificate(dx.parse_certificate_data_response(
        _retrieve(gateway, device).content).der).serial_number == int(device, 16)
    # by Entity Identifier, and an Organisation Certificate's serial: served on SPOTI
    by_entity = dx.parse_certificate_search_response(_search(spoti, dx.SearchBy.SUBJECT_NAME, ENTITY).content)
    assert [f"{r.serial:032x}" for r in by_entity.results] == [org] and not by_entity.results[0].device
    assert _retrieve(spoti, org).status_code == 200
    assert [r["rules"] for r in _access_refusals(home, before)] == [[RULE], [RULE]]


def test_xml_csr_batch_result_on_spoti_is_a_workflow_error_naming_the_rule(live: LiveListeners, home: Home,
                                                                           aro: ClientFiles) -> None:
    gateway, spoti = live.client(aro, Route.GATEWAY), live.client(aro, Route.SPOTI)
    batch = dx.SubmitCSRBatch("b1", (dx.DeviceCSR("1", make_device_csr(bytes.fromhex("00db00000000c001"),
                                                                          Usage.DS)),))
    status = dx.parse_submit_csr_batch_status(gateway.post("/1.0/PortalCSRBatch/SubmitCSRBatch",
                                                           content=dx.render_submit_csr_batch(batch),
                                                           headers=XML).content)
    assert status.batch_id is not None
    deadline = time.monotonic() + 30
    while (done := dx.parse_csr_batch_result(gateway.get(RESULT, params={"BatchId": status.batch_id}).content)
           ).status is not dx.BatchStatus.COMPLETED:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert done.certificates[0].status is dx.DeviceStatus.SUCCESS
    for batch_id in (str(status.batch_id), "999", "not-a-number"):
        response = spoti.get(RESULT, params={"BatchId": batch_id})
        assert response.status_code == 200 and response.headers["content-type"] == "application/xml"
        refused = dx.parse_csr_batch_result(response.content)
        assert refused.status is dx.BatchStatus.WORKFLOW_ERROR and not refused.certificates
        assert refused.error is not None and refused.error.code == "WF:RA1" and RULE in refused.error.text


def test_a_refused_read_is_not_counted_as_a_refused_csr(live: LiveListeners, home: Home, aro: ClientFiles) -> None:
    """smki_csrs_total counts CSRs; an access refusal (also ra.refused) is no CSR."""
    from prometheus_client import REGISTRY

    def refused() -> float:
        return REGISTRY.get_sample_value("smki_csrs_total", {"outcome": "refused", "code": "ra.refused"}) or 0.0

    device = _device(live.client(aro, Route.GATEWAY), 1)
    before = refused()
    _refused_by_the_rule(live.client(aro, Route.SPOTI).get(f"/api/v1/certificates/{device}"))
    assert refused() == before
