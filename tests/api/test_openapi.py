"""The OpenAPI document is current, served, and the API keeps to it under random input (no 5xx).

schemathesis is not installed here; the fuzz test below does its job in miniature with hypothesis:
random bodies and query strings against every JSON operation on the live TLS listener, each answer
checked against the operation's declared response model (2xx) or the error envelope (4xx).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from smki.domain import Route
from smki.interfaces.api import json_api as j
from smki.interfaces.api.openapi import render
from tests.api.conftest import ClientFiles, LiveListeners

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_checked_in_openapi_document_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/openapi.json is stale: run python -m smki.interfaces.api.openapi docs/openapi.json")


def test_the_listener_serves_the_same_document(live: LiveListeners, aro: ClientFiles) -> None:
    for route in (Route.GATEWAY, Route.SPOTI):
        served = live.client(aro, route).get("/api/v1/openapi.json")
        assert served.status_code == 200
        assert served.json() == json.loads(DOC.read_text(encoding="utf-8"))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
_field = st.sampled_from(["csr", "csrs", "reference", "id", "x"])
_bodies = st.one_of(_json, st.dictionaries(_field, _json, max_size=3),
                    st.builds(lambda ids: {"csrs": [{"id": i, "csr": "AAAA"} for i in ids]},
                              st.lists(st.text(min_size=0, max_size=4), max_size=3)))
_query = st.dictionaries(st.sampled_from(["serial", "device_id", "entity_id", "role", "usage", "status", "kind",
                                          "after", "limit", "format"]),
                         st.text(alphabet="0123456789abcdefDSKAIRPN-:x", max_size=20), max_size=3)
_OPERATIONS: list[tuple[str, str, type[BaseModel] | None]] = [
    ("POST", "/api/v1/organisation-certificates", j.CertificateOut),
    ("POST", "/api/v1/device-certificates", j.CertificateOut),
    ("POST", "/api/v1/device-batches", j.BatchOut),
    ("GET", "/api/v1/certificates", j.CertificatePage),
    ("GET", "/api/v1/certificates/{serial}", j.CertificateOut),
    ("GET", "/api/v1/certificates/{serial}/download", None),
    ("GET", "/api/v1/device-batches/{serial}", j.BatchOut),
    ("GET", "/api/v1/device-batches/{serial}/results", j.BatchResultsPage),
    ("GET", "/api/v1/crl/{serial}", None),
    ("GET", "/api/v1/arl", None),
]


def _check(response: httpx.Response, model: type[BaseModel] | None) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        j.ErrorOut.model_validate(body)
        assert set(body["error"]) == {"code", "message", "rules"}
    elif model is not None:
        model.model_validate(response.json())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=st.sampled_from(_OPERATIONS), body=_bodies, query=_query,
       segment=st.text(alphabet="0123456789abcdefXYZ%-._", min_size=1, max_size=40))
def test_random_requests_never_get_a_5xx_and_answers_match_the_schema(
        live: LiveListeners, aro: ClientFiles, op: tuple[str, str, type[BaseModel] | None], body: Any,
        query: dict[str, str], segment: str) -> None:
    method, path, model = op
    client = live.client(aro) if not live.clients else live.clients[0]
    url = path.replace("{serial}", segment)
    post = method == "POST"
    response = client.post(url, json=body, params=query) if post else client.get(url, params=query)
    _check(response, model)
