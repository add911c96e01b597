"""The listener's body limit leaves room for what the Portal's pages accept (the live listener)."""

from __future__ import annotations

import re
from collections.abc import Iterator

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


def test_a_portal_post_over_the_body_limit_gets_an_html_page_saying_the_limit(
        live: LiveListeners, aro: ClientFiles) -> None:
    """A browser got the JSON API's 413 object; now the Portal's error page, status 413, the limit in
    KiB — whether the size was declared (Content-Length) or counted as a chunked body streamed."""
    client = live.client(aro, Route.GATEWAY, follow_redirects=False)
    match = CSRF.search(client.get("/portal/aro").text)
    assert match

    def chunks() -> Iterator[bytes]:
        yield f"csrf={match.group(1)}&policy=".encode()
        for _ in range(40):
            yield b"x" * 8192

    declared = client.post("/portal/aro/apply", data={"csrf": match.group(1), "policy": "x" * 300_000})
    streamed = client.post("/portal/aro/apply", content=chunks(),
                           headers={"content-type": "application/x-www-form-urlencoded"})
    for reply in (declared, streamed):
        assert reply.status_code == 413
        assert reply.headers["content-type"].startswith("text/html")
        assert "request.too-large" in reply.text and "limit of 256 KiB" in reply.text
        assert "Content-Security-Policy" in reply.headers
    api = client.post("/api/v1/organisation-certificates", json={"csr": "a" * 300_000})
    assert api.status_code == 413 and api.json()["error"]["code"] == "request.too-large"
