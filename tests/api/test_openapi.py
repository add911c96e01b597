"""The OpenAPI document is current and served (``test_schemathesis.py`` checks the API keeps to it)."""

from __future__ import annotations

import json
from pathlib import Path

from smki.domain import Route
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


