"""Refusals made before a handler ran come in the shape the path's client reads (found by QA):

* a body FastAPI could not parse (JSON that is not UTF-8) was 400 ``http.error``; docs/api.md
  documents malformed JSON as ``request.bad-json``, and so it is now;
* the DCC Device CSR services answered the listener's refusals (a refused credential, a body over
  the limit) in JSON: now their own XML, HTTP 200 (spec §3.2: Ad Hoc answers 200 even for errors),
  ``FORMAT_ERROR`` ``FM:AA1`` for a body over the limit, ``WORKFLOW_ERROR`` otherwise; the
  Repository answers the status with an empty XML body, as its own 401/402/403 do.
"""

from __future__ import annotations

import json

import pytest

from smki.services.context import Home
from smki.services.credentials import revoke_credential
from tests.api.conftest import ClientFiles, LiveListeners
from tests.api.test_stalled_body import read_response, stalled_upload

XML = {"content-type": "application/xml"}


def test_json_that_is_not_utf8_is_bad_json(live: LiveListeners, aro: ClientFiles) -> None:
    response = live.client(aro).post("/api/v1/organisation-certificates", content=b'{"csr": "\xff\xfe"}',
                                     headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "request.bad-json"


@pytest.mark.parametrize(("path", "status_element"), [
    ("/1.0/DeviceCSR", b"<Status>FORMAT_ERROR</Status>"),
    ("/1.0/PortalCSRBatch/SubmitCSRBatch", b"<BatchStatus>FORMAT_ERROR</BatchStatus>"),
])
def test_a_device_csr_service_body_over_the_limit_is_the_services_format_error(
        live: LiveListeners, aro: ClientFiles, path: str, status_element: bytes) -> None:
    response = live.client(aro).post(path, content=b"<x>" + b" " * 70_000_000, headers=XML)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert status_element in response.content and b"<ErrorCode>FM:AA1</ErrorCode>" in response.content


def test_a_repository_body_over_the_limit_is_413_with_an_xml_body(live: LiveListeners, aro: ClientFiles) -> None:
    response = live.client(aro).post("/services/certificatesearch", content=b"<x>" + b" " * 300_000, headers=XML)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/xml") and response.content == b""


def test_a_refused_credential_on_the_xml_services_is_their_xml(live: LiveListeners, home: Home,
                                                              aro: ClientFiles) -> None:
    revoke_credential(home, aro.serial, actor="operator:test", reason="laptop lost")
    client = live.client(aro)
    adhoc = client.post("/1.0/DeviceCSR", content=b"<DeviceCertificateSigningRequest/>", headers=XML)
    assert adhoc.status_code == 200 and adhoc.headers["content-type"].startswith("application/xml")
    assert b"<Status>WORKFLOW_ERROR</Status>" in adhoc.content and b"credential.revoked" in adhoc.content
    result = client.get("/1.0/PortalCSRBatch/CSRBatchResult?BatchId=1")
    assert result.status_code == 200 and b"<BatchStatus>WORKFLOW_ERROR</BatchStatus>" in result.content
    search = client.post("/services/certificatesearch", content=b"<x/>", headers=XML)
    assert search.status_code == 403 and search.headers["content-type"].startswith("application/xml")
    assert client.get("/api/v1/whoami").json()["error"]["code"] == "credential.revoked"  # JSON stays JSON


def test_a_wrong_method_on_the_xml_services_is_their_xml(live: LiveListeners, aro: ClientFiles) -> None:
    """A GET to the Repository or a Device CSR service was the JSON error object: now the Repository
    answers 405 with an empty XML body (and ``Allow``), a Device CSR service HTTP 200 with its own
    message, ``WORKFLOW_ERROR`` naming ``http.method-not-allowed``, as the listener's refusals."""
    client = live.client(aro)
    for path in ("/services/certificatesearch", "/services/retrievecertificate"):
        response = client.get(path)
        assert response.status_code == 405 and response.headers["allow"] == "POST"
        assert response.headers["content-type"].startswith("application/xml") and response.content == b""
    for method, path, status in (("GET", "/1.0/DeviceCSR", b"<Status>WORKFLOW_ERROR</Status>"),
                                 ("GET", "/1.0/PortalCSRBatch/SubmitCSRBatch", b"<BatchStatus>WORKFLOW_ERROR</"),
                                 ("POST", "/1.0/PortalCSRBatch/CSRBatchResult", b"<BatchStatus>WORKFLOW_ERROR</")):
        response = client.request(method, path)
        assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
        assert status in response.content and b"http.method-not-allowed" in response.content, response.content
    assert client.get("/api/v1/device-certificates").json()["error"]["code"] == "http.method-not-allowed"


@pytest.mark.parametrize("head", [
    b"GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
    # over h11's 16 KiB head limit, and never ended: h11 refuses a head that grows past its limit while
    # incomplete; a whole one that arrives in a single read (as on a loaded machine) it would parse
    b"GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000,
    b"POST /api/v1/organisation-certificates HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
])
def test_a_request_too_malformed_for_the_app_is_the_json_error_object(live: LiveListeners, aro: ClientFiles,
                                                                       head: bytes) -> None:
    """uvicorn answered these in plain text ("Invalid HTTP request received.")."""
    with stalled_upload(live, aro, "", "", raw=head) as tls:
        status, headers, body = read_response(tls)
    assert status == 400 and headers["content-type"] == "application/json" and headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == "request.malformed"
    assert len(headers["x-request-id"]) >= 8 and error["request_id"] == headers["x-request-id"]
