"""The Portal in a real browser: Playwright driving Debian's Chromium against a live ``smki serve``.

Each test prepares the register in-process, issues SMKI credentials with the ``smki`` command line
(PKCS#12), starts ``smki serve`` (both listeners, mutual TLS) on ephemeral ports of 127.0.0.1, and
opens one browser context per person and listener that presents that person's PKCS#12 to that
listener's origin only. Each test saves screenshots under its tmp dir, and every request any page
makes is collected and checked to go to the listener itself (no CDN, no other host).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import zipfile
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.ca.devcsr import make_device_csr
from smki.domain import Route, Usage
from smki.services.context import Home
from smki.services.portal_batches import RECORD_HEADER, read_response_zip, write_portal_zip
from smki.store import CertificateQuery
from tests.portal.conftest import APPROVER, ARO, CHROMIUM, OPERATOR, PARTY, PASSPHRASE, approve_device, register
from tests.portal.live import P12_PASSWORD, LiveSmki, aro_credential, live_smki, staff_credential

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]
sync_api = pytest.importorskip("playwright.sync_api")


class Session:
    """One person's browser context against one listener, recording every URL it requests.

    The context presents ``credential`` (a PKCS#12 from ``smki``) to that listener's origin only;
    the listener's server certificate is from smki's own credentials CA, which Chromium does not
    know, hence ``ignore_https_errors`` (the TLS handshake still requires the client certificate).
    """

    def __init__(self, browser: object, server: LiveSmki, route: Route, credential: Path, *,
                 width: int = 1100) -> None:
        self.base = server.url(route)
        self.context = browser.new_context(  # type: ignore[attr-defined]
            client_certificates=[{"origin": self.base, "pfxPath": str(credential), "passphrase": P12_PASSWORD}],
            ignore_https_errors=True, accept_downloads=True, viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.urls: list[str] = []
        self.page.on("request", lambda request: self.urls.append(request.url))

    def goto(self, path: str) -> int:
        """Open ``path``; returns the HTTP status."""
        return int(self.page.goto(self.base + path).status)

    def shot(self, directory: Path, name: str) -> Path:
        path = directory / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_only_own_host(self) -> None:
        own = urlsplit(self.base).netloc
        foreign = [u for u in self.urls if urlsplit(u).netloc != own]
        assert self.urls and not foreign, foreign

    def close(self) -> None:
        self.assert_only_own_host()
        self.context.close()


def test_operator_proposes_and_a_second_approver_approves(home: Home, browser: object, tmp_path: Path) -> None:
    app_id = register(home)
    assert app_id is not None
    operator_p12 = staff_credential(home, PASSPHRASE, OPERATOR, tmp_path)
    approver_p12 = staff_credential(home, PASSPHRASE, APPROVER, tmp_path)
    with live_smki(home, PASSPHRASE) as server:
        # the listener requires a client certificate: a context without one gets no page at all
        anonymous = browser.new_context(ignore_https_errors=True)  # type: ignore[attr-defined]
        with pytest.raises(sync_api.Error):
            anonymous.new_page().goto(server.url(Route.GATEWAY) + "/portal/staff/applications")
        anonymous.close()
        operator = Session(browser, server, Route.GATEWAY, operator_p12)
        operator.goto("/portal/staff/applications")
        card = operator.page.locator(f"#application-{app_id}")
        assert "device.evidence-of-need" in card.inner_text()
        card.get_by_label("Evidence kind").select_option("installation-need")
        card.get_by_label("Evidence reference").fill("RAPP 5.5: meter installation contract 2024-17")
        card.get_by_role("button", name="Record evidence").click()
        operator.page.get_by_text("The evidence was recorded").wait_for()
        card = operator.page.locator(f"#application-{app_id}")
        assert "All rules pass" in card.inner_text()
        card.get_by_role("button", name="Propose").click()
        operator.page.get_by_text("A different RA approver must now approve").wait_for()
        # the proposer holds no approver role: the page offers no Approve button at all
        card = operator.page.locator(f"#application-{app_id}")
        assert card.get_by_role("button", name="Approve").count() == 0
        assert "A different RA approver decides" in card.inner_text()
        operator.shot(tmp_path, "1-operator-proposed")
        operator.close()

        approver = Session(browser, server, Route.GATEWAY, approver_p12)
        approver.goto("/portal/staff/applications")
        card = approver.page.locator(f"#application-{app_id}")
        assert f"Proposed by {OPERATOR}" in card.inner_text()
        card.get_by_role("button", name="Approve").click()
        approver.page.get_by_text("now an Authorised Subscriber").wait_for()
        assert "Approved" in approver.page.get_by_text(f"Application {app_id} ({PARTY}").inner_text()
        approver.shot(tmp_path, "1-approved")
        approver.close()
    assert home.store.registry.require_party(PARTY).subscriptions["device"] == "approved"
    record = home.store.registry.application(app_id)
    assert record is not None and (record.proposed_by, record.decided_by) == (OPERATOR, APPROVER)


def test_aro_uploads_a_device_csr_on_the_gateway_and_openssl_verifies_it(home: Home, browser: object,
                                                                          tmp_path: Path) -> None:
    app_id = register(home)
    assert app_id is not None
    approve_device(home, app_id)
    csr_file = tmp_path / "meter.csr"
    csr_file.write_bytes(x509.load_der_x509_csr(make_device_csr(bytes.fromhex("00db123456789001"), Usage.DS))
                         .public_bytes(Encoding.PEM))
    aro_p12 = aro_credential(home, PASSPHRASE, ARO, tmp_path)
    with live_smki(home, PASSPHRASE) as server:
        aro = Session(browser, server, Route.GATEWAY, aro_p12)
        aro.goto("/portal/aro")
        assert aro.page.locator('[data-policy="device"]').inner_text() == "Approved"
        aro.page.get_by_role("link", name="Submit a CSR").click()
        aro.page.get_by_label("CSR file").set_input_files(str(csr_file))
        aro.page.get_by_role("button", name="Submit CSR").click()
        aro.page.get_by_role("heading", name="Certificate issued").wait_for()
        aro.shot(tmp_path, "2-issued")
        with aro.page.expect_download() as info:
            aro.page.locator("#download-pem").click()
        pem = tmp_path / "device.pem"
        info.value.save_as(str(pem))
        with aro.page.expect_download() as info:
            aro.page.locator("#download-der").click()
        der = tmp_path / "device.der"
        info.value.save_as(str(der))
        aro.close()
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    assert cert.public_bytes(Encoding.DER) == der.read_bytes()
    result = subprocess.run(["openssl", "verify", "-CAfile", str(home.settings.home / "root.pem"),
                             "-untrusted", str(home.settings.home / "device-ca.pem"), str(pem)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and ": OK" in result.stdout, result.stderr


def test_the_same_upload_on_spoti_is_refused_with_the_rule_shown(home: Home, browser: object,
                                                                  tmp_path: Path) -> None:
    app_id = register(home)
    assert app_id is not None
    approve_device(home, app_id)
    csr_file = tmp_path / "meter.csr"
    csr_file.write_bytes(x509.load_der_x509_csr(make_device_csr(bytes.fromhex("00db123456789001"), Usage.DS))
                         .public_bytes(Encoding.PEM))
    aro_p12 = aro_credential(home, PASSPHRASE, ARO, tmp_path)
    with live_smki(home, PASSPHRASE) as server:
        aro = Session(browser, server, Route.SPOTI, aro_p12, width=390)  # phone width
        aro.goto("/portal/aro/csr")
        assert aro.page.get_by_role("link", name="Device CSR batches").count() == 0
        aro.page.get_by_label("CSR file").set_input_files(str(csr_file))
        aro.page.get_by_role("button", name="Submit CSR").click()
        rule = aro.page.locator('[data-rule="channel.device-via-gateway"]')
        rule.wait_for()
        text = rule.inner_text()
        assert "channel.device-via-gateway" in text
        assert "MP074 (SEC November 2019 Release)" in text and "DCC Gateway Connection" in text
        assert aro.page.get_by_role("heading", name="Refused by the Registration Authority rules").is_visible()
        # nothing overflows sideways at phone width
        assert aro.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        aro.shot(tmp_path, "3-spoti-refused-phone")
        assert aro.goto("/portal/aro/batches") == 403  # the Device pages are refused on SPOTI, naming the rule
        assert aro.page.locator('[data-rule="channel.spoti-organisation-access"]').count() == 1
        aro.close()
    assert not home.store.find_certificates(CertificateQuery(device_id=bytes.fromhex("00db123456789001")))


def test_zip_batch_progress_reaches_100_and_the_response_has_the_dcc_layout(home: Home, browser: object,
                                                                           tmp_path: Path) -> None:
    app_id = register(home)
    assert app_id is not None
    approve_device(home, app_id)
    files = [(f"meter-{n:02d}.csr", base64.b64encode(
        make_device_csr((0x00DB000000000200 + n // 2).to_bytes(8, "big"), Usage.DS if n % 2 == 0 else Usage.KA)))
        for n in range(24)]
    files.append(("zz-bad.csr", b"MIIB this is not a CSR"))
    upload = tmp_path / "round-7.zip"
    upload.write_bytes(write_portal_zip(files))
    aro_p12 = aro_credential(home, PASSPHRASE, ARO, tmp_path)
    with live_smki(home, PASSPHRASE) as server:
        aro = Session(browser, server, Route.GATEWAY, aro_p12)
        aro.goto("/portal/aro/batches")
        aro.page.get_by_label("ZIP of Device CSRs").set_input_files(str(upload))
        aro.page.get_by_role("button", name="Upload batch").click()
        aro.page.locator("#percent").wait_for()
        # the page's CSP forbids eval, so wait with a locator assertion rather than wait_for_function
        sync_api.expect(aro.page.locator("#percent")).to_have_text("100%", timeout=20_000)
        aro.page.locator("#download-link").wait_for(state="visible")
        assert aro.page.locator("#status").inner_text() == "COMPLETED"
        assert "success: 24" in aro.page.locator("#counts").inner_text()
        aro.shot(tmp_path, "4-batch-complete")
        with aro.page.expect_download() as info:
            aro.page.locator("#download-link").click()
        result = tmp_path / "result.zip"
        info.value.save_as(str(result))
        assert any(u.endswith("/status") for u in aro.urls)  # the page polled the JSON status
        aro.close()
    with zipfile.ZipFile(result) as outer:
        assert sorted(outer.namelist()) == ["round-7-response.txt", "round-7-response.zip"]
        assert outer.read("round-7-response.txt").decode().startswith(RECORD_HEADER + "\r\n")
        with zipfile.ZipFile(BytesIO(outer.read("round-7-response.zip"))) as inner:
            assert sorted(inner.namelist()) == [f"meter-{n:02d}.crt" for n in range(24)]
    response = read_response_zip(result.read_bytes(), "round-7")
    assert [(line.file_name, line.status) for line in response.lines][-1] == ("zz-bad.csr", "error")
    assert response.lines[-1].error_code.startswith("CR:")
    root = home.settings.home / "root.pem"
    device_ca = home.settings.home / "device-ca.pem"
    pems = []
    for name, der in sorted(response.certificates.items())[:2]:
        path = tmp_path / f"{name}.pem"
        path.write_bytes(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM))
        pems.append(str(path))
    assert shutil.which("openssl")
    check = subprocess.run(["openssl", "verify", "-CAfile", str(root), "-untrusted", str(device_ca), *pems],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_the_api_docs_page_renders_with_no_csp_violation(home: Home, browser: object, tmp_path: Path) -> None:
    """Swagger UI at /api/v1/docs (issue 12): its icons are data: SVGs in its stylesheet; the page's
    CSP admits them (and nothing from another host), so the console shows no violation at all."""
    register(home)
    aro_p12 = aro_credential(home, PASSPHRASE, ARO, tmp_path)
    with live_smki(home, PASSPHRASE) as server:
        for route in (Route.GATEWAY, Route.SPOTI):
            reader = Session(browser, server, route, aro_p12)
            console: list[str] = []
            reader.page.on("console", lambda message, seen=console: seen.append(f"{message.type}: {message.text}"))
            reader.page.add_init_script("window.cspViolations = []; document.addEventListener("
                                        "'securitypolicyviolation', e => window.cspViolations.push("
                                        "[e.violatedDirective, e.blockedURI, e.sourceFile, e.lineNumber]))")
            assert reader.goto("/api/v1/docs") == 200
            operation = reader.page.locator(".opblock-summary").first
            operation.wait_for()  # the OpenAPI 3.1 document rendered: its operations are listed
            operation.click()  # expanded: the arrows, the lock and the copy icons are all drawn
            reader.page.locator(".opblock-body").first.wait_for()
            reader.page.wait_for_load_state("networkidle")
            reader.shot(tmp_path, f"5-api-docs-{route.value}")
            assert reader.page.evaluate("window.cspViolations") == []
            violations = [line for line in console if "Content Security Policy" in line]
            assert not violations, violations
            assert not [line for line in console if line.startswith("error")], console
            reader.close()  # every request went to the listener itself
