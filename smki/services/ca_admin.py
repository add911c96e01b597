"""The key ceremony: create the Root, Organisation CA and Device CA, and record them.

Keys are generated inside the configured key backend; the three certificates are stored as
certificates of kind root / org-ca / device-ca, with one audit record each, in one transaction,
together with the first (empty) CRL and ARL (spec §4.3), so that relying parties can check
revocation (``openssl verify -crl_check_all``) from the first certificate issued. Their PEM files
are also written to the home directory so operators can hand them to ``openssl``, and the lists
to ``<home>/crl/`` as every later publication writes them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.audit import AuditEvent
from smki.config import Settings, write_default_config
from smki.domain import CertKind, CertStatus
from smki.errors import SmkiError
from smki.services.context import Home, open_home

if TYPE_CHECKING:
    from smki.store import RevocationListRecord

CA_FILES = {
    CertKind.ROOT: "root.pem",
    CertKind.ORGANISATION_CA: "organisation-ca.pem",
    CertKind.DEVICE_CA: "device-ca.pem",
}


@dataclass(frozen=True)
class CaSummary:
    kind: CertKind
    subject: str
    serial: str
    not_before: datetime
    not_after: datetime
    key_id: str
    path: Path


def initialise_ca(settings: Settings, secret: bytes, *, actor: str, now: datetime | None = None) -> list[CaSummary]:
    """Run the key ceremony for a new home. Refuses if a hierarchy already exists there.

    Atomic for the home directory: everything (``smki.toml``, the SQLite database, the key files,
    the PEM files) is built in a temporary directory beside the home and moved into place only when
    the ceremony has succeeded. A failure (a passphrase the key store refuses, a token that will not
    generate) leaves the home as it was, so no later command finds a half-built one. A database
    named by URL and keys generated in a token are outside the directory and are not undone.
    """
    # Absolute and normalised: the staging directory is named after the home and made beside it,
    # which ``.``, ``..`` or ``""`` (no name, no parent of their own) would put inside the home itself.
    final = Path(os.path.abspath(settings.home))
    if final.exists() and not final.is_dir():
        raise SmkiError("home.not-a-directory", f"{settings.home} is a file, not a directory: give a home directory")
    if final == final.parent:
        raise SmkiError("home.bad-path", f"{settings.home} is the file system's root: give a directory for the home")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.init-", dir=final.parent))
    try:
        if final.is_dir():
            shutil.copytree(final, staging, dirs_exist_ok=True)
        summaries = _initialise_in(replace(settings, home=staging), secret, actor=actor, now=now, shown=final)
        _move_into_place(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [replace(s, path=final / s.path.name) for s in summaries]


def _move_into_place(staging: Path, final: Path) -> None:
    """A new (or empty) home is one rename; into an existing one, each new entry is renamed in."""
    if not final.exists() or (final.is_dir() and not any(final.iterdir())):
        if final.exists():
            final.rmdir()
        os.replace(staging, final)
        return
    for entry in staging.iterdir():
        target = final / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)


def _initialise_in(settings: Settings, secret: bytes, *, actor: str, now: datetime | None,
                   shown: Path) -> list[CaSummary]:
    from smki.ca.hierarchy import create_hierarchy
    from smki.services.revocation import first_lists, write_list_files

    settings.home.mkdir(parents=True, exist_ok=True)
    if not settings.config_path.exists():
        write_default_config(settings)
    home = open_home(settings.home, secret, new_store=True, create=True, given_database_url=settings.database_url)
    home = replace(home, settings=settings)
    try:
        if home.store.ca_certificate(CertKind.ROOT) is not None:
            holder = shown if settings.uses_default_database else "its database"
            raise SmkiError("ca.exists", f"{holder} already holds a CA hierarchy")
        moment = (now or datetime.now(UTC)).replace(microsecond=0)
        hierarchy = create_hierarchy(home.backend(), settings, moment)
        certificates = {
            CertKind.ROOT: hierarchy.root,
            CertKind.ORGANISATION_CA: hierarchy.organisation_ca,
            CertKind.DEVICE_CA: hierarchy.device_ca,
        }
        lists = first_lists(home, certificates, moment)
        _record_ceremony(home, certificates, lists, actor)
        for record in lists:
            write_list_files(home, record)
        for kind, cert in certificates.items():
            path = settings.home / CA_FILES[kind]
            path.write_bytes(cert.public_bytes(Encoding.PEM))
        return describe_ca(home)
    finally:
        home.close()


def _record_ceremony(home: Home, certificates: dict[CertKind, x509.Certificate],
                     lists: list[RevocationListRecord], actor: str) -> None:
    from smki.ca.keyid import key_identifier
    from smki.services.revocation import record_list
    from smki.store import NewCertificate

    root_key_id = key_identifier(certificates[CertKind.ROOT].public_key()).hex()  # type: ignore[arg-type]
    rows = []
    events = []
    for kind, cert in certificates.items():
        serial = f"{cert.serial_number:032x}"
        rows.append(NewCertificate(
            serial=serial, kind=kind, usage=None, issuer_key_id=root_key_id, device_id=None,
            entity_id=None, role=None, status=CertStatus.IN_USE,
            not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
            der=cert.public_bytes(Encoding.DER), issued_at=cert.not_valid_before_utc, batch_id=None,
        ))
        events.append(AuditEvent(actor, "ca.created", serial, {
            "kind": kind.value, "subject": cert.subject.rfc4514_string(),
        }))
    from smki.services.key_register import record_ca_keys

    with home.store.transaction() as tx:
        tx.add_certificates(rows)
        record_ca_keys(tx, [(row.der, row.serial) for row in rows])
        tx.append_audit(events)
        for record in lists:
            record_list(tx, record, actor)


def describe_ca(home: Home) -> list[CaSummary]:
    """The current CA certificates of a home, for ``smki ca show``."""
    from smki.ca.keyid import key_identifier

    summaries = []
    for kind in CA_FILES:
        cert = home.ca_certificate(kind)
        summaries.append(CaSummary(
            kind=kind,
            subject=cert.subject.rfc4514_string(),
            serial=f"{cert.serial_number:032x}",
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            key_id=key_identifier(cert.public_key()).hex(),  # type: ignore[arg-type]
            path=home.settings.home / CA_FILES[kind],
        ))
    return summaries
