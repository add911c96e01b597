"""A request with a body is never redirected (``smki.interfaces.api.slashes``).

Starlette answered ``POST /api/v1/device-certificates/`` with a 307 and an empty body: a client that
does not follow redirects learnt nothing, and one that does sent its CSR again to another URL. Such a
request is now refused 404 in the listener's own shape, naming the path to use; a browser's GET with
a trailing slash is still redirected, and nothing else changes.
"""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.ca.devcsr import make_device_csr
from smki.domain import Usage
from smki.services.context import Home
from tests.api.conftest import ClientFiles, LiveListeners

DEVICE = bytes.fromhex("00db1234567890c1")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_json_request_with_a_body_and_a_trailing_slash_is_a_json_404_naming_the_path(
        live: LiveListeners, home: Home, aro: ClientFiles, method: str) -> None:
    pem = x509.load_der_x509_csr(make_device_csr(DEVICE, Usage.DS)).public_bytes(Encoding.PEM)
    body = json.dumps({"csr": pem.decode()})
    response = live.client(aro).request(method, "/api/v1/device-certificates/", content=body,
                                        headers={"content-type": "application/json"})
    assert response.status_code == 404 and "location" not in response.headers
    error = response.json()["error"]
    assert error["code"] == "http.not-found"
    assert f"{method} /api/v1/device-certificates has no trailing slash" in error["message"]
    assert home.store.certificates_for_device(DEVICE) == []


def test_a_portal_form_posted_with_a_trailing_slash_gets_the_portal_s_404_page(
        live: LiveListeners, aro: ClientFiles) -> None:
    response = live.client(aro).post("/portal/aro/csr/", data={"x": "1"})
    assert response.status_code == 404 and "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "there is no such Portal page" in response.text


def test_a_get_with_a_trailing_slash_is_still_redirected_and_real_paths_are_untouched(
        live: LiveListeners, aro: ClientFiles) -> None:
    client = live.client(aro)
    moved = client.get("/api/v1/whoami/")
    assert moved.status_code == 307 and moved.headers["location"].endswith("/api/v1/whoami")
    assert client.get("/api/v1/whoami").status_code == 200
    wrong_method = client.delete("/api/v1/whoami")  # a real path, the wrong method: 405 as before
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "http.method-not-allowed"
    unknown = client.post("/api/v1/nothing", content=b"{}")  # no slash, no such path: 404 as before
    assert unknown.status_code == 404 and "trailing slash" not in unknown.json()["error"]["message"]


def test_the_redirect_is_relative_whatever_the_host_header_says_and_carries_the_security_headers(
        live: LiveListeners, aro: ClientFiles) -> None:
    """Starlette's redirect was ``https://<Host header>/portal/staff`` with none of the Portal's
    security headers (found by an exploratory run)."""
    client = live.client(aro)
    moved = client.get("/portal/staff/?tab=1", headers={"host": "evil.example"})
    assert moved.status_code == 307 and moved.headers["location"] == "/portal/staff?tab=1"
    assert moved.headers["x-frame-options"] == "DENY" and moved.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in moved.headers["content-security-policy"]
    assert client.head("/api/v1/whoami/").headers["location"] == "/api/v1/whoami"
    response = client.get("//evil.example/")  # its redirect would read as another host: not redirected
    assert response.status_code == 404 and "location" not in response.headers
    encoded = client.get("/%2F/evil.example/")  # an encoded slash stays a path on this host
    assert encoded.status_code == 307 and encoded.headers["location"] == "/%2F/evil.example"
