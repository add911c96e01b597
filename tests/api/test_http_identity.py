"""Mutual TLS and identity on the listeners, over real sockets: who may connect, and who they are."""

from __future__ import annotations

import ssl
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from smki.domain import Route
from smki.ra import AroStatus
from smki.services import registry as reg
from smki.services.context import Home
from smki.services.credentials import revoke_credential
from tests.api.conftest import ARO, OPERATOR, PARTY, ClientFiles, LiveListeners, credential


def test_an_aro_is_identified_from_its_certificate_and_the_route_from_the_listener(
        live: LiveListeners, aro: ClientFiles) -> None:
    for route in (Route.GATEWAY, Route.SPOTI):
        # A header claiming another route or identity changes nothing.
        response = live.client(aro, route).get("/api/v1/whoami", headers={"X-Route": "gateway", "X-Party": "X"})
        assert response.status_code == 200, response.text
        assert response.json() == {"kind": "aro", "name": ARO, "party_id": PARTY, "aro_id": ARO,
                                   "route": route.value, "credential_serial": aro.serial}


def test_no_client_certificate_fails_the_handshake_or_the_request(live: LiveListeners) -> None:
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        response = live.client(None).get("/api/v1/whoami")
        # TLS 1.3 may finish the handshake before the server's refusal arrives; then the read fails.
        pytest.fail(f"request without a client certificate was answered {response.status_code}")


def _foreign_client(tmp_path: Path) -> tuple[Path, Path]:
    """A client certificate from a CA smki does not know, with the same subject as a real ARO."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SMKI Credentials CA")])
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, ARO), x509.NameAttribute(NameOID.ORGANIZATION_NAME, PARTY),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "aro")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
        .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "foreign.pem", tmp_path / "foreign-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_a_certificate_from_another_ca_is_refused_by_tls(live: LiveListeners, tmp_path: Path) -> None:
    cert_path, key_path = _foreign_client(tmp_path)
    context = ssl.create_default_context(cafile=str(live.ca))
    context.load_cert_chain(str(cert_path), str(key_path))
    with httpx.Client(base_url=live.url(Route.GATEWAY), verify=context) as client, \
            pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        client.get("/api/v1/whoami")
    # openssl s_client agrees: the server rejects the certificate (alert), no HTTP is exchanged.
    host, port = live.url(Route.GATEWAY).removeprefix("https://").split(":")
    done = subprocess.run(["openssl", "s_client", "-connect", f"{host}:{port}", "-cert", str(cert_path),
                           "-key", str(key_path), "-CAfile", str(live.ca), "-ign_eof"],
                          input=b"GET /api/v1/whoami HTTP/1.0\r\n\r\n", capture_output=True, timeout=30)
    assert b"HTTP/1.1 200" not in done.stdout
    assert b"alert" in done.stderr.lower() or done.returncode != 0


def test_a_revoked_credential_is_refused_on_its_next_request(live: LiveListeners, home: Home,
                                                              aro: ClientFiles) -> None:
    client = live.client(aro)
    assert client.get("/api/v1/whoami").status_code == 200
    revoke_credential(home, aro.serial, actor="operator:test", reason="laptop lost")
    response = client.get("/api/v1/whoami")  # same keep-alive connection: checked per request
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "credential.revoked"
    assert [r.action for r in home.store.audit_rows_for(aro.serial)] == ["credential.issued", "credential.revoked"]


def test_a_suspended_aro_is_refused_and_reinstated(live: LiveListeners, home: Home, aro: ClientFiles) -> None:
    client = live.client(aro, Route.SPOTI)
    reg.set_aro_status(home, ARO, AroStatus.SUSPENDED, staff_id=OPERATOR, reason="investigation")
    response = client.get("/api/v1/whoami")
    assert response.status_code == 403
    assert response.json()["error"] == {"code": "credential.aro-suspended", "message": f"ARO {ARO} is suspended",
                                        "rules": [], "request_id": response.headers["x-request-id"]}


def test_an_expired_credential_is_refused(live: LiveListeners, home: Home, tmp_path: Path) -> None:
    from smki.services.credentials import resolve_identity

    files = credential(home, tmp_path, "aro", ARO)
    der = x509.load_pem_x509_certificate(files.cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    later = datetime.now(UTC) + timedelta(days=400)
    identity = resolve_identity(home, der)
    requester = identity.requester(Route.GATEWAY)  # it carries the ARO record this resolution read
    assert requester.aro is not None and requester.aro == home.store.registry.aro(ARO)
    with pytest.raises(Exception) as caught:
        resolve_identity(home, der, now=later)
    assert getattr(caught.value, "code", "") == "credential.expired"
    # Over TLS, the handshake itself refuses a certificate past notAfter: issue one that is.
    from smki.services.credentials import issue_credential
    from tests.api.conftest import P12_PASSWORD, unpack_p12

    short = issue_credential(home, "aro", ARO, password=P12_PASSWORD, actor="t", lifetime=timedelta(minutes=1))
    expired = unpack_p12(short.pkcs12, tmp_path / "short", "short", short.serial)
    # notBefore is backdated 5 minutes, so a 1-minute lifetime is already over.
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        live.client(expired).get("/api/v1/whoami")


def test_an_aro_s_or_system_s_credential_is_resolved_in_one_statement(home: Home, tmp_path: Path) -> None:
    """Every request resolves its client's credential: the credential, the ARO it acts as and its
    Party are read together (on PostgreSQL each statement is a round trip), and suspending the ARO still
    refuses the very next resolution."""
    from sqlalchemy import event

    from smki.services.credentials import resolve_identity

    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    own = credential(home, tmp_path, "aro", ARO)
    system = credential(home, tmp_path / "s", "system", "meter-ops-2", party_id=PARTY, aro_id=ARO)
    ders = [x509.load_pem_x509_certificate(f.cert.read_bytes()).public_bytes(serialization.Encoding.DER)
            for f in (own, system)]
    event.listen(home.store.engine, "before_cursor_execute", count)
    try:
        for der in ders:
            statements.clear()
            identity = resolve_identity(home, der)
            assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1, statements
            assert (identity.aro_id, identity.party_id) == (ARO, PARTY)
            assert identity.aro == home.store.registry.aro(ARO)
            assert identity.party == home.store.registry.party(PARTY)
            assert identity.requester(Route.GATEWAY).party_read() == identity.party
    finally:
        event.remove(home.store.engine, "before_cursor_execute", count)
    reg.set_aro_status(home, ARO, AroStatus.SUSPENDED, staff_id=OPERATOR, reason="investigation")
    for der in ders:
        with pytest.raises(Exception) as caught:
            resolve_identity(home, der)
        assert getattr(caught.value, "code", "") == "credential.aro-suspended"


def test_a_system_credential_acts_for_its_party_under_its_aro(live: LiveListeners, home: Home,
                                                               tmp_path: Path) -> None:
    system = credential(home, tmp_path, "system", "meter-ops-1", party_id=PARTY, aro_id=ARO)
    body = live.client(system).get("/api/v1/whoami").json()
    assert body["kind"] == "system" and body["party_id"] == PARTY and body["aro_id"] == ARO
    reg.set_aro_status(home, ARO, AroStatus.SUSPENDED, staff_id=OPERATOR, reason="left")
    assert live.client(system).get("/api/v1/whoami").json()["error"]["code"] == "credential.aro-suspended"


def test_credentials_are_checked_against_the_register_when_issued(home: Home, tmp_path: Path) -> None:
    from smki.errors import SmkiError

    with pytest.raises(SmkiError) as caught:
        credential(home, tmp_path, "aro", "nobody")
    assert caught.value.code == "credential.aro-not-found"
    with pytest.raises(SmkiError) as caught:
        credential(home, tmp_path, "system", "s1", party_id="SUPP2", aro_id=ARO)
    assert caught.value.code == "credential.aro-not-found"


def test_the_portal_is_served_on_the_listeners_with_the_certificate_identity(
        live: LiveListeners, home: Home, aro: ClientFiles, tmp_path: Path) -> None:
    page = live.client(aro, Route.SPOTI).get("/portal/aro")
    assert page.status_code == 200 and PARTY in page.text
    staff = credential(home, tmp_path, "staff", OPERATOR)
    assert live.client(staff).get("/portal/staff").status_code == 200
    assert live.client(staff).get("/portal/aro").status_code == 403  # staff are not AROs
    refused = live.client(staff).post("/api/v1/device-certificates", json={"csr": "AAAA"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "credential.not-a-subscriber"


def test_a_deactivated_staff_member_s_credential_is_refused_until_reactivated(home: Home) -> None:
    """``smki staff deactivate``: a departed staff member's Portal credential stops working with it."""
    from smki.services.credentials import issue_credential, resolve_identity
    from smki.services.staff import set_staff_active
    from tests.api.conftest import P12_PASSWORD

    issued = issue_credential(home, "staff", OPERATOR, password=P12_PASSWORD, actor="t")
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    assert resolve_identity(home, der).name == OPERATOR
    set_staff_active(home, OPERATOR, False, actor="admin")
    with pytest.raises(Exception) as caught:
        resolve_identity(home, der)
    assert getattr(caught.value, "code", "") == "credential.staff-inactive"
    set_staff_active(home, OPERATOR, True, actor="admin")
    assert resolve_identity(home, der).name == OPERATOR

