"""SMKI credentials: issue, revoke and check the certificates AROs and systems use on the listeners.

Every request to a listener is authenticated by a TLS client certificate from smki's credentials
CA (key ``credentials-ca`` in the configured key backend, created on first use). The TLS layer
verifies the chain and validity; :func:`resolve_identity` then checks, on *every* request, that the
credential is one smki issued and has not revoked, and that the ARO it names (or, for an
Authorised System, the ARO answerable for it) is still active in the register, so a suspension
takes effect on the next request. Issuance and revocation are audited.

The private key of a client credential is generated here and handed out once, inside a password
protected PKCS#12; smki keeps only the certificate.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from smki.audit import AuditEvent
from smki.ca.credentials import (
    CREDENTIALS_CA_LABEL,
    build_client_certificate,
    build_credentials_ca,
    build_server_certificate,
    credential_identity,
)
from smki.domain import Route
from smki.errors import NotFound, SmkiError
from smki.services.context import Home
from smki.services.requests import Requester
from smki.store.credentials import CredentialRecord, credential_reads, credential_writes
from smki.store.records import normalise_serial
from smki.store.registry import AroRecord, PartyRecord

CA_FILE = "credentials-ca.pem"
SERVER_DIR = "api"
#: Reissue the server certificate when it has less than this left.
SERVER_RENEW = timedelta(days=30)


@dataclass(frozen=True)
class SystemRequester(Requester):
    """An Authorised System acting for a Party under an ARO's authority: audited under its own name."""

    system: str = ""

    @property
    def actor(self) -> str:
        return f"system:{self.system}/aro:{self.aro_id}@{self.party_id}"

    def audit_details(self) -> dict[str, Any]:
        return {**super().audit_details(), "system": self.system}


@dataclass(frozen=True)
class ApiIdentity:
    """Who sent a request, as established from its verified client certificate and the register."""

    kind: str  # aro, system, staff
    name: str
    party_id: str | None
    aro_id: str | None
    serial: str
    #: The ARO's record as read to resolve this identity (this request's read, never cached).
    aro: AroRecord | None = field(default=None, compare=False, repr=False)
    #: The Party's record, read with the credential (this request's read, never cached).
    party: PartyRecord | None = field(default=None, compare=False, repr=False)

    def requester(self, route: Route) -> Requester:
        """The subscriber on whose behalf RA rules are applied (AROs and systems only)."""
        if self.kind == "staff" or self.party_id is None or self.aro_id is None:
            raise SmkiError("credential.not-a-subscriber", "RA staff credentials cannot request certificates")
        if self.kind == "system":
            return SystemRequester(self.party_id, self.aro_id, route, aro=self.aro, party=self.party,
                                   system=self.name)
        return Requester(self.party_id, self.aro_id, route, aro=self.aro, party=self.party)

    @property
    def actor(self) -> str:
        if self.kind == "staff":
            return f"staff:{self.name}"
        if self.kind == "system":
            return f"system:{self.name}/aro:{self.aro_id}@{self.party_id}"
        return f"aro:{self.aro_id}@{self.party_id}"


@dataclass(frozen=True)
class IssuedCredential:
    serial: str
    certificate: x509.Certificate
    pkcs12: bytes


@dataclass(frozen=True)
class ServerFiles:
    """What a listener's TLS context loads: its certificate and key, and the CA clients must chain to."""

    certificate: Path
    key: Path
    ca: Path


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _audit(home: Home, actor: str, action: str, subject: str, details: dict[str, Any], write: Any) -> None:
    with home.store.transaction() as tx:
        write(credential_writes(tx))
        tx.append_audit([AuditEvent(actor, action, subject, details)])


def _record(cert: x509.Certificate, kind: str, name: str, party_id: str | None, aro_id: str | None) -> CredentialRecord:
    return CredentialRecord(
        serial=f"{cert.serial_number:032x}", kind=kind, name=name, party_id=party_id, aro_id=aro_id,
        status="active", not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        issued_at=_now(), revoked_at=None, der=cert.public_bytes(Encoding.DER),
    )


def credentials_ca(home: Home) -> x509.Certificate | None:
    """The active credentials CA certificate, if one was created."""
    found = credential_reads(home.store).credentials("ca", status="active")
    return x509.load_der_x509_certificate(found[-1].der) if found else None


def ensure_credentials_ca(home: Home, *, actor: str) -> x509.Certificate:
    """The credentials CA certificate, creating its key and certificate on first use (audited)."""
    existing = credentials_ca(home)
    if existing is not None:
        _write_ca_file(home, existing)
        return existing
    backend = home.backend()
    if not backend.exists(CREDENTIALS_CA_LABEL):
        backend.generate(CREDENTIALS_CA_LABEL)
    cert = build_credentials_ca(backend.signer(CREDENTIALS_CA_LABEL), _now())
    record = _record(cert, "ca", "credentials-ca", None, None)
    _audit(home, actor, "credential.ca-created", record.serial,
           {"kind": "ca", "subject": cert.subject.rfc4514_string()}, lambda w: w.add_credential(record))
    _write_ca_file(home, cert)
    return cert


def _write_ca_file(home: Home, cert: x509.Certificate) -> Path:
    path = home.settings.home / CA_FILE
    data = cert.public_bytes(Encoding.PEM)
    if not path.exists() or path.read_bytes() != data:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


def _refuse_revoked_aro(aro_id: str, status: str) -> None:
    """A revoked ARO is revoked for good (README: "revoked is final"): no credential is ever issued
    for it, nor for a system answerable to it."""
    if status == "revoked":
        raise SmkiError("credential.aro-revoked", f"ARO {aro_id!r} is revoked; no credential is issued for it")


def _check_subject(home: Home, kind: str, name: str, party_id: str | None,
                   aro_id: str | None) -> tuple[str | None, str | None]:
    """(party, answerable ARO) for a new credential, checked against the register."""
    registry = home.store.registry
    if kind == "aro":
        aro = registry.aro(name)
        if aro is None:
            raise NotFound("credential.aro-not-found", f"no ARO {name!r}")
        if party_id is not None and party_id != aro.party_id:
            raise SmkiError("credential.party-mismatch", f"ARO {name!r} acts for {aro.party_id}, not {party_id}")
        _refuse_revoked_aro(aro.aro_id, aro.status)
        return aro.party_id, aro.aro_id
    if kind == "system":
        if party_id is None or registry.party(party_id) is None:
            raise NotFound("credential.party-not-found", f"no Party {party_id!r}")
        if aro_id is None:
            raise SmkiError("credential.aro-missing", "a system credential names the ARO answerable for it (--aro)")
        aro = registry.aro(aro_id)
        if aro is None or aro.party_id != party_id:
            raise NotFound("credential.aro-not-found", f"no ARO {aro_id!r} acting for {party_id}")
        _refuse_revoked_aro(aro.aro_id, aro.status)
        return party_id, aro_id
    if kind == "staff":
        if registry.staff(name) is None:
            raise NotFound("credential.staff-not-found", f"no RA staff member {name!r}")
        return None, None
    raise SmkiError("credential.bad-kind", "a credential is for an ARO, a system or RA staff")


def issue_credential(home: Home, kind: str, name: str, *, password: bytes, actor: str, party_id: str | None = None,
                     aro_id: str | None = None, lifetime: timedelta | None = None) -> IssuedCredential:
    """Issue a client credential as PKCS#12 (key + certificate + CA) protected by ``password``."""
    if len(password) < 8:
        raise SmkiError("credential.weak-password", "the PKCS#12 password must be at least 8 characters")
    party, aro = _check_subject(home, kind, name, party_id, aro_id)
    issuer = ensure_credentials_ca(home, actor=actor)
    signer = home.backend().signer(CREDENTIALS_CA_LABEL)
    key = ec.generate_private_key(ec.SECP256R1())
    extra = {} if lifetime is None else {"lifetime": lifetime}
    cert = build_client_certificate(issuer, signer, key.public_key(), kind=kind, name=name, party_id=party,
                                    now=_now(), **extra)
    record = _record(cert, kind, name, party, aro)
    details: dict[str, Any] = {"kind": kind, "name": name, "party": party,
                               "not_after": cert.not_valid_after_utc.isoformat()}
    if kind == "system":
        details["aro"] = aro
    _audit(home, actor, "credential.issued", record.serial, details, lambda w: w.add_credential(record))
    p12 = pkcs12.serialize_key_and_certificates(
        name.encode(), key, cert, [issuer], serialization.BestAvailableEncryption(password))
    return IssuedCredential(record.serial, cert, p12)


def revoke_credential(home: Home, serial: str, *, actor: str, reason: str = "") -> CredentialRecord:
    """Revoke a credential: every listener refuses it from the next request on (audited)."""
    wanted = normalise_serial(serial)
    record = credential_reads(home.store).credential(wanted)
    if record is None:
        raise NotFound("credential.not-found", f"no credential with serial {serial}")
    if record.status != "active":
        raise SmkiError("credential.already-revoked", f"credential {wanted} is already revoked")
    now = _now()
    _audit(home, actor, "credential.revoked", wanted,
           {"kind": record.kind, "name": record.name, "party": record.party_id, "reason": reason},
           lambda w: w.revoke_credential(wanted, now))
    found = credential_reads(home.store).credential(wanted)
    assert found is not None
    return found


def list_credentials(home: Home, kind: str | None = None) -> list[CredentialRecord]:
    return credential_reads(home.store).credentials(kind)


def ensure_server_credential(home: Home, hosts: list[str], *, actor: str) -> ServerFiles:
    """The listeners' server certificate and key under ``<home>/api/``, (re)issued when needed.

    Reissued when missing, revoked, close to expiry, not from the current credentials CA, or not
    naming every host the listeners serve.
    """
    issuer = ensure_credentials_ca(home, actor=actor)
    directory = home.settings.home / SERVER_DIR
    cert_path, key_path = directory / "server.pem", directory / "server-key.pem"
    ca_path = _write_ca_file(home, issuer)
    if cert_path.exists() and key_path.exists() and _server_cert_usable(home, cert_path, issuer, hosts):
        return ServerFiles(cert_path, key_path, ca_path)
    signer = home.backend().signer(CREDENTIALS_CA_LABEL)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build_server_certificate(issuer, signer, key.public_key(), hosts=hosts, now=_now())
    record = _record(cert, "server", ",".join(hosts)[:64], None, None)
    _audit(home, actor, "credential.issued", record.serial, {"kind": "server", "hosts": hosts},
           lambda w: w.add_credential(record))
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM) + issuer.public_bytes(Encoding.PEM))
    return ServerFiles(cert_path, key_path, ca_path)


def _server_cert_usable(home: Home, path: Path, issuer: x509.Certificate, hosts: list[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        return False
    record = credential_reads(home.store).credential(f"{cert.serial_number:032x}")
    if record is None or record.status != "active" or cert.issuer != issuer.subject:
        return False
    if cert.not_valid_after_utc - _now() < SERVER_RENEW:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    named = {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
    return set(hosts) <= named


def resolve_identity(home: Home, certificate_der: bytes, *, now: datetime | None = None) -> ApiIdentity:
    """The identity of a chain-verified client certificate, refused unless still good in smki's records.

    Codes: ``credential.unknown`` (not issued by this smki), ``credential.revoked``,
    ``credential.expired``, ``credential.aro-suspended`` (the ARO, or the ARO answerable for a system,
    is not active), ``credential.staff-inactive``.
    """
    try:
        serial = _claimed_serial(certificate_der)
    except ValueError as exc:
        raise SmkiError("credential.unrecognised", "the client certificate cannot be read") from exc
    with home.store.held_reads():  # the credential and its ARO (or staff member): one connection
        return _resolve(home, serial, certificate_der, now)


@functools.lru_cache(maxsize=256)
def _claimed_serial(certificate_der: bytes) -> str:
    """The serial a client certificate claims, parsed once per certificate per process (every
    request of a keep-alive client presents the same one). Only the parse is remembered: whether
    the credential is still good is read from the store on every request. A certificate that is
    not a credential raises each time (exceptions are not cached)."""
    return credential_identity(x509.load_der_x509_certificate(certificate_der)).serial


def _resolve(home: Home, serial: str, certificate_der: bytes, now: datetime | None) -> ApiIdentity:
    record, aro, party = credential_reads(home.store).credential_aro_and_party(serial)  # one read, every request
    if record is None or record.der != certificate_der or record.kind not in ("aro", "system", "staff"):
        raise SmkiError("credential.unknown", "the client certificate is not a credential this smki issued")
    if record.status != "active":
        raise SmkiError("credential.revoked", f"credential {record.serial} has been revoked")
    moment = now or datetime.now(UTC)
    if not record.not_before <= moment <= record.not_after:
        raise SmkiError("credential.expired", f"credential {record.serial} is not valid now")
    registry = home.store.registry
    if record.kind == "staff":
        staff = registry.staff(record.name)
        if staff is None or not staff.active:
            raise SmkiError("credential.staff-inactive", f"RA staff member {record.name} is not active")
        return ApiIdentity("staff", record.name, None, None, record.serial)
    aro_id = record.aro_id or record.name
    if aro is None or aro.party_id != record.party_id:
        raise SmkiError("credential.aro-suspended", f"ARO {aro_id} no longer acts for {record.party_id}")
    if aro.status != "active":
        raise SmkiError("credential.aro-suspended", f"ARO {aro_id} is {aro.status}")
    return ApiIdentity(record.kind, record.name, record.party_id, aro_id, record.serial, aro, party)
