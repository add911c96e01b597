"""The listener's body limit leaves room for what the Portal's pages accept (the live listener)."""

from __future__ import annotations

import re

from smki.audit import AuditEvent
from smki.domain import CertificatePolicy, Route
from smki.interfaces.portal.limits import MAX_EVIDENCE_UPLOAD
from smki.services import applications as apps
from smki.services.context import Home
from smki.services.ra_state import load_application
from tests.api.conftest import OPERATOR, PARTY, ClientFiles, LiveListeners

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def test_an_evidence_document_of_a_few_mb_is_accepted_and_one_over_the_limit_refused_on_the_page(
        live: LiveListeners, home: Home, aro: ClientFiles) -> None:
    """The page takes documents of up to 10 MB; the listener's general limit (256 KiB) refused a
    300 KB PDF with a JSON 413 before the page ran."""
    with home.store.transaction() as tx:  # an Organisation application still open, for the ARO's evidence
        tx.registry.set_subscription(PARTY, "organisation", "refused")
        tx.append_audit([AuditEvent("admin", "test.setup", PARTY)])
    application = apps.apply(home, PARTY, CertificatePolicy.ORGANISATION, staff_id=OPERATOR).application_id
    client = live.client(aro, Route.GATEWAY, follow_redirects=False)
    match = CSRF.search(client.get("/portal/aro").text)
    assert match
    url = f"/portal/aro/applications/{application}/evidence"
    reply = client.post(url, data={"csrf": match.group(1), "description": "rollout plan"},
                        files={"document": ("plan.pdf", b"%PDF" + b"x" * 3_000_000, "application/pdf")})
    assert reply.status_code == 303, reply.text[:300]
    evidence = load_application(home, application).evidence
    assert any("plan.pdf sha256:" in e.reference for e in evidence)
    over = client.post(url, data={"csrf": match.group(1)},
                       files={"document": ("big.pdf", b"x" * (MAX_EVIDENCE_UPLOAD + 1), "application/pdf")})
    assert over.status_code in (400, 413)
