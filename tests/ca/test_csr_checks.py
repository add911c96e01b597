"""Device and Organisation CSR checks (spec §4.4): one hostile CSR per refusal, and what is accepted.

Hostile CSRs are built for real: with ``cryptography`` where it can express them, otherwise by
assembling the CertificationRequestInfo bytes and signing them with the CSR's own key, so each
case fails for the reason it names and not for a broken signature.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smki.ca.csr import ERROR_CODES, MAX_CSR_BYTES, check_device_csr, check_organisation_csr
from smki.ca.der import der_tlv
from smki.ca.devcsr import (
    hardware_module_name,
    make_device_csr,
    make_organisation_csr,
    oid_der,
    organisation_subject,
)
from smki.ca.oids import HARDWARE_MODULE_NAME, X500_UNIQUE_IDENTIFIER
from smki.ca.profiles import end_entity_key_usage as key_usage
from smki.domain import RemotePartyRole, Usage
from smki.errors import SmkiError

DEVICE = bytes.fromhex("00db123456789001")
ENTITY = bytes.fromhex("90b3d51f30010000")
KEY = ec.generate_private_key(ec.SECP256R1())
SPKI = KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
POINT = KEY.public_key().public_bytes(
    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
)
EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
CHALLENGE_PASSWORD = "1.2.840.113549.1.9.7"
ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")

# ---------------------------------------------------------------------------------------------
# Builders


def sign(tbs: bytes, key: ec.EllipticCurvePrivateKey = KEY, algorithm: bytes = ECDSA_SHA256) -> bytes:
    """``SEQUENCE { tbs, algorithm, BIT STRING ecdsa-sha256(tbs) }`` signed with ``key``."""
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return der_tlv(0x30, tbs + algorithm + der_tlv(0x03, b"\x00" + signature))


def ext(oid: str, value: bytes, critical: bool = True) -> bytes:
    """One DER ``Extension``."""
    flag = b"\x01\x01\xff" if critical else b""
    return der_tlv(0x30, oid_der(oid) + flag + der_tlv(0x04, value))


def attribute(oid: str, *values: bytes) -> bytes:
    return der_tlv(0x30, oid_der(oid) + der_tlv(0x31, b"".join(values)))


def ext_request(*extensions: bytes) -> bytes:
    return attribute(EXTENSION_REQUEST, der_tlv(0x30, b"".join(extensions)))


def cri(
    subject: bytes = b"\x30\x00",
    spki: bytes = SPKI,
    attributes: tuple[bytes, ...] = (),
    version: bytes = b"\x02\x01\x00",
) -> bytes:
    return der_tlv(0x30, version + subject + spki + der_tlv(0xA0, b"".join(attributes)))


KU_DS = x509.KeyUsage(True, False, False, False, False, False, False, False, False).public_bytes()
KU_KA = key_usage(Usage.KA).public_bytes()


def san(*names: x509.GeneralName) -> bytes:
    return x509.SubjectAlternativeName(list(names)).public_bytes()


def hwmn_raw(value: bytes) -> x509.OtherName:
    return x509.OtherName(HARDWARE_MODULE_NAME, value)


SAN_OK = san(hardware_module_name(DEVICE))
E_KU_DS = ext("2.5.29.15", KU_DS)
E_SAN = ext("2.5.29.17", SAN_OK)


def device(*extensions: bytes, subject: bytes = b"\x30\x00", spki: bytes = SPKI) -> bytes:
    """A Device CSR with exactly these requested extensions, validly self-signed."""
    attrs = (ext_request(*extensions),) if extensions else ()
    return sign(cri(subject, spki, attrs))


def builder_csr(
    subject: x509.Name,
    extensions: list[tuple[x509.ExtensionType, bool]],
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = KEY,
    algorithm: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None = None,
) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    if algorithm is None and not isinstance(key, ed25519.Ed25519PrivateKey):
        algorithm = hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


def name(*attributes: tuple[x509.ObjectIdentifier, str | bytes]) -> x509.Name:
    out: list[x509.NameAttribute[str] | x509.NameAttribute[bytes]] = []
    for oid, value in attributes:
        if isinstance(value, bytes):
            out.append(x509.NameAttribute(oid, value, _type=_ASN1Type.BitString))
        else:
            out.append(x509.NameAttribute(oid, value))
    return x509.Name(out)


CN = NameOID.COMMON_NAME
OU = NameOID.ORGANIZATIONAL_UNIT_NAME
UID = X500_UNIQUE_IDENTIFIER
UID_OK = b"\x00" + ENTITY


def org(*attributes: tuple[x509.ObjectIdentifier, str | bytes], usage: x509.KeyUsage | None = None) -> bytes:
    ku = usage or key_usage(Usage.DS)
    return builder_csr(name(*attributes), [(ku, True)])


def compressed_spki() -> bytes:
    point = KEY.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    return bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200") + point


def p256_spki(point: bytes) -> bytes:
    algid = bytes.fromhex("301306072a8648ce3d020106082a8648ce3d030107")
    return der_tlv(0x30, algid + der_tlv(0x03, b"\x00" + point))


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def tampered_device_id() -> bytes:
    good = make_device_csr(DEVICE, Usage.DS, KEY)
    index = good.index(DEVICE)
    return good[:index] + bytes.fromhex("00db123456789002") + good[index + 8 :]


def bit_string_uid(content: bytes) -> bytes:
    """An Organisation CSR whose x500UniqueIdentifier BIT STRING content is ``content`` verbatim."""
    return org((OU, "02"), (UID, content))


def ku(*bits: bool) -> bytes:
    """keyUsage extension with the given flags (cryptography's argument order), padded with False."""
    flags = list(bits) + [False] * (9 - len(bits))
    return ext("2.5.29.15", x509.KeyUsage(*flags).public_bytes())


def device_san(*names: x509.GeneralName) -> bytes:
    """A Device CSR requesting keyUsage DS and a subjectAltName with exactly these names."""
    return device(E_KU_DS, ext("2.5.29.17", san(*names)))


def device_hwmn(value: bytes) -> bytes:
    """A Device CSR whose hardwareModuleName otherName value is ``value`` verbatim."""
    return device_san(hwmn_raw(value))


def device_with(*extensions: bytes) -> bytes:
    """A Device CSR requesting keyUsage DS, a good subjectAltName, and ``extensions``."""
    return device(E_KU_DS, E_SAN, *extensions)


def device_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return builder_csr(x509.Name([]), [(key_usage(Usage.DS), True)], key)


def explicit_curve_spki() -> bytes:
    """KEY's point under P-256 written as explicit curve parameters (openssl -param_enc explicit)."""
    private = subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-param_enc", "explicit", "-genkey", "-noout"],
        check=True,
        capture_output=True,
    ).stdout
    spki = subprocess.run(
        ["openssl", "ec", "-param_enc", "explicit", "-pubout", "-outform", "DER"],
        input=private,
        check=True,
        capture_output=True,
    ).stdout
    key = serialization.load_der_public_key(spki)
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    # SEQUENCE { AlgorithmIdentifier (explicit parameters), BIT STRING }: keep the first, use KEY's point.
    assert spki[:2] == b"\x30\x82" and spki[4:6] == b"\x30\x82"  # both lengths are 256..65535
    algid = spki[4 : 8 + int.from_bytes(spki[6:8], "big")]
    return der_tlv(0x30, algid + der_tlv(0x03, b"\x00" + POINT))


def org_key(key: rsa.RSAPrivateKey) -> bytes:
    return builder_csr(name((OU, "02"), (UID, UID_OK)), [(key_usage(Usage.DS), True)], key)


def org_with_san() -> bytes:
    dns = x509.SubjectAlternativeName([x509.DNSName("a.example")])
    return builder_csr(name((OU, "02"), (UID, UID_OK)), [(key_usage(Usage.DS), True), (dns, False)])


def org_subject(subject: x509.Name) -> bytes:
    return builder_csr(subject, [(key_usage(Usage.DS), True)])


def raw_org(*attributes: bytes) -> bytes:
    """An Organisation CSR whose subject is these DER AttributeTypeAndValues (one RDN each) + a UID."""
    rdns = [der_tlv(0x31, attribute) for attribute in attributes]
    rdns.append(der_tlv(0x31, der_tlv(0x30, oid_der("2.5.4.45") + der_tlv(0x03, UID_OK))))
    return sign(cri(der_tlv(0x30, b"".join(rdns)), attributes=(ext_request(E_KU_DS),)))


def uid(value: bytes) -> x509.NameAttribute[bytes]:
    return x509.NameAttribute(UID, value, _type=_ASN1Type.BitString)


def ext_value(extension: x509.ExtensionType) -> bytes:
    return extension.public_bytes()


# ---------------------------------------------------------------------------------------------
# One hostile CSR (or more) per refusal code

Case = tuple[str, str, Callable[[], bytes], Callable[[bytes], object]]
DEV = check_device_csr
ORG = check_organisation_csr
EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
GOOD_ATTRIBUTES = (ext_request(E_KU_DS, E_SAN),)

HOSTILE: list[Case] = [
    ("csr.malformed", "not a CSR", lambda: b"\x30\x03\x02\x01\x00", DEV),
    ("csr.malformed", "truncated", lambda: make_device_csr(DEVICE, Usage.DS)[:-5], DEV),
    ("csr.malformed", "trailing byte", lambda: make_device_csr(DEVICE, Usage.DS) + b"\x00", DEV),
    ("csr.malformed", "version 2", lambda: sign(cri(version=b"\x02\x01\x01")), DEV),
    ("csr.malformed", "empty", lambda: b"", DEV),
    ("csr.too-large", "9 kB", lambda: b"\x30\x82\x23\x24" + bytes(9000), DEV),
    ("csr.role-usage", "WAN Provider asking for KA",
     lambda: make_organisation_csr(ENTITY, RemotePartyRole.WAN_PROVIDER, Usage.KA), ORG),
    ("csr.role-usage", "the issuing-authority role 07",
     lambda: make_organisation_csr(ENTITY, RemotePartyRole.ISSUING_AUTHORITY, Usage.DS), ORG),
    ("csr.hw-type", "an hwType not configured", lambda: make_device_csr(DEVICE, Usage.DS, hw_type="1.2.3.4"), DEV),
    ("csr.too-large", "9 kB organisation", lambda: b"\x30\x82\x23\x24" + bytes(9000), ORG),
    ("csr.bad-signature", "flipped signature byte", lambda: flip(make_device_csr(DEVICE, Usage.DS), -3), DEV),
    ("csr.bad-signature", "device id edited after signing", tampered_device_id, DEV),
    (
        "csr.bad-signature",
        "signed by another key",
        lambda: sign(cri(attributes=GOOD_ATTRIBUTES), OTHER_KEY),
        DEV,
    ),
    (
        "csr.bad-signature",
        "organisation usage edited after signing",
        lambda: make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS, key=KEY).replace(
            KU_DS, KU_KA
        ),
        ORG,
    ),
    ("csr.key-not-p256", "RSA key", lambda: device_key(rsa.generate_private_key(65537, 2048)), DEV),
    ("csr.key-not-p256", "P-384 key", lambda: device_key(ec.generate_private_key(ec.SECP384R1())), DEV),
    ("csr.key-not-p256", "secp256k1 key", lambda: device_key(ec.generate_private_key(ec.SECP256K1())), DEV),
    (
        "csr.key-not-p256",
        "unknown key algorithm",
        lambda: device(
            E_KU_DS,
            E_SAN,
            spki=der_tlv(0x30, der_tlv(0x30, oid_der("1.2.3.4")) + der_tlv(0x03, b"\x00" + POINT)),
        ),
        DEV,
    ),
    ("csr.key-not-p256", "Ed25519 key", lambda: device_key(ed25519.Ed25519PrivateKey.generate()), DEV),
    (
        "csr.key-not-p256",
        "explicit curve parameters",
        lambda: device(E_KU_DS, E_SAN, spki=explicit_curve_spki()),
        DEV,
    ),
    (
        "csr.key-not-p256",
        "RSA key, organisation",
        lambda: org_key(rsa.generate_private_key(65537, 2048)),
        ORG,
    ),
    ("csr.compressed-point", "compressed SPKI", lambda: device(E_KU_DS, E_SAN, spki=compressed_spki()), DEV),
    (
        "csr.compressed-point",
        "compressed SPKI, organisation",
        lambda: sign(cri(b"\x30\x00", compressed_spki(), (ext_request(E_KU_DS),))),
        ORG,
    ),
    (
        "csr.key-invalid",
        "point off the curve",
        lambda: device(E_KU_DS, E_SAN, spki=p256_spki(flip(POINT, 40))),
        DEV,
    ),
    (
        "csr.key-invalid",
        "hybrid point",
        lambda: device(E_KU_DS, E_SAN, spki=p256_spki(b"\x06" + POINT[1:])),
        DEV,
    ),
    ("csr.key-invalid", "short point", lambda: device(E_KU_DS, E_SAN, spki=p256_spki(POINT[:64])), DEV),
    (
        "csr.signature-algorithm",
        "ecdsa-with-SHA384",
        lambda: builder_csr(x509.Name([]), [(key_usage(Usage.DS), True)], KEY, hashes.SHA384()),
        DEV,
    ),
    (
        "csr.signature-algorithm",
        "ecdsa-with-SHA512",
        lambda: builder_csr(x509.Name([]), [(key_usage(Usage.DS), True)], KEY, hashes.SHA512()),
        DEV,
    ),
    (
        "csr.malformed",
        "ecdsa-with-SHA256 with NULL parameters",
        lambda: sign(
            cri(attributes=GOOD_ATTRIBUTES), algorithm=bytes.fromhex("300c06082a8648ce3d0403020500")
        ),
        DEV,
    ),
    (
        "csr.unexpected-attribute",
        "challengePassword",
        lambda: sign(cri(attributes=(attribute(CHALLENGE_PASSWORD, der_tlv(0x0C, b"pw")), *GOOD_ATTRIBUTES))),
        DEV,
    ),
    (
        "csr.unexpected-attribute",
        "two extensionRequests",
        lambda: sign(cri(attributes=(ext_request(E_KU_DS), ext_request(E_SAN)))),
        DEV,
    ),
    (
        "csr.unexpected-attribute",
        "extensionRequest with two values",
        lambda: sign(
            cri(attributes=(attribute(EXTENSION_REQUEST, der_tlv(0x30, E_KU_DS), der_tlv(0x30, E_SAN)),))
        ),
        DEV,
    ),
    (
        "csr.unexpected-extension",
        "extendedKeyUsage",
        lambda: device_with(ext("2.5.29.37", ext_value(EKU))),
        DEV,
    ),
    (
        "csr.unexpected-extension",
        "basicConstraints cA TRUE",
        lambda: device_with(ext("2.5.29.19", ext_value(x509.BasicConstraints(True, None)))),
        DEV,
    ),
    (
        "csr.unexpected-extension",
        "private extension",
        lambda: device_with(ext("1.3.6.1.4.1.9999.1", b"\x05\x00")),
        DEV,
    ),
    ("csr.unexpected-extension", "subjectAltName on an Organisation CSR", org_with_san, ORG),
    ("csr.key-usage-ambiguous", "no keyUsage", lambda: device(E_SAN), DEV),
    ("csr.key-usage-ambiguous", "DS and KA", lambda: device(ku(True, False, False, False, True), E_SAN), DEV),
    ("csr.key-usage-ambiguous", "DS and nonRepudiation", lambda: device(ku(True, True), E_SAN), DEV),
    (
        "csr.key-usage-ambiguous",
        "KA and encipherOnly",
        lambda: device(ku(*[False] * 4, True, False, False, True), E_SAN),
        DEV,
    ),
    ("csr.key-usage-ambiguous", "keyCertSign", lambda: device(ku(*[False] * 5, True), E_SAN), DEV),
    ("csr.key-usage-ambiguous", "no usage at all", lambda: device(ku(), E_SAN), DEV),
    (
        "csr.key-usage-ambiguous",
        "organisation without keyUsage",
        lambda: builder_csr(name((OU, "02"), (UID, UID_OK)), []),
        ORG,
    ),
    (
        "csr.subject-not-empty",
        "CN on a Device CSR",
        lambda: device(E_KU_DS, E_SAN, subject=name((CN, "m")).public_bytes()),
        DEV,
    ),
    ("csr.device-id-missing", "no extensions at all", lambda: sign(cri()), DEV),
    ("csr.device-id-missing", "keyUsage but no subjectAltName", lambda: device(E_KU_DS), DEV),
    (
        "csr.device-id-missing",
        "subjectAltName with a DNS name only",
        lambda: device_san(x509.DNSName("m.example")),
        DEV,
    ),
    (
        "csr.device-id-invalid",
        "7-octet hwSerialNum",
        lambda: device_san(hardware_module_name(DEVICE[:7])),
        DEV,
    ),
    (
        "csr.device-id-invalid",
        "9-octet hwSerialNum",
        lambda: device_san(hardware_module_name(DEVICE + b"\x00")),
        DEV,
    ),
    (
        "csr.device-id-invalid",
        "two hardwareModuleNames",
        lambda: device_san(hardware_module_name(DEVICE), hardware_module_name(DEVICE[::-1])),
        DEV,
    ),
    (
        "csr.device-id-invalid",
        "hardwareModuleName and a DNS name",
        lambda: device_san(hardware_module_name(DEVICE), x509.DNSName("m.example")),
        DEV,
    ),
    (
        "csr.device-id-invalid",
        "hwSerialNum as INTEGER",
        lambda: device_hwmn(der_tlv(0x30, oid_der("1.2.3") + der_tlv(0x02, b"\x01" + DEVICE))),
        DEV,
    ),
    (
        "csr.device-id-invalid",
        "data after hwSerialNum",
        lambda: device_hwmn(der_tlv(0x30, oid_der("1.2.3") + der_tlv(0x04, DEVICE) + b"\x05\x00")),
        DEV,
    ),
    (
        "csr.device-id-invalid",
        "hwType missing",
        lambda: device_hwmn(der_tlv(0x30, der_tlv(0x04, DEVICE))),
        DEV,
    ),
    (
        "csr.device-id-invalid",
        "hwType with a padded arc",
        lambda: device_hwmn(der_tlv(0x30, bytes.fromhex("0603802a03") + der_tlv(0x04, DEVICE))),
        DEV,
    ),
    (
        "csr.subject-invalid",
        "O attribute",
        lambda: org((NameOID.ORGANIZATION_NAME, "x"), (OU, "02"), (UID, UID_OK)),
        ORG,
    ),
    (
        "csr.subject-invalid",
        "CN with a newline",
        lambda: org((CN, "Z1\nOU=02"), (OU, "02"), (UID, UID_OK)),
        ORG,
    ),
    (
        "csr.subject-invalid",
        "CN of 33 characters, 66 bytes in UTF-8",
        lambda: org_subject(
            x509.Name(
                [x509.NameAttribute(CN, "é" * 33, _validate=False), x509.NameAttribute(OU, "02"), uid(UID_OK)]
            )
        ),
        ORG,
    ),
    (  # found by the property tests: cryptography's Name raised TypeError on this
        "csr.subject-invalid",
        "CN as a BIT STRING",
        lambda: raw_org(der_tlv(0x30, oid_der("2.5.4.3") + der_tlv(0x03, b"\x00Z1"))),
        ORG,
    ),
    (
        "csr.role-invalid",
        "OU as a BMPString",
        lambda: raw_org(der_tlv(0x30, oid_der("2.5.4.11") + der_tlv(0x1E, b"\x000\x002"))),
        ORG,
    ),
    ("csr.subject-invalid", "two CNs", lambda: org((CN, "a"), (CN, "b"), (OU, "02"), (UID, UID_OK)), ORG),
    (
        "csr.subject-invalid",
        "65-character CN",
        lambda: org_subject(
            x509.Name(
                [x509.NameAttribute(CN, "x" * 65, _validate=False), x509.NameAttribute(OU, "02"), uid(UID_OK)]
            )
        ),
        ORG,
    ),
    (
        "csr.subject-invalid",
        "multi-valued RDN",
        lambda: org_subject(
            x509.Name(
                [
                    x509.RelativeDistinguishedName(
                        [x509.NameAttribute(CN, "a"), x509.NameAttribute(OU, "02")]
                    ),
                    x509.RelativeDistinguishedName([uid(UID_OK)]),
                ]
            )
        ),
        ORG,
    ),
    ("csr.role-invalid", "OU missing", lambda: org((CN, "Z1"), (UID, UID_OK)), ORG),
    ("csr.role-invalid", "OU GG", lambda: org((OU, "GG"), (UID, UID_OK)), ORG),
    ("csr.role-invalid", "OU 00 (root)", lambda: org((OU, "00"), (UID, UID_OK)), ORG),
    ("csr.role-invalid", "OU 09 (unknown role)", lambda: org((OU, "09"), (UID, UID_OK)), ORG),
    ("csr.role-invalid", "OU one digit", lambda: org((OU, "2"), (UID, UID_OK)), ORG),
    ("csr.role-invalid", "OU in decimal", lambda: org((OU, "127"), (UID, UID_OK)), ORG),
    ("csr.role-invalid", "two OUs", lambda: org((OU, "02"), (OU, "03"), (UID, UID_OK)), ORG),
    ("csr.entity-id-invalid", "UID missing", lambda: org((CN, "Z1"), (OU, "02")), ORG),
    ("csr.entity-id-invalid", "UID of 63 bits", lambda: bit_string_uid(b"\x01" + ENTITY[:7] + b"\x00"), ORG),
    ("csr.entity-id-invalid", "UID of 72 bits", lambda: bit_string_uid(b"\x00" + ENTITY + b"\x00"), ORG),
    ("csr.entity-id-invalid", "UID without the unused-bits octet", lambda: bit_string_uid(ENTITY), ORG),
    ("csr.entity-id-invalid", "UID as text", lambda: org((OU, "02"), (UID, ENTITY.hex())), ORG),
    ("csr.entity-id-invalid", "two UIDs", lambda: org((OU, "02"), (UID, UID_OK), (UID, UID_OK)), ORG),
]


BUILD_WARNING = "ignore:Attribute's length must be:UserWarning"  # the 65-character CN, on purpose


@pytest.mark.filterwarnings(BUILD_WARNING)
@pytest.mark.parametrize(
    ("code", "check", "build"),
    [pytest.param(code, check, build, id=f"{code}:{label}") for code, label, build, check in HOSTILE],
)
def test_hostile_csr_is_refused_with_its_code(
    code: str, check: Callable[[bytes], object], build: Callable[[], bytes]
) -> None:
    der = build()
    with pytest.raises(SmkiError) as raised:
        check(der)
    assert raised.value.code == code, raised.value.message
    assert "\n" not in raised.value.message and len(raised.value.message) <= 120


def test_every_error_code_has_a_hostile_example() -> None:
    assert {code for code, *_ in HOSTILE} == set(ERROR_CODES)


@pytest.mark.filterwarnings(BUILD_WARNING)
def test_hostile_cases_other_than_the_malformed_ones_are_well_formed_der() -> None:
    # Each case fails for the reason it names: the structure itself parses.
    for code, label, build, _ in HOSTILE:
        if code not in {"csr.malformed", "csr.too-large"}:
            x509.load_der_x509_csr(build())  # raises if not DER PKCS#10
        del label


def test_signature_checked_cases_really_are_validly_self_signed() -> None:
    # Cases built by hand are signed by their own key; openssl agrees (proof of possession holds).
    der = device(E_KU_DS, E_SAN, ext("2.5.29.37", b"\x30\x00"))
    assert x509.load_der_x509_csr(der).is_signature_valid


# ---------------------------------------------------------------------------------------------
# Accepted CSRs


@pytest.mark.parametrize("usage", list(Usage))
def test_device_csr_yields_id_usage_and_key(usage: Usage) -> None:
    request = check_device_csr(make_device_csr(DEVICE, usage, KEY))
    assert request.device_id == DEVICE
    assert request.usage is usage
    assert request.spki_der == SPKI
    assert request.point == POINT and len(request.point) == 65 and request.point[0] == 4


def test_device_csr_with_harmless_extensions_and_non_critical_key_usage_is_accepted() -> None:
    ski = x509.SubjectKeyIdentifier.from_public_key(KEY.public_key()).public_bytes()
    der = device(
        ext("2.5.29.19", x509.BasicConstraints(False, None).public_bytes(), critical=False),
        ext("2.5.29.15", KU_KA, critical=False),
        ext("2.5.29.14", ski, critical=False),
        ext("2.5.29.17", SAN_OK, critical=False),
    )
    request = check_device_csr(der)
    assert (request.device_id, request.usage) == (DEVICE, Usage.KA)


@pytest.mark.parametrize("hw_type", ["1.2.826.0.1.8641679.1.2.2.1", "1.2.826.0.1372.1.1.2.1"])
def test_both_dcc_hw_types_are_accepted_by_default_and_kept(hw_type: str) -> None:
    """Spec §7.4: the request (and so the certificate) carries the CSR's hwType."""
    request = check_device_csr(make_device_csr(DEVICE, Usage.DS, KEY, hw_type=hw_type))
    assert (request.device_id, request.hw_type) == (DEVICE, hw_type)
    again = check_device_csr(make_device_csr(DEVICE, Usage.KA, KEY, hw_type=hw_type))  # a known shape now
    assert again.hw_type == hw_type


def test_another_hw_type_is_refused_unless_configured() -> None:
    der = make_device_csr(DEVICE, Usage.DS, KEY, hw_type="1.3.6.1.4.1.99999.7")
    with pytest.raises(SmkiError) as caught:
        check_device_csr(der)
    assert caught.value.code == "csr.hw-type"
    assert "1.3.6.1.4.1.99999.7" in caught.value.message
    assert check_device_csr(der, ("1.3.6.1.4.1.99999.7",)).hw_type == "1.3.6.1.4.1.99999.7"


@pytest.mark.parametrize("role", [r for r in RemotePartyRole if r is not RemotePartyRole.ROOT])
@pytest.mark.parametrize("common_name", [None, "Z1"])
def test_organisation_csr_yields_entity_role_usage_and_name(
    role: RemotePartyRole, common_name: str | None
) -> None:
    der = make_organisation_csr(ENTITY, role, Usage.KA, common_name, KEY)
    request = check_organisation_csr(der, None)  # parsing only: the role/usage table is tested below
    assert (request.entity_id, request.role, request.usage, request.common_name) == (
        ENTITY,
        role,
        Usage.KA,
        common_name,
    )
    assert (request.spki_der, request.point) == (SPKI, POINT)


def test_organisation_subject_order_case_and_string_type_are_free() -> None:
    subject = x509.Name(
        [
            x509.NameAttribute(UID, UID_OK, _type=_ASN1Type.BitString),
            x509.NameAttribute(OU, "7f", _type=_ASN1Type.PrintableString),
            x509.NameAttribute(CN, "Other Party", _type=_ASN1Type.PrintableString),
        ]
    )
    request = check_organisation_csr(builder_csr(subject, [(key_usage(Usage.DS), True)]))
    assert (request.role, request.common_name, request.entity_id) == (
        RemotePartyRole.OTHER,
        "Other Party",
        ENTITY,
    )


def test_organisation_subject_matches_the_reference_certificate_encoding() -> None:
    # Reference Z1/90b3d51f30010000: OU UTF8String "02", UID BIT STRING 03 09 00 <8 octets>.
    der = organisation_subject(ENTITY, RemotePartyRole.SUPPLIER).public_bytes()
    assert bytes.fromhex("060355040b0c023032") in der
    assert bytes.fromhex("060355042d030900") + ENTITY in der


def test_device_csr_is_not_an_organisation_csr_and_vice_versa() -> None:
    with pytest.raises(SmkiError) as raised:
        check_organisation_csr(make_device_csr(DEVICE, Usage.DS, KEY))
    assert raised.value.code == "csr.unexpected-extension"
    with pytest.raises(SmkiError) as raised:
        check_device_csr(make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS, key=KEY))
    assert raised.value.code == "csr.subject-not-empty"


def test_messages_never_echo_long_input() -> None:
    with pytest.raises(SmkiError) as raised:
        check_organisation_csr(org((OU, "Z" * 500), (UID, UID_OK)))
    assert raised.value.code == "csr.role-invalid"
    assert "Z" * 41 not in raised.value.message


def test_size_limit_applies_to_der_given_directly() -> None:
    assert MAX_CSR_BYTES == 8192
    with pytest.raises(SmkiError) as raised:
        check_device_csr(b"\x30" + bytes(MAX_CSR_BYTES))
    assert raised.value.code == "csr.too-large"


# ---------------------------------------------------------------------------------------------
# Interoperability with OpenSSL


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=stdin, check=True, capture_output=True).stdout


def test_openssl_verifies_generated_csrs() -> None:
    for der in (
        make_device_csr(DEVICE, Usage.DS),
        make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.KA, "Z1"),
    ):
        out = subprocess.run(
            ["openssl", "req", "-inform", "DER", "-noout", "-verify"],
            input=der,
            capture_output=True,
            check=True,
        )
        assert b"verify OK" in out.stdout + out.stderr


def test_openssl_made_device_csr_is_accepted(tmp_path: Path) -> None:
    config = tmp_path / "device.cnf"
    config.write_text(
        "[req]\ndistinguished_name = dn\nreq_extensions = ext\nprompt = no\n[dn]\n"
        "[ext]\nkeyUsage = critical, keyAgreement\n"
        "subjectAltName = critical, otherName:1.3.6.1.5.5.7.8.4;SEQUENCE:hwmn\n"
        "[hwmn]\nhwType = OID:1.2.826.0.1.8641679.1.2.2.1\n"
        "hwSerialNum = FORMAT:HEX,OCTETSTRING:00db123456789001\n"
    )
    key = tmp_path / "key.pem"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    der = _openssl("req", "-new", "-key", str(key), "-config", str(config), "-subj", "/", "-outform", "DER")
    request = check_device_csr(der)
    assert (request.device_id, request.usage) == (DEVICE, Usage.KA)
    # and a compressed-point key from openssl is refused for that reason, not another
    compressed = tmp_path / "compressed.pem"
    _openssl("ec", "-in", str(key), "-conv_form", "compressed", "-out", str(compressed))
    der = _openssl(
        "req", "-new", "-key", str(compressed), "-config", str(config), "-subj", "/", "-outform", "DER"
    )
    with pytest.raises(SmkiError) as raised:
        check_device_csr(der)
    assert raised.value.code == "csr.compressed-point"


def test_openssl_text_uid_is_refused_with_entity_id_invalid(tmp_path: Path) -> None:
    # The common mistake: openssl -subj writes x500UniqueIdentifier as text, not a 64-bit BIT STRING.
    key = tmp_path / "key.pem"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    config = tmp_path / "org.cnf"
    config.write_text(
        "[req]\ndistinguished_name = dn\nreq_extensions = ext\nprompt = no\n[dn]\n"
        "[ext]\nkeyUsage = critical, digitalSignature\n"
    )
    der = _openssl(
        "req", "-new", "-key", str(key), "-config", str(config), "-outform", "DER",
        "-subj", "/CN=Z1/OU=02/x500UniqueIdentifier=90B3D51F30010000",
    )  # fmt: skip
    with pytest.raises(SmkiError) as raised:
        check_organisation_csr(der)
    assert raised.value.code == "csr.entity-id-invalid"


@pytest.mark.parametrize("role", [r for r in RemotePartyRole if r is not RemotePartyRole.ROOT])
@pytest.mark.parametrize("usage", list(Usage))
def test_the_role_usage_table_of_spec_7_3_is_enforced(role: RemotePartyRole, usage: Usage) -> None:
    """01, 05, 06: DS only; 02, 03, 04, 08, 7F: DS and KA (the supplier's KA includes top-up); 07 none."""
    ds_only = {RemotePartyRole.RECOVERY, RemotePartyRole.TRANSITIONAL_COS, RemotePartyRole.WAN_PROVIDER}
    allowed = role is not RemotePartyRole.ISSUING_AUTHORITY and (usage is Usage.DS or role not in ds_only)
    der = make_organisation_csr(ENTITY, role, usage, None, KEY)
    if allowed:
        assert check_organisation_csr(der).usage is usage
    else:
        with pytest.raises(SmkiError) as caught:
            check_organisation_csr(der)
        assert caught.value.code == "csr.role-usage"
        if role is RemotePartyRole.ISSUING_AUTHORITY:
            assert caught.value.message == "role 07 may have no Organisation Certificates"
        else:
            assert caught.value.message == f"role {role.ou} may have DS Organisation Certificates, not KA"
    assert check_organisation_csr(der, None).role is role  # enforce-role-usages = false


def test_the_role_usage_table_is_configurable(tmp_path: Path) -> None:
    from smki.config import load_settings

    (tmp_path / "smki.toml").write_text('[role-usages]\n"06" = ["DS", "KA"]\n')
    table = load_settings(tmp_path).role_usages
    assert table is not None
    der = make_organisation_csr(ENTITY, RemotePartyRole.WAN_PROVIDER, Usage.KA, None, KEY)
    assert check_organisation_csr(der, table).usage is Usage.KA
    (tmp_path / "smki.toml").write_text("enforce-role-usages = false\n")
    assert load_settings(tmp_path).role_usages is None


def test_hw_type_oids_are_a_configured_list_and_the_old_single_key_still_loads(tmp_path: Path) -> None:
    from smki.config import DEFAULT_HW_TYPES, Settings, load_settings, write_default_config

    assert load_settings(tmp_path).hw_type_oids == DEFAULT_HW_TYPES
    write_default_config(Settings(home=tmp_path, hw_type_oids=("1.2.3.4", "2.999")))
    assert load_settings(tmp_path).hw_type_oids == ("1.2.3.4", "2.999")
    (tmp_path / "smki.toml").write_text('hw-type-oid = "1.2.3.4"\n')  # written before spec §7.4
    assert load_settings(tmp_path).hw_type_oids == ("1.2.3.4",)
