"""The edges of the DCC XML services' HTTP surface answer in the services' own shape (found by QA):

* ``POST /1.0/DeviceCSR/`` (and every service path with a trailing slash) was a 307 redirect to the
  path without it, which a client posting a body does not follow safely: now the service's refusal
  naming the path to use (HTTP 200 and its message for the Device CSR services, 404 with an empty
  body for the Repository), and nothing is done;
* any other path under ``/1.0`` or ``/services`` was smki's JSON 404: now the same refusal;
* ``?BatchId=1&BatchId=2`` silently read the last one: now ``FORMAT_ERROR`` ``FM:AA3``; a repeated
  ``apikey`` is refused 403 as a wrong one is;
* RA staff credentials on the Device CSR services were a JSON 403 (``credential.not-a-subscriber``):
  now the service's ``WORKFLOW_ERROR``.

Every answer is parsed with the codec's client-side readers (what a DCC client reads).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from smki.ca.devcsr import make_device_csr
from smki.domain import Usage
from smki.interfaces.api.settings import ApiSettings
from smki.interfaces.dcc import codec as dx
from smki.services.context import Home
from tests.api.conftest import OPERATOR, ClientFiles, LiveListeners, credential, start_listeners

ADHOC = "/1.0/DeviceCSR"
SUBMIT = "/1.0/PortalCSRBatch/SubmitCSRBatch"
RESULT = "/1.0/PortalCSRBatch/CSRBatchResult"
XML = {"content-type": "application/xml"}
DEVICE = bytes.fromhex("00db1234567890b1")


def _adhoc_body() -> bytes:
    return dx.render_device_csr_request(dx.DeviceCertificateSigningRequest("REQ-1", make_device_csr(DEVICE, Usage.DS)))


def _submit_body() -> bytes:
    csr = dx.DeviceCSR("ID0", make_device_csr(DEVICE, Usage.DS))
    return dx.render_submit_csr_batch(dx.SubmitCSRBatch("B-1", (csr,)))


def _search_body() -> bytes:
    return dx.render_certificate_search_request(dx.CertificateSearchRequest(dx.SearchBy.SUBJECT_ALT_NAME, DEVICE))


def _xml_200(response: httpx.Response) -> bytes:
    assert response.status_code == 200, (response.status_code, response.headers.get("location"), response.content)
    assert response.headers["content-type"].startswith("application/xml")
    assert "location" not in response.headers
    return response.content


def _error_of(path: str, body: bytes) -> tuple[str, dx.DccError]:
    """The status and Error of a Device CSR service's answer, read as that service's client reads it."""
    if path == ADHOC:
        adhoc = dx.parse_device_csr_response(body)
        assert adhoc.error is not None and adhoc.certificate_der is None
        return adhoc.status.value, adhoc.error
    if path == SUBMIT:
        submit = dx.parse_submit_csr_batch_status(body)
        assert submit.error is not None and submit.batch_id is None
        return submit.status.value, submit.error
    result = dx.parse_csr_batch_result(body)
    assert result.error is not None and not result.certificates
    return result.status.value, result.error


@pytest.mark.parametrize(("method", "sent", "service", "body"), [
    ("POST", ADHOC + "/", ADHOC, _adhoc_body()),
    ("POST", ADHOC + "//", ADHOC, _adhoc_body()),
    ("POST", "/1.0/devicecsr", ADHOC, _adhoc_body()),
    ("POST", SUBMIT + "/", SUBMIT, _submit_body()),
    ("GET", RESULT + "/?BatchId=1", RESULT, b""),
])
def test_a_service_path_with_a_trailing_slash_is_refused_as_the_service_not_redirected(
        live: LiveListeners, home: Home, aro: ClientFiles, method: str, sent: str, service: str, body: bytes) -> None:
    response = live.client(aro).request(method, sent, content=body, headers=XML)
    status, error = _error_of(service, _xml_200(response))
    assert status == "WORKFLOW_ERROR" and error.code == "WF:AA9"
    assert error.text.startswith("http.not-found:") and f"{method} {service} (no trailing slash)" in error.text
    assert home.store.certificates_for_device(DEVICE) == []  # nothing was issued or queued


@pytest.mark.parametrize("path", ["/services/certificatesearch/", "/services/retrievecertificate/",
                                  "/services/CertificateSearch", "/services/nothing", "/services"])
def test_a_repository_path_that_is_no_service_is_404_with_an_empty_xml_body(
        live: LiveListeners, aro: ClientFiles, path: str) -> None:
    response = live.client(aro).post(path, content=_search_body(), headers=XML)
    assert response.status_code == 404 and "location" not in response.headers
    assert response.headers["content-type"].startswith("application/xml") and response.content == b""


@pytest.mark.parametrize(("method", "path", "service"), [
    ("POST", "/1.0/Nothing", ADHOC),
    ("POST", "/1.0", ADHOC),
    ("POST", "/1.0/PortalCSRBatch/Other", SUBMIT),
    ("GET", "/1.0", RESULT),
    ("GET", "/1.0/PortalCSRBatch", RESULT),
    ("PUT", "/1.0/PortalCSRBatch/SubmitCSRBatch/", SUBMIT),
])
def test_an_unknown_path_under_the_device_csr_prefix_is_a_service_refusal(
        live: LiveListeners, aro: ClientFiles, method: str, path: str, service: str) -> None:
    response = live.client(aro).request(method, path, content=b"<x/>", headers=XML)
    status, error = _error_of(service, _xml_200(response))
    assert status == "WORKFLOW_ERROR" and error.code == "WF:AA9" and error.text.startswith("http.not-found:")


def test_the_services_own_paths_and_other_paths_are_as_before(live: LiveListeners, aro: ClientFiles) -> None:
    """The fallback takes nothing from the services (a wrong method is still 405 in their shape, as
    tests/api/test_refusal_shapes.py checks) nor from the JSON API (its 404 stays JSON)."""
    client = live.client(aro)
    status, error = _error_of(ADHOC, _xml_200(client.get(ADHOC)))
    assert status == "WORKFLOW_ERROR" and error.text.startswith("http.method-not-allowed:")
    assert client.get("/services/certificatesearch").status_code == 405
    assert client.post(ADHOC, content=b"<x", headers=XML).status_code == 200
    missing = client.get("/api/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "http.not-found"
    assert client.get("/1.0x").json()["error"]["code"] == "http.not-found"  # not under the prefix


def test_a_listener_refusal_on_an_unknown_device_csr_path_is_xml(live: LiveListeners, aro: ClientFiles) -> None:
    """The listener refuses a body over its limit before any route runs; on ``/1.0/...`` that was JSON."""
    response = live.client(aro).post("/1.0/Nothing", content=b"<x>" + b" " * 300_000, headers=XML)
    status, error = _error_of(ADHOC, _xml_200(response))
    assert status == "FORMAT_ERROR" and error.code == "FM:AA1" and "MessageTooLarge" in error.text


def test_a_repeated_batch_id_is_format_error_not_the_last_one(live: LiveListeners, aro: ClientFiles) -> None:
    client = live.client(aro)
    submitted = dx.parse_submit_csr_batch_status(_xml_200(client.post(SUBMIT, content=_submit_body(), headers=XML)))
    assert submitted.status is dx.SubmitStatus.PENDING and submitted.batch_id is not None
    batch = str(submitted.batch_id)
    alone = dx.parse_csr_batch_result(_xml_200(client.get(RESULT, params={"BatchId": batch})))
    assert alone.status is not dx.BatchStatus.FORMAT_ERROR
    for query in ([("BatchId", "999999"), ("BatchId", batch)], [("BatchId", batch), ("BatchId", batch)]):
        status, error = _error_of(RESULT, _xml_200(client.get(RESULT, params=query)))
        assert status == "FORMAT_ERROR" and error.code == "FM:AA3"
        assert error.text == "BatchId is given 2 times: give it once"


def test_a_repeated_apikey_is_refused_as_a_wrong_one(home: Home, aro: ClientFiles, api_settings: ApiSettings) -> None:
    live = start_listeners(home, replace(api_settings, repository_apikey="s3cret"), runner=False)
    try:
        client = live.client(aro)
        for path in ("/services/certificatesearch", "/services/retrievecertificate"):
            assert client.post(path, content=_search_body(), headers=XML,
                               params={"apikey": "s3cret"}).status_code in (401, 402)
            for keys in (["wrong", "s3cret"], ["s3cret", "wrong"], ["s3cret", "s3cret"]):
                response = client.post(path, content=_search_body(), headers=XML,
                                       params=[("apikey", key) for key in keys])
                assert response.status_code == 403, keys
                assert response.headers["content-type"].startswith("application/xml") and response.content == b""
    finally:
        live.stop()


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", ADHOC, _adhoc_body()),
    ("POST", SUBMIT, _submit_body()),
    ("GET", RESULT + "?BatchId=1", b""),
])
def test_ra_staff_credentials_on_a_device_csr_service_are_its_workflow_error(
        live: LiveListeners, home: Home, tmp_path: Path, method: str, path: str, body: bytes) -> None:
    staff = live.client(credential(home, tmp_path, "staff", OPERATOR))
    status, error = _error_of(path.split("?")[0], _xml_200(staff.request(method, path, content=body, headers=XML)))
    assert status == "WORKFLOW_ERROR" and error.code == "WF:AA9"
    assert error.text.startswith("credential.not-a-subscriber:")
    assert staff.get("/api/v1/whoami").status_code == 200  # the JSON API is unchanged


@pytest.mark.parametrize(("headers", "body"), [
    ({}, b""),
    ({"content-type": "text/plain"}, b"<x/>"),
    ({"content-type": "application/json"}, b'{"csr": "x"}'),
    ({"content-type": "application/xml; charset=klingon"}, "<x/>".encode("utf-16")),
    ({"content-type": "application/x-www-form-urlencoded"}, b"a=b"),
])
def test_odd_content_types_and_bodies_are_the_services_format_errors(
        live: LiveListeners, aro: ClientFiles, headers: dict[str, str], body: bytes) -> None:
    """The services read the body as XML whatever its declared type or charset: never JSON or HTML."""
    client = live.client(aro)
    for path in (ADHOC, SUBMIT):
        status, error = _error_of(path, _xml_200(client.post(path, content=body, headers=headers)))
        assert status == "FORMAT_ERROR" and error.code == "FM:AA1"
    search = client.post("/services/certificatesearch", content=body, headers=headers)
    assert search.status_code == 401 and search.content == b""
    assert search.headers["content-type"].startswith("application/xml")
