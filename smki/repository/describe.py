"""Read the SMKI facts back out of a certificate: what a Repository record shows for it.

Used to display certificates given as files (which may not be in the store) the same way as
stored ones: kind, usage, Device ID or Entity Identifier, role, validity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from smki.domain import CertKind, Usage

_UID = x509.ObjectIdentifier("2.5.4.45")
_HW_MODULE_NAME = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.4")


@dataclass(frozen=True)
class CertificateFacts:
    serial: str
    kind: CertKind
    usage: Usage | None
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    device_id: bytes | None
    entity_id: bytes | None
    role: int | None


def _usage(cert: x509.Certificate) -> Usage | None:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if ku.key_cert_sign:
        return None
    if ku.digital_signature:
        return Usage.DS
    if ku.key_agreement:
        return Usage.KA
    return None


def _device_id(cert: x509.Certificate) -> bytes | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for name in san.get_values_for_type(x509.OtherName):
        if name.type_id == _HW_MODULE_NAME:
            value = name.value  # SEQUENCE { OID, OCTET STRING (8) }: the serial is the last 8 octets
            if len(value) >= 10 and value[-10] == 0x04 and value[-9] == 8:
                return bytes(value[-8:])
    return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def certificate_facts(cert: x509.Certificate) -> CertificateFacts:
    subject = cert.subject
    ou = [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    uid = subject.get_attributes_for_oid(_UID)
    device_id = _device_id(cert)
    if _is_ca(cert):
        if cert.subject == cert.issuer:
            kind = CertKind.ROOT
        elif ou and ou[0] == "07":
            kind = CertKind.ORGANISATION_CA
        else:
            kind = CertKind.DEVICE_CA
    elif device_id is not None:
        kind = CertKind.DEVICE
    else:
        kind = CertKind.ORGANISATION
    entity_id = None
    if uid:
        raw = uid[0].value
        # cryptography returns the BIT STRING contents with their leading unused-bits octet.
        if isinstance(raw, bytes) and len(raw) == 9 and raw[0] == 0:
            entity_id = raw[1:]
    role = None
    if ou and isinstance(ou[0], str) and len(ou[0]) == 2:
        try:
            role = int(ou[0], 16)
        except ValueError:
            role = None
    return CertificateFacts(
        serial=f"{cert.serial_number:032x}",
        kind=kind,
        usage=_usage(cert),
        subject=subject.rfc4514_string() or "(empty)",
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        device_id=device_id,
        entity_id=entity_id,
        role=role if kind in (CertKind.ORGANISATION, CertKind.ORGANISATION_CA, CertKind.ROOT) else None,
    )
