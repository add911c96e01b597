"""Portal fixtures: a home with a CA and a registered Party, and the Portal on both routes.

``clients`` (used by ``test_pages.py``) serves the Portal router from a tiny test app whose
middleware sets ``request.state.identity`` from an ``X-Test-Identity`` header, standing in for the
listener that sets it from the verified client certificate, so every page can be driven quickly
through FastAPI's TestClient. The browser tests do not use it: they run against a live
``smki serve`` with real client certificates (``tests/portal/live.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.testclient import TestClient
from markupsafe import escape

from smki.audit import AuditEvent
from smki.config import Settings
from smki.domain import CertificatePolicy, Route
from smki.interfaces.portal.app import create_portal_router
from smki.interfaces.portal.identity import PortalIdentity
from smki.services import applications as apps
from smki.services import registry as reg
from smki.services.batch_jobs import BatchRunner
from smki.services.ca_admin import initialise_ca
from smki.services.context import Home, open_home

PASSPHRASE = b"portal-test-passphrase"
PARTY = "SUPP1"
ARO = "aro1"
OTHER_PARTY = "NETOP2"
ENTITY = bytes.fromhex("90b3d51f30010000")
OTHER_ENTITY = bytes.fromhex("90b3d51f30020000")
OPERATOR, APPROVER, AUDITOR = "op1", "ap1", "aud1"


def parse_identity(text: str) -> PortalIdentity | None:
    """``aro:PARTY:ARO`` or ``staff:ID`` (test only: the listener reads the client certificate)."""
    parts = text.split(":")
    if parts[0] == "aro" and len(parts) == 3:
        return PortalIdentity("aro", party_id=parts[1], aro_id=parts[2])
    if parts[0] == "staff" and len(parts) == 2:
        return PortalIdentity("staff", staff_id=parts[1])
    return None


def make_app(home: Home, route: Route) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def identity(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        found = parse_identity(request.headers.get("x-test-identity", ""))
        if found is not None:
            request.state.identity = found
        return await call_next(request)

    def run_batches() -> None:  # the server's batch runner, here run in the request that woke it
        BatchRunner(home, workers=0, poll=0.01).run_once()

    app.include_router(create_portal_router(lambda: home, route, wake=run_batches))
    return app


def register(home: Home, *, device_applied: bool = True, org_approved: bool = True) -> int | None:
    """RA staff, a Device-ready Party (SREPT, UEPT, Gateway) with a verified, screened ARO, another Party."""
    from smki.services.staff import add_staff

    add_staff(home, OPERATOR, "Olive Operator", ["ra-operator"], actor="admin")
    add_staff(home, APPROVER, "Abe Approver", ["ra-approver"], actor="admin")
    add_staff(home, AUDITOR, "Ada Auditor", ["auditor"], actor="admin")
    with home.store.transaction() as tx:
        tx.registry.add_party(PARTY, "Supplier One Ltd", "large-supplier")
        tx.registry.update_party(PARTY, srept_passed=date(2019, 1, 10), uept_completed=date(2019, 2, 1))
        tx.registry.start_period(PARTY, "registered-role", "import-supplier", on=date(2019, 2, 1), by="admin")
        tx.registry.start_period(PARTY, "gateway-connection", "DGC-001", on=date(2019, 2, 1), by="admin")
        tx.registry.set_entity(PARTY, ENTITY, [2])
        tx.registry.add_party(OTHER_PARTY, "Network Two plc", "electricity-network-operator")
        tx.registry.set_entity(OTHER_PARTY, OTHER_ENTITY, [3])
        if org_approved:
            tx.registry.set_subscription(PARTY, "organisation", "approved")
        tx.append_audit([AuditEvent("admin", "test.setup", PARTY)])
    reg.nominate_aro(home, ARO, PARTY, "Ann Officer", "SRO Sam", staff_id=OPERATOR)
    reg.verify_aro(home, ARO, "passport and utility bill", staff_id=OPERATOR)
    reg.screen_aro(home, ARO, date(2021, 3, 1), "BS 7858:2019", staff_id=OPERATOR)
    if device_applied:
        return apps.apply(home, PARTY, CertificatePolicy.DEVICE, staff_id=OPERATOR).application_id
    return None


def shows_rule(page: str, rule_id: str) -> bool:
    """Whether a refusal page names ``rule_id`` with its reason and the reference it rests on (the
    rule's own text, from the RA's registry, escaped as the page's Jinja2 escapes it): a refusal that names a rule
    but not its SEC clause or design decision does not explain itself."""
    from smki.ra.rules import APPROVAL_RULES, RESERVED_ROLE_RULES, STAFF_RULES, Rule

    rules: dict[str, Rule[Any]] = {**APPROVAL_RULES, **STAFF_RULES, **RESERVED_ROLE_RULES}
    return f'data-rule="{rule_id}"' in page and f"Rests on: {escape(rules[rule_id].reference)}" in page


def approve_device(home: Home, application_id: int) -> None:
    apps.add_evidence(home, application_id, "installation-need", "RAPP 5.5 installation plan", staff_id=OPERATOR)
    apps.propose(home, application_id, staff_id=OPERATOR)
    apps.approve(home, application_id, staff_id=APPROVER)


@pytest.fixture
def home(tmp_path: Path, database_url: str) -> Iterator[Home]:
    path = tmp_path / "home"
    initialise_ca(Settings(home=path, database_url=database_url), PASSPHRASE, actor="admin")
    opened = open_home(path, PASSPHRASE)
    try:
        yield opened
    finally:
        opened.close()


@dataclass
class Clients:
    gateway: TestClient
    spoti: TestClient


@pytest.fixture
def clients(home: Home) -> Iterator[Clients]:
    with TestClient(make_app(home, Route.GATEWAY)) as gw, TestClient(make_app(home, Route.SPOTI)) as sp:
        yield Clients(gw, sp)


CHROMIUM = "/usr/bin/chromium"  # Debian's chromium (scripts/system-deps.sh); browser tests skip without it


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium for a module's browser tests (the screenshots and the workflows)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield launched
        launched.close()
