"""Every Portal page in a real browser at 1366 and 390 px wide: a screenshot of each, kept as a test
artefact, an axe-core accessibility check (no serious or critical violation), and at 390 px no
horizontal scrolling (actions stay on screen).

Screenshots go to ``$SMKI_TEST_ARTEFACTS/portal`` (default ``test-artifacts/portal`` in the
repository, which git ignores), one PNG per page and width, named ``<who>-<page>-<width>.png``, and
``axe.json`` beside them holds every page's axe results (all impacts) for review.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from smki.ca.devcsr import make_device_csr, make_organisation_csr
from smki.domain import RemotePartyRole, Route, Usage
from smki.services import applications as apps
from smki.services.context import Home
from smki.services.portal_batches import write_portal_zip
from smki.services.requests import Requester, request_organisation
from tests.portal.conftest import (
    APPROVER,
    ARO,
    AUDITOR,
    CHROMIUM,
    ENTITY,
    OPERATOR,
    PASSPHRASE,
    approve_device,
    register,
)
from tests.portal.live import P12_PASSWORD, aro_credential, live_smki, staff_credential

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]
sync_api = pytest.importorskip("playwright.sync_api")
axe_sync = pytest.importorskip("axe_playwright_python.sync_playwright")

WIDTHS = (1366, 390)
REPO = Path(__file__).resolve().parents[2]
BLOCKING = ("serious", "critical")


def artefacts() -> Path:
    root = Path(os.environ.get("SMKI_TEST_ARTEFACTS", REPO / "test-artifacts"))
    directory = root / "portal"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _prepare(home: Home) -> tuple[str, int]:
    """A register with something on every page: an approved Device subscriber with an Organisation
    Certificate, a second application waiting (the rules refuse it), a published CRL."""
    app_id = register(home)
    assert app_id is not None
    approve_device(home, app_id)
    waiting = apps.apply(home, "NETOP2", "device", staff_id=OPERATOR).application_id
    apps.propose(home, waiting, staff_id=OPERATOR)
    from cryptography.hazmat.primitives.asymmetric import ec

    csr = make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS, "SUPPLIER ONE",
                                ec.generate_private_key(ec.SECP256R1()))
    issued = request_organisation(home, Requester("SUPP1", ARO, Route.GATEWAY), csr)
    from smki.services.revocation import publish

    publish(home, "CRL", actor="staff:test")
    return issued.serial, waiting


def _pending_batch_and_device(home: Home) -> int:
    """A Portal batch awaiting the RA (for the approval queue) and a Device with a change to come."""
    from dataclasses import replace
    from datetime import timedelta

    from smki.services.batch_sources import BatchItem
    from smki.services.capacity import capacity_settings
    from smki.services.device_register import put_device
    from smki.services.portal_batches import submit_portal_batch
    from smki.services.ra_state import today

    waits = replace(home, settings=home.settings.configured({"batches": {"auto-approve-max": 0}}))
    items = [BatchItem(n, f"meter-{n}.csr", make_device_csr((0x00DB000000000A00 + n).to_bytes(8, "big"), Usage.DS))
             for n in range(3)]
    job = submit_portal_batch(waits, Requester("SUPP1", ARO, Route.GATEWAY), items, "night-run",
                              capacity_settings(home))
    for offset, status in ((-30, "commissioned"), (14, "decommissioned")):
        put_device(home, {"device_id": DEVICE, "device_type": "ESME", "smi_status": status,
                          "import_supplier": "SUPP1", "network_operator": "NETOP2",
                          "effective": (today() + timedelta(days=offset)).isoformat()}, actor=OPERATOR)
    return job.id


DEVICE = "00DB000000000B01"


def _suspensions(home: Home) -> None:
    """A suspended ARO (the operator is offered to propose reinstating it) and a suspended subscriber
    whose reinstatement awaits an approver (the Reinstatements page)."""
    from smki.services import registry as reg
    from smki.services.reinstatement import propose_subscriber_reinstatement

    reg.nominate_aro(home, "aro2", "SUPP1", "Bea Second", "SRO Sam", staff_id=OPERATOR)
    reg.set_aro_status(home, "aro2", "suspended", staff_id=APPROVER)
    from smki.audit import AuditEvent

    with home.store.transaction() as tx:
        tx.registry.set_subscription("NETOP2", "organisation", "approved")
        tx.append_audit([AuditEvent("admin", "test.setup", "NETOP2")])
    reg.set_subscriber_standing(home, "NETOP2", "organisation", "suspended", staff_id=APPROVER)
    propose_subscriber_reinstatement(home, "NETOP2", "organisation", staff_id=OPERATOR, reason="fees paid")


def _ca_revocation(home: Home) -> None:
    """A proposal to revoke the Device CA awaiting an approver (the approver's Revocations page shows
    the certificate in full, the warning, the confirmation box and both buttons). Only proposed: the
    live server still issues Device Certificates for the batch pages."""
    from smki.domain import CertKind
    from smki.services.revocation import propose_ca_revocation

    device_ca = home.store.ca_certificate(CertKind.DEVICE_CA)
    assert device_ca is not None
    propose_ca_revocation(home, device_ca.serial, 2, staff_id=OPERATOR)


def _check(page: object, name: str, width: int, results: dict[str, object], problems: list[str]) -> None:
    path = artefacts() / f"{name}-{width}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    found = axe_sync.Axe().run(page).response
    violations = found["violations"]
    results[f"{name}-{width}"] = [{"id": v["id"], "impact": v["impact"], "nodes": len(v["nodes"]),
                                   "help": v["help"]} for v in violations]
    for v in violations:
        if v["impact"] in BLOCKING:
            targets = [n["target"] for n in v["nodes"]][:3]
            problems.append(f"{name} @{width}: {v['impact']} {v['id']} ({v['help']}) at {targets}")
    if width < 500:
        overflow = page.evaluate(  # type: ignore[attr-defined]
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        if overflow > 0:
            problems.append(f"{name} @{width}: scrolls {overflow} px sideways")


def test_every_page_at_both_widths_is_accessible_and_fits(home: Home, browser: object, tmp_path: Path) -> None:
    serial, _waiting = _prepare(home)
    pending = _pending_batch_and_device(home)
    _suspensions(home)
    _ca_revocation(home)
    people = {
        "aro": aro_credential(home, PASSPHRASE, ARO, tmp_path),
        "operator": staff_credential(home, PASSPHRASE, OPERATOR, tmp_path),
        "approver": staff_credential(home, PASSPHRASE, APPROVER, tmp_path),
        "auditor": staff_credential(home, PASSPHRASE, AUDITOR, tmp_path),
    }
    pages = {
        "aro": [("home", "/portal/aro"), ("csr", "/portal/aro/csr"), ("certificates", "/portal/aro/certificates"),
                ("certificate", f"/portal/aro/certificates/{serial}"), ("batches", "/portal/aro/batches"),
                ("batch-pending", f"/portal/aro/batches/{pending}"), ("not-found", "/portal/aro/certificates/00")],
        "operator": [("overview", "/portal/staff"), ("applications", "/portal/staff/applications"),
                     ("parties", "/portal/staff/parties"), ("reinstatements", "/portal/staff/reinstatements"),
                     ("revocations", "/portal/staff/revocations"),
                     ("batch-queue", "/portal/staff/batches"), ("devices", f"/portal/staff/devices?device={DEVICE}"),
                     ("devices-unknown", "/portal/staff/devices?device=00DB000000000B99")],
        "approver": [("applications", "/portal/staff/applications"), ("batch-queue", "/portal/staff/batches"),
                     ("reinstatements", "/portal/staff/reinstatements"), ("parties", "/portal/staff/parties"),
                     ("revocations", "/portal/staff/revocations")],
        "auditor": [("audit", "/portal/staff/audit?verify=1"), ("audit-record", "/portal/staff/audit/2")],
    }
    results: dict[str, object] = {}
    problems: list[str] = []
    with live_smki(home, PASSPHRASE) as server:
        for route in (Route.GATEWAY, Route.SPOTI):
            base = server.url(route)
            for who, credential in people.items():
                for width in WIDTHS:
                    context = browser.new_context(  # type: ignore[attr-defined]
                        client_certificates=[{"origin": base, "pfxPath": str(credential),
                                              "passphrase": P12_PASSWORD}],
                        ignore_https_errors=True, viewport={"width": width, "height": 900})
                    page = context.new_page()
                    listed = pages[who] if route is Route.GATEWAY else [
                        p for p in pages[who] if p[0] in ("home", "csr", "overview")]
                    for name, path in listed:
                        page.goto(base + path)
                        _check(page, f"{route.value}-{who}-{name}", width, results, problems)
                    if who == "aro" and route is Route.GATEWAY:
                        _batch_pages(page, base, width, results, problems, tmp_path)
                    context.close()
    (artefacts() / "axe.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    shots = sorted(p.name for p in artefacts().glob("*.png"))
    assert "gateway-auditor-audit-390.png" in shots and "gateway-aro-batch-1366.png" in shots
    assert "gateway-approver-batch-queue-390.png" in shots and "gateway-operator-devices-1366.png" in shots
    assert "gateway-approver-reinstatements-390.png" in shots and "gateway-operator-reinstatements-1366.png" in shots
    assert "gateway-approver-revocations-390.png" in shots and "gateway-operator-revocations-1366.png" in shots
    assert "gateway-approver-parties-390.png" in shots
    assert problems == [], "\n".join(problems)


def _batch_pages(page: object, base: str, width: int, results: dict[str, object], problems: list[str],
                 tmp_path: Path) -> None:
    """Upload a small ZIP (one bad file) and check its progress/result page and the batch list."""
    files = [(f"m{n}.csr", base64.b64encode(make_device_csr((0x00DB000000000900 + n + width).to_bytes(8, "big"),
                                                              Usage.DS))) for n in range(2)]
    upload = tmp_path / f"week-{width}.zip"
    upload.write_bytes(write_portal_zip([*files, ("broken.csr", b"not a csr")]))
    page.goto(base + "/portal/aro/batches")  # type: ignore[attr-defined]
    page.get_by_label("ZIP of Device CSRs").set_input_files(str(upload))  # type: ignore[attr-defined]
    page.get_by_role("button", name="Upload batch").click()  # type: ignore[attr-defined]
    page.locator("#download").wait_for(state="visible", timeout=30_000)  # type: ignore[attr-defined]
    page.reload()  # type: ignore[attr-defined]
    assert "broken.csr" in page.locator("#batch-failures").inner_text()  # type: ignore[attr-defined]
    _check(page, "gateway-aro-batch", width, results, problems)
    page.goto(base + "/portal/aro/batches")  # type: ignore[attr-defined]
    _check(page, "gateway-aro-batch-list", width, results, problems)
