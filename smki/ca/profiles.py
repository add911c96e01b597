"""The SMKI certificate profiles (spec §4): Root, Organisation CA, Device CA, Organisation, Device.

Every certificate is defined here once, with ``cryptography``'s builders, so the profile reads as a
list of fields. ``cryptography`` cannot sign with an external key (an HSM, or any ``Signer``), so
each certificate is first built and signed with a throw-away key, which gives us the exact
TBSCertificate bytes; the real issuer key then signs those bytes through its ``Signer`` and
``smki.ca.der.signed_structure`` wraps them. The fast Device factory
(``smki.ca.device_template``) derives its template from :func:`device_tbs`, so it cannot drift
from the profile written here.

Organisation and CA certificates are linted with pkilint *before* the real signature: a
certificate the linter refuses never carries a CA signature.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time, timedelta
from functools import cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier

from smki.ca.der import signed_structure
from smki.ca.keyid import key_identifier, key_identifier_from_point
from smki.ca.lint import pkilint_findings, refuse_on_errors
from smki.ca.oids import HARDWARE_MODULE_NAME, X500_UNIQUE_IDENTIFIER
from smki.ca.requests import DeviceRequest, OrganisationRequest
from smki.config import Settings
from smki.domain import CertKind, RemotePartyRole, Usage
from smki.errors import SmkiError
from smki.keys.base import Signer
from smki.settings_model import MAX_COMMON_NAME, PRINTABLE_STRING

#: Device Certificates have no defined expiry (spec §4.1); RFC 5280 §4.1.2.5 spells that
#: 99991231235959Z, and ``cryptography`` encodes years >= 2050 as GeneralizedTime.
DEVICE_NOT_AFTER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)

#: DER SubjectPublicKeyInfo of a P-256 key up to (excluding) its 65-byte uncompressed point:
#: SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (66 octets, 0 unused bits) }.
P256_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")

SERIAL_OCTETS = 16
# MAX_COMMON_NAME (X.520's ub-common-name) and PrintableString's characters: the settings check a
# CA name with the same two, so config check refuses what the key ceremony would.


@cache
def throwaway_key() -> ec.EllipticCurvePrivateKey:
    """A per-process P-256 key used only to make ``cryptography`` emit TBS bytes; never trusted."""
    return ec.generate_private_key(ec.SECP256R1())


def random_serial() -> int:
    """A random positive serial whose DER INTEGER content is exactly 16 octets.

    We draw 127 random bits (top bit of the first octet clear, so DER needs no leading zero octet
    and the value is positive) and redraw in the 1-in-128 case that the first octet is zero (which
    DER would drop, leaving 15 octets). The first octet is therefore uniform in 0x01..0x7F and the
    serial carries just under 127 bits of entropy: fixed length matches the references (16-octet
    serials) and keeps the Device template's lengths constant.
    """
    while True:
        # ``secrets.randbits(127)``, as ``SystemRandom`` computes it, without its two Python calls
        # (once per Device Certificate): 16 octets from the OS, less their last bit.
        value = int.from_bytes(os.urandom(SERIAL_OCTETS), "big") >> 1
        if value >> (8 * (SERIAL_OCTETS - 1)):
            return value


def normalise_time(now: datetime) -> datetime:
    """``now`` in UTC to the second (naive means UTC, as in ``cryptography``): what certificates hold."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).replace(microsecond=0)


def _anniversary(start: date, years: int) -> date:
    """``start`` plus ``years``; 29 February falls on 1 March in a non-leap year."""
    try:
        return start.replace(year=start.year + years)
    except ValueError:
        return date(start.year + years, 3, 1)


def day_validity(now: datetime, years: int, cap: datetime | None = None) -> tuple[datetime, datetime]:
    """notBefore = ``now``'s date 00:00:00Z; notAfter = 23:59:59Z the day before the anniversary.

    The reference Organisation Certificates run 2015-10-30 00:00:00Z → 2025-10-29 23:59:59Z
    (spec §4.2). ``cap`` (the issuer's notAfter) keeps a certificate from outliving its issuer.
    """
    if years < 1:
        raise SmkiError("ca.bad-validity", f"a validity period must be at least one year, got {years}")
    start = normalise_time(now).date()
    not_before = datetime.combine(start, time(0, 0, 0), tzinfo=UTC)
    last_day = _anniversary(start, years) - timedelta(days=1)
    not_after = datetime.combine(last_day, time(23, 59, 59), tzinfo=UTC)
    if cap is not None and not_after > cap:
        not_after = cap
    return not_before, not_after


def _check_serial(serial: int) -> int:
    if not 0 < serial < 1 << 159:
        raise SmkiError("ca.bad-serial", "a certificate serial must be positive and at most 20 octets")
    return serial


def _name_attribute(oid: ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    """A PrintableString, as the DCC's CA names are (spec §7.5); other text is refused, not re-typed."""
    if not value or len(value) > MAX_COMMON_NAME:
        raise SmkiError("ca.bad-name", f"a CA name must be 1 to {MAX_COMMON_NAME} characters, got {value!r}")
    if not PRINTABLE_STRING.fullmatch(value):
        raise SmkiError("ca.bad-name", f"a CA name must be PrintableString text (spec §7.5), got {value!r}")
    return x509.NameAttribute(oid, value, _ASN1Type.PrintableString)


def root_name(settings: Settings) -> x509.Name:
    """``OU=00, CN=<root_name>``: the root role (spec §4.3)."""
    return x509.Name(
        [
            _name_attribute(NameOID.ORGANIZATIONAL_UNIT_NAME, RemotePartyRole.ROOT.ou),
            _name_attribute(NameOID.COMMON_NAME, settings.root_name),
        ]
    )


def subordinate_name(kind: CertKind, settings: Settings) -> x509.Name:
    """Organisation CA ``OU=07, CN=<name>``; Device CA ``CN=<name>`` (as the references' issuers)."""
    if kind is CertKind.ORGANISATION_CA:
        return x509.Name(
            [
                _name_attribute(NameOID.ORGANIZATIONAL_UNIT_NAME, RemotePartyRole.ISSUING_AUTHORITY.ou),
                _name_attribute(NameOID.COMMON_NAME, settings.organisation_ca_name),
            ]
        )
    if kind is CertKind.DEVICE_CA:
        return x509.Name([_name_attribute(NameOID.COMMON_NAME, settings.device_ca_name)])
    raise SmkiError("ca.bad-kind", f"{kind!s} is not a subordinate CA kind")


def organisation_name(request: OrganisationRequest) -> x509.Name:
    """Optional CN (UTF8String), OU = role as two hex digits (UTF8String), x500UniqueIdentifier."""
    if len(request.entity_id) != 8:
        raise SmkiError("ca.bad-entity-id", f"an Entity Identifier is 8 octets, got {len(request.entity_id)}")
    attributes: list[x509.NameAttribute[str | bytes]] = []
    if request.common_name is not None:
        if not request.common_name or len(request.common_name) > MAX_COMMON_NAME:
            raise SmkiError("ca.bad-common-name", f"a commonName must be 1 to {MAX_COMMON_NAME} characters")
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, request.common_name, _ASN1Type.UTF8String))
    attributes.append(
        x509.NameAttribute(
            NameOID.ORGANIZATIONAL_UNIT_NAME, RemotePartyRole(request.role).ou, _ASN1Type.UTF8String
        )
    )
    # cryptography takes a BitString attribute's value as the raw BIT STRING content, so the
    # leading octet is the count of unused bits: 0, the Entity Identifier being whole octets.
    uid = b"\x00" + request.entity_id
    attributes.append(x509.NameAttribute(X500_UNIQUE_IDENTIFIER, uid, _ASN1Type.BitString))
    return x509.Name(attributes)


def end_entity_key_usage(usage: Usage) -> x509.KeyUsage:
    """Exactly one of digitalSignature or keyAgreement (spec §4.1, §4.2); CSRs request the same value."""
    usage = Usage(usage)
    return x509.KeyUsage(
        digital_signature=usage is Usage.DS,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=usage is Usage.KA,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _policies(*oids: str) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(ObjectIdentifier(oid), None) for oid in oids])


def issuer_key_identifier(issuer: x509.Certificate) -> bytes:
    """The issuer's SKI (what an AKI must match); method 2 of its key if the SKI is absent."""
    try:
        return issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return key_identifier(_p256(issuer.public_key()))


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """``[0] keyIdentifier`` only (spec §4): no issuer name/serial."""
    return x509.AuthorityKeyIdentifier(issuer_key_identifier(issuer), None, None)


def hardware_module_name(hw_type_oid: str, device_id: bytes) -> bytes:
    """DER RFC 4108 HardwareModuleName { hwType, hwSerialNum = the Device's EUI-64 }."""
    from pyasn1.codec.der import encoder
    from pyasn1.type import univ

    value = _hardware_module_name_type()()
    value["hwType"] = univ.ObjectIdentifier(hw_type_oid)
    value["hwSerialNum"] = univ.OctetString(device_id)
    return bytes(encoder.encode(value))


@cache
def _hardware_module_name_type() -> type:
    """RFC 4108 §5's ``HardwareModuleName ::= SEQUENCE { hwType OBJECT IDENTIFIER, hwSerialNum
    OCTET STRING }``, declared here with pyasn1 rather than imported from ``pyasn1_alt_modules``:
    its rfc4108 module pulls in all of CMS (~50 ms), and every signing worker builds its Device
    Certificate template with this at start-up. ``tests/ca/test_profiles.py`` checks that both
    declarations encode alike."""
    from pyasn1.type import namedtype, univ

    class HardwareModuleName(univ.Sequence):  # type: ignore[misc]
        componentType = namedtype.NamedTypes(  # noqa: N815  # the name pyasn1 looks for
            namedtype.NamedType("hwType", univ.ObjectIdentifier()),
            namedtype.NamedType("hwSerialNum", univ.OctetString()),
        )

    return HardwareModuleName


def _p256(key: object) -> ec.EllipticCurvePublicKey:
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SmkiError("ca.bad-key", "SMKI keys must be EC P-256 (spec §4)")
    return key


def _public_key(spki_der: bytes, point: bytes) -> ec.EllipticCurvePublicKey:
    """The request's key, insisting on the canonical P-256 SPKI (named curve, uncompressed point)."""
    if len(point) != 65 or point[0] != 0x04 or spki_der != P256_SPKI_PREFIX + point:
        raise SmkiError("ca.bad-key", "the public key must be P-256 with an uncompressed point")
    try:
        return _p256(load_der_public_key(spki_der))
    except ValueError as exc:
        raise SmkiError("ca.bad-key", "the public key is not a valid P-256 point") from exc


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def require_signer(signer: Signer, key: ec.EllipticCurvePublicKey, what: str) -> None:
    """Refuse to sign with a key that is not the issuer's: the result would never verify."""
    if _point(signer.public_key()) != _point(key):
        raise SmkiError("ca.wrong-signer", f"key {signer.label!r} is not the key of the {what}")


def require_issuer_valid(issuer: x509.Certificate, now: datetime, what: str) -> None:
    """Refuse to issue at a time outside the issuer's own validity: nothing could chain to it."""
    moment = normalise_time(now)
    if not issuer.not_valid_before_utc <= moment <= issuer.not_valid_after_utc:
        raise SmkiError(
            "ca.issuer-not-valid",
            f"the {what} certificate is not valid at {moment:%Y-%m-%d %H:%M:%SZ}"
            f" ({issuer.not_valid_before_utc:%Y-%m-%d} to {issuer.not_valid_after_utc:%Y-%m-%d})",
        )


def _draft(builder: x509.CertificateBuilder) -> x509.Certificate:
    return builder.sign(throwaway_key(), hashes.SHA256())


def _sign_tbs(
    tbs: bytes, signer: Signer, issuer_key: ec.EllipticCurvePublicKey | None, what: str
) -> x509.Certificate:
    """Sign ``tbs`` with ``signer``, wrap, and check the signature against the issuer key (None: self)."""
    cert = x509.load_der_x509_certificate(signed_structure(tbs, signer.sign(tbs)))
    key = issuer_key if issuer_key is not None else _p256(cert.public_key())
    try:
        key.verify(cert.signature, tbs, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise SmkiError("ca.bad-signature", f"the {what} signature does not verify") from exc
    return cert


def _lint_and_finish(
    builder: x509.CertificateBuilder, signer: Signer, issuer_key: ec.EllipticCurvePublicKey | None, what: str
) -> x509.Certificate:
    draft = _draft(builder)
    refuse_on_errors(pkilint_findings(draft.public_bytes(Encoding.DER)), what)
    return _sign_tbs(draft.tbs_certificate_bytes, signer, issuer_key, what)


def _root_builder(
    key: ec.EllipticCurvePublicKey, settings: Settings, serial: int, validity: tuple[datetime, datetime]
) -> x509.CertificateBuilder:
    name = root_name(settings)
    return (
        x509.CertificateBuilder()
        .serial_number(serial)
        .issuer_name(name)
        .subject_name(name)
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .public_key(key)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_policies(settings.organisation_policy_oid, settings.device_policy_oid), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(key_identifier(key)), critical=False)
    )


def build_root(
    signer: Signer, settings: Settings, now: datetime, *, serial: int | None = None
) -> x509.Certificate:
    """The self-signed Root (spec §4.3): ``OU=00``, CA without path length, both policies, no AKI.

    pkilint allows the missing AKI only on a certificate that really is self-signed (it checks the
    signature), so the pre-signature lint runs on a stand-in: the same profile with the throw-away
    key as subject and signer. Only the key, SKI and signature differ from the real Root.
    """
    key = _p256(signer.public_key())
    serial = _check_serial(random_serial() if serial is None else serial)
    validity = day_validity(now, settings.root_validity_years)
    stand_in = _draft(_root_builder(throwaway_key().public_key(), settings, serial, validity))
    refuse_on_errors(pkilint_findings(stand_in.public_bytes(Encoding.DER)), "Root certificate")
    draft = _draft(_root_builder(key, settings, serial, validity))
    return _sign_tbs(draft.tbs_certificate_bytes, signer, None, "Root certificate")


def build_subordinate_ca(
    kind: CertKind,
    subject_key: ec.EllipticCurvePublicKey,
    root: x509.Certificate,
    root_signer: Signer,
    settings: Settings,
    now: datetime,
    *,
    serial: int | None = None,
) -> x509.Certificate:
    """An Organisation CA or Device CA issued by the Root: pathLen 0, the one policy it issues under.

    The extensions come in the DCC test Organisation CA's order (spec §7.5): keyUsage,
    basicConstraints, certificatePolicies, subjectKeyIdentifier, authorityKeyIdentifier; the Root
    uses the same order without the AKI.
    """
    kind = CertKind(kind)
    name = subordinate_name(kind, settings)
    policy = (
        settings.organisation_policy_oid if kind is CertKind.ORGANISATION_CA else settings.device_policy_oid
    )
    key = _p256(subject_key)
    root_key = _p256(root.public_key())
    require_signer(root_signer, root_key, "Root")
    require_issuer_valid(root, now, "Root")
    not_before, not_after = day_validity(now, settings.ca_validity_years, root.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .serial_number(_check_serial(random_serial() if serial is None else serial))
        .issuer_name(root.subject)
        .subject_name(name)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .public_key(key)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_policies(policy), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(key_identifier(key)), critical=False)
        .add_extension(_aki(root), critical=False)
    )
    return _lint_and_finish(builder, root_signer, root_key, f"{kind.value} certificate")


def build_organisation(
    request: OrganisationRequest,
    issuer: x509.Certificate,
    signer: Signer,
    settings: Settings,
    now: datetime,
    *,
    serial: int | None = None,
) -> x509.Certificate:
    """An Organisation Certificate (spec §4.2; references ``Z1-supplier-ds``, ``90b3d51f30010000-ka``)."""
    key = _public_key(request.spki_der, request.point)
    issuer_key = _p256(issuer.public_key())
    require_signer(signer, issuer_key, "Organisation CA")
    require_issuer_valid(issuer, now, "Organisation CA")
    not_before, not_after = day_validity(
        now, settings.organisation_validity_years, issuer.not_valid_after_utc
    )
    builder = (
        x509.CertificateBuilder()
        .serial_number(_check_serial(random_serial() if serial is None else serial))
        .issuer_name(issuer.subject)
        .subject_name(organisation_name(request))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .public_key(key)
        .add_extension(end_entity_key_usage(request.usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(key_identifier_from_point(request.point)), critical=False)
        .add_extension(_policies(settings.organisation_policy_oid), critical=True)
        .add_extension(_aki(issuer), critical=False)
    )
    return _lint_and_finish(builder, signer, issuer_key, "Organisation Certificate")


def _check_device(request: DeviceRequest) -> ec.EllipticCurvePublicKey:
    if len(request.device_id) != 8:
        raise SmkiError("ca.bad-device-id", f"a Device ID is an 8-octet EUI-64, got {len(request.device_id)}")
    Usage(request.usage)
    return _public_key(request.spki_der, request.point)


def device_tbs(
    request: DeviceRequest, issuer: x509.Certificate, settings: Settings, now: datetime, serial: int
) -> bytes:
    """The TBSCertificate of a Device Certificate (spec §4.1; references ``00db123456789001-*``).

    Issuer = the Device CA; notBefore = issue time, notAfter 99991231235959Z; empty subject;
    keyUsage (critical), SKI, subjectAltName (critical) hardwareModuleName { the CSR's hwType (spec
    §7.4), EUI-64 },
    certificatePolicies (critical) the Device CP, AKI. No basicConstraints.
    """
    key = _check_device(request)
    san = x509.SubjectAlternativeName(
        [x509.OtherName(HARDWARE_MODULE_NAME, hardware_module_name(request.hw_type, request.device_id))]
    )
    builder = (
        x509.CertificateBuilder()
        .serial_number(_check_serial(serial))
        .issuer_name(issuer.subject)
        .subject_name(x509.Name([]))
        .not_valid_before(normalise_time(now))
        .not_valid_after(DEVICE_NOT_AFTER)
        .public_key(key)
        .add_extension(end_entity_key_usage(request.usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(key_identifier_from_point(request.point)), critical=False)
        .add_extension(san, critical=True)
        .add_extension(_policies(settings.device_policy_oid), critical=True)
        .add_extension(_aki(issuer), critical=False)
    )
    return _draft(builder).tbs_certificate_bytes


def build_device(
    request: DeviceRequest,
    issuer: x509.Certificate,
    signer: Signer,
    settings: Settings,
    now: datetime,
    *,
    serial: int | None = None,
) -> x509.Certificate:
    """A Device Certificate the slow, obviously-right way; ``DeviceCertificateFactory`` must match it."""
    issuer_key = _p256(issuer.public_key())
    require_signer(signer, issuer_key, "Device CA")
    require_issuer_valid(issuer, now, "Device CA")
    tbs = device_tbs(request, issuer, settings, now, random_serial() if serial is None else serial)
    return _sign_tbs(tbs, signer, issuer_key, "Device Certificate")
