"""What goes into and comes out of the store: frozen dataclasses, never ORM objects.

Keeping ORM instances inside ``smki.store`` means no caller can lazy-load after the session is gone
or mutate a row behind the store's back; writes happen only through ``Transaction`` methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from smki.domain import CertKind, CertStatus, Usage
from smki.errors import SmkiError

SERIAL_HEX_LEN = 32


def normalise_serial(serial: str | int) -> str:
    """A certificate serial as stored: 32 lower-case hex digits (accepts int, any-case hex, ``0x``)."""
    if isinstance(serial, bool):
        raise SmkiError("store.bad-serial", "a serial is a positive integer or hex text")
    if isinstance(serial, int):
        value = serial
    else:
        text = serial.strip().lower().removeprefix("0x").replace(":", "")
        try:
            value = int(text, 16) if text else -1
        except ValueError:
            value = -1
        if value < 0 or not all(c in "0123456789abcdef" for c in text):
            shown = serial if len(serial) <= 40 else serial[:40] + "…"
            raise SmkiError("store.bad-serial", f"{shown!r} is not a hexadecimal certificate serial")
    if value <= 0 or value.bit_length() > 4 * SERIAL_HEX_LEN:
        raise SmkiError("store.bad-serial", "a certificate serial is a positive integer of at most 128 bits")
    return f"{value:0{SERIAL_HEX_LEN}x}"


@dataclass(frozen=True)
class NewCertificate:
    """A certificate to record. ``serial`` must already be normalised (see ``normalise_serial``).

    ``device_id`` is set for Device Certificates, ``entity_id`` for Organisation Certificates (both 8
    raw EUI-64 octets); ``issuer_key_id`` is the hex of the issuer's Subject Key Identifier (a root
    names its own).
    """

    serial: str
    kind: CertKind
    issuer_key_id: str
    status: CertStatus
    not_before: datetime
    not_after: datetime
    der: bytes
    issued_at: datetime
    usage: Usage | None = None
    device_id: bytes | None = None
    entity_id: bytes | None = None
    role: int | None = None
    batch_id: str | None = None

    def as_params(self) -> dict[str, Any]:
        """Bind parameters for a bulk insert (hot path: no validation beyond the database's)."""
        return {
            "serial": self.serial,
            "kind": self.kind.value,
            "usage": None if self.usage is None else self.usage.value,
            "issuer_key_id": self.issuer_key_id,
            "device_id": self.device_id,
            "entity_id": self.entity_id,
            "role": self.role,
            "status": self.status.value,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "der": self.der,
            "issued_at": self.issued_at,
            "batch_id": self.batch_id,
            "changed_at": self.issued_at,
        }


@dataclass(frozen=True)
class CertificateRecord:
    """A stored certificate. ``id`` orders by insertion and is the keyset-pagination cursor."""

    id: int
    serial: str
    kind: CertKind
    usage: Usage | None
    issuer_key_id: str
    device_id: bytes | None
    entity_id: bytes | None
    role: int | None
    status: CertStatus
    not_before: datetime
    not_after: datetime
    der: bytes
    issued_at: datetime
    batch_id: str | None
    revoked_at: datetime | None
    revocation_reason: int | None
    changed_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> CertificateRecord:
        m = row._mapping
        usage = m["usage"]
        return cls(
            id=m["id"],
            serial=m["serial"],
            kind=CertKind(m["kind"]),
            usage=None if usage is None else Usage(usage),
            issuer_key_id=m["issuer_key_id"],
            device_id=None if m["device_id"] is None else bytes(m["device_id"]),
            entity_id=None if m["entity_id"] is None else bytes(m["entity_id"]),
            role=m["role"],
            status=CertStatus(m["status"]),
            not_before=m["not_before"],
            not_after=m["not_after"],
            der=bytes(m["der"]),
            issued_at=m["issued_at"],
            batch_id=m["batch_id"],
            revoked_at=m["revoked_at"],
            revocation_reason=m["revocation_reason"],
            changed_at=m["changed_at"],
        )


@dataclass(frozen=True)
class SingleDeviceReads:
    """What issuing one Device CSR reads before it signs (``Store.single_device_reads``)."""

    #: Device Certificates ever issued for the Device ID (the 100-per-Device limit; 0 for a new one).
    device_certificates: int
    #: The newest in-use Device CA certificate's DER (the issuer), None before ``smki ca init``.
    device_ca_der: bytes | None
    #: The serial the CSR's key is certified under, None when the key is new (the duplicate-key screen).
    key_certified_as: str | None


@dataclass(frozen=True)
class RevocationListRecord:
    """A published CRL or ARL."""

    kind: str  # "CRL" or "ARL"
    number: int
    this_update: datetime
    next_update: datetime
    entries: int
    der: bytes


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    """One line of a CRL/ARL: which certificate, when, why (RFC 5280 reason code, None = unspecified)."""

    serial: int
    revoked_at: datetime
    reason: int | None
