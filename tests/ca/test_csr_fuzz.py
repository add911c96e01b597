"""Property tests: whatever the bytes, the CSR checks answer with a result or an SmkiError, never a
leaked exception; valid CSRs round-trip their Device ID / Entity Identifier, role and usage."""

from __future__ import annotations

import base64
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.ca.csr import ERROR_CODES, check_device_csr, check_organisation_csr, decode_csr_text
from smki.ca.der import der_tlv
from smki.ca.devcsr import (
    device_csr_stream,
    make_device_csr,
    make_organisation_csr,
    oid_der,
    organisation_subject,
)
from smki.ca.oids import X500_UNIQUE_IDENTIFIER as UID
from smki.ca.profiles import end_entity_key_usage as key_usage
from smki.domain import RemotePartyRole, Usage
from smki.errors import SmkiError
from tests.ca.conftest import ANY_HW_TYPE

KEY = ec.generate_private_key(ec.SECP256R1())
DEVICE_DER = make_device_csr(bytes.fromhex("00db123456789001"), Usage.DS, KEY)
ORG_DER = make_organisation_csr(
    bytes.fromhex("90b3d51f30010000"), RemotePartyRole.SUPPLIER, Usage.KA, "Z1", KEY
)
SEEDS = [DEVICE_DER, ORG_DER]
CHECKS: list[Callable[[bytes], object]] = [check_device_csr, check_organisation_csr]

OU = NameOID.ORGANIZATIONAL_UNIT_NAME
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_smki_errors(data: bytes) -> None:
    """Run every entry point on ``data``; anything but success or a documented SmkiError fails."""
    for check in CHECKS:
        try:
            check(data)
        except SmkiError as error:
            assert error.code in ERROR_CODES, error.code
            assert "\n" not in error.message
    try:
        der = decode_csr_text(data)
    except SmkiError as error:
        assert error.code in ERROR_CODES
        return
    for check in CHECKS:
        try:
            check(der)
        except SmkiError as error:
            assert error.code in ERROR_CODES


@FAST
@given(st.binary(max_size=600))
def test_arbitrary_bytes_only_raise_smki_errors(data: bytes) -> None:
    _only_smki_errors(data)


@FAST
@given(st.binary(max_size=400).map(lambda b: b"\x30" + bytes([min(len(b), 127)]) + b))
def test_arbitrary_der_looking_bytes_only_raise_smki_errors(data: bytes) -> None:
    _only_smki_errors(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid CSR with a few bytes replaced, inserted, deleted, or a slice cut out."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "xor-bit"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "replace" and data:
            data[position] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[position : position + draw(st.integers(1, 8))]
        elif kind == "truncate":
            data = data[:position]
        elif data:
            data[position] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@FAST
@given(mutated())
def test_mutated_csrs_only_raise_smki_errors(data: bytes) -> None:
    _only_smki_errors(data)
    _only_smki_errors(base64.b64encode(data))


@FAST
@given(mutated())
def test_a_mutated_csr_never_passes_with_a_different_identity(data: bytes) -> None:
    # Proof of possession: any change to the signed bytes is caught, so no mutation can move a
    # CSR to another Device or Entity; the only mutations that pass leave the identity as it was.
    for check in CHECKS:
        try:
            request = check(data)
        except SmkiError:
            continue
        identity = getattr(request, "device_id", None) or getattr(request, "entity_id", None)
        assert identity in (bytes.fromhex("00db123456789001"), bytes.fromhex("90b3d51f30010000"))


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=8, max_size=8), st.sampled_from(list(Usage)))
def test_valid_device_csrs_round_trip(device_id: bytes, usage: Usage) -> None:
    der = make_device_csr(device_id, usage, KEY)
    request = check_device_csr(decode_csr_text(base64.b64encode(der)))
    assert (request.device_id, request.usage) == (device_id, usage)


@settings(max_examples=40, deadline=None)
@given(
    st.binary(min_size=8, max_size=8),
    st.sampled_from([r for r in RemotePartyRole if r is not RemotePartyRole.ROOT]),
    st.sampled_from(list(Usage)),
    st.none()
    | st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=64).filter(
        lambda text: len(text.encode()) <= 64
    ),
)
def test_valid_organisation_csrs_round_trip(
    entity_id: bytes, role: RemotePartyRole, usage: Usage, common_name: str | None
) -> None:
    der = make_organisation_csr(entity_id, role, usage, common_name, KEY)
    request = check_organisation_csr(decode_csr_text(der), None)  # the role/usage table: test_csr_checks
    assert (request.entity_id, request.role, request.usage, request.common_name) == (
        entity_id,
        role,
        usage,
        common_name,
    )


def test_device_csr_stream_yields_ds_and_ka_for_consecutive_devices() -> None:
    stream = list(device_csr_stream(5, first_device=0x00DB1234000000FF, keys=2))
    assert [(d.hex(), u) for d, u, _ in stream] == [
        ("00db1234000000ff", Usage.DS),
        ("00db1234000000ff", Usage.KA),
        ("00db123400000100", Usage.DS),
        ("00db123400000100", Usage.KA),
        ("00db123400000101", Usage.DS),
    ]
    points = set()
    for device_id, usage, der in stream:
        request = check_device_csr(der)
        assert (request.device_id, request.usage) == (device_id, usage)
        points.add(request.point)
    assert len(points) == 2  # keys=2: two keys, round-robin


def test_device_csr_stream_uses_a_fresh_key_per_csr_by_default() -> None:
    points = {check_device_csr(der).point for _, _, der in device_csr_stream(4)}
    assert len(points) == 4


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(min_size=1, max_size=4), st.text("0123456789abcdefABCDEFG", min_size=2, max_size=2)))
def test_ou_is_accepted_exactly_when_it_is_a_requestable_role_in_two_hex_digits(ou: str) -> None:
    entity = [a for a in organisation_subject(bytes(8), RemotePartyRole.SUPPLIER) if a.oid == UID]
    subject = x509.Name([x509.NameAttribute(OU, ou, _type=_ASN1Type.UTF8String), *entity])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    builder = builder.add_extension(key_usage(Usage.DS), critical=True)
    der = builder.sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    requestable = {role.ou for role in RemotePartyRole if role is not RemotePartyRole.ROOT}
    try:
        request = check_organisation_csr(der, None)
    except SmkiError as error:
        assert error.code == "csr.role-invalid"
        assert ou.upper() not in requestable or len(ou) != 2
    else:
        assert ou.upper() in requestable and request.role.ou == ou.upper()


# Validly self-signed CSRs with hostile content: these get past proof of possession, so they
# exercise the extension, SAN and subject parsing that mutations of a signed CSR rarely reach.
# The strategies mix well-formed values (to get deep) with arbitrary bytes (to break things).

_SPKI = KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
_HWMN = "1.3.6.1.5.5.7.8.4"
_KU_VALUES = [key_usage(usage).public_bytes() for usage in Usage] + [
    bytes.fromhex(h) for h in ("03020000", "0303078000", "03020388", "030207c0", "03020001", "0301")
]


def _tlv(
    tags: list[int], body: st.SearchStrategy[bytes] = st.binary(max_size=12)
) -> st.SearchStrategy[bytes]:
    return st.builds(der_tlv, st.sampled_from(tags), body)


_HWMN_VALUES = st.one_of(
    st.builds(
        lambda hw_type, serial: der_tlv(0x30, oid_der(hw_type) + der_tlv(0x04, serial)),
        st.sampled_from(["1.2.826.0.1.8641679.1.2.2.1", "1.2.3"]),
        st.binary(min_size=6, max_size=10),
    ),
    _tlv([0x30], st.one_of(_tlv([0x06, 0x04, 0x02]), st.binary(max_size=16))),
    st.binary(max_size=16),
)
_GENERAL_NAMES = st.one_of(
    st.builds(lambda inner: der_tlv(0xA0, oid_der(_HWMN) + der_tlv(0xA0, inner)), _HWMN_VALUES),
    st.builds(lambda inner: der_tlv(0xA0, oid_der("1.2.3.4") + der_tlv(0xA0, inner)), _HWMN_VALUES),
    _tlv([0x82, 0x81, 0x86, 0x87], st.binary(max_size=8)),
)
_EXTENSION_VALUES = {
    "2.5.29.15": st.one_of(
        st.sampled_from(_KU_VALUES), st.sampled_from(_KU_VALUES[:2]), st.binary(max_size=6)
    ),
    "2.5.29.17": st.one_of(
        st.lists(_GENERAL_NAMES, min_size=0, max_size=3).map(lambda names: der_tlv(0x30, b"".join(names))),
        _GENERAL_NAMES.map(lambda name: der_tlv(0x30, name)),
        st.binary(max_size=16),
    ),
    "2.5.29.19": st.sampled_from(
        [b"\x30\x00", bytes.fromhex("30030101ff"), bytes.fromhex("3003010100"), b"\x05\x00"]
    ),
    "2.5.29.14": st.one_of(_tlv([0x04]), st.binary(max_size=8)),
    "2.5.29.37": st.sampled_from([b"\x30\x00", der_tlv(0x30, oid_der("1.3.6.1.5.5.7.3.2"))]),
    "1.2.3.4": st.binary(max_size=8),
}


@st.composite
def hostile_extensions(draw: st.DrawFn) -> list[bytes]:
    """Up to four requested extensions, mostly with distinct OIDs (a repeat is malformed)."""
    oids = draw(st.lists(st.sampled_from(list(_EXTENSION_VALUES)), max_size=4, unique=True))
    extensions = []
    for oid in oids:
        value = draw(_EXTENSION_VALUES[oid])
        critical = draw(st.sampled_from([b"", b"\x01\x01\xff"] * 4 + [b"\x01\x01\x00"]))
        extensions.append(der_tlv(0x30, oid_der(oid) + critical + der_tlv(0x04, value)))
    if draw(st.integers(0, 20)) == 0 and extensions:
        extensions.append(extensions[0])
    return extensions


_ATTRIBUTE_VALUES = {
    "2.5.4.3": st.one_of(
        _tlv([0x0C, 0x13], st.text(max_size=70).map(str.encode)), _tlv([0x03, 0x1E, 0x16, 0x14])
    ),
    "2.5.4.11": st.one_of(
        _tlv([0x0C, 0x13], st.text("0123456789abcdefABCDEF\n", min_size=1, max_size=3).map(str.encode)),
        _tlv([0x03, 0x1E, 0x04, 0x0C]),
    ),
    "2.5.4.45": st.one_of(
        st.builds(
            lambda unused, bits: der_tlv(0x03, bytes([unused]) + bits),
            st.integers(0, 9),
            st.binary(max_size=10),
        ),
        _tlv([0x0C, 0x04, 0x13]),
    ),
    "2.5.4.10": _tlv([0x0C]),
    "1.2.3.4": _tlv([0x0C, 0x30]),
}


@st.composite
def hostile_subject(draw: st.DrawFn) -> bytes:
    rdns = []
    for _ in range(draw(st.integers(0, 4))):
        attributes = []
        for _ in range(draw(st.sampled_from([1] * 7 + [2]))):
            oid = draw(st.sampled_from([*_ATTRIBUTE_VALUES, "2.5.4.3", "2.5.4.11", "2.5.4.45"] * 2))
            attributes.append(der_tlv(0x30, oid_der(oid) + draw(_ATTRIBUTE_VALUES[oid])))
        rdns.append(der_tlv(0x31, b"".join(sorted(attributes))))
    return der_tlv(0x30, b"".join(rdns))


def self_signed(subject: bytes, extensions: list[bytes]) -> bytes:
    """A CSR for KEY with this subject and extensionRequest, validly signed by KEY."""
    attributes = b""
    if extensions:
        request = der_tlv(0x30, b"".join(extensions))
        attributes = der_tlv(0x30, oid_der("1.2.840.113549.1.9.14") + der_tlv(0x31, request))
    tbs = der_tlv(0x30, b"\x02\x01\x00" + subject + _SPKI + der_tlv(0xA0, attributes))
    signature = KEY.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return der_tlv(0x30, tbs + bytes.fromhex("300a06082a8648ce3d040302") + der_tlv(0x03, b"\x00" + signature))


@FAST
@given(st.one_of(st.just(b"\x30\x00"), hostile_subject()), hostile_extensions())
def test_self_signed_hostile_content_only_raises_smki_errors(subject: bytes, extensions: list[bytes]) -> None:
    _only_smki_errors(self_signed(subject, extensions))


_KU_DS_EXTENSION = der_tlv(0x30, oid_der("2.5.29.15") + b"\x01\x01\xff" + der_tlv(0x04, _KU_VALUES[0]))


@FAST
@given(hostile_subject())
def test_hostile_organisation_subjects_only_raise_smki_errors(subject: bytes) -> None:
    try:
        request = check_organisation_csr(self_signed(subject, [_KU_DS_EXTENSION]))
    except SmkiError as error:
        assert error.code in ERROR_CODES
    else:  # accepted: the subject really held these values
        assert b"\x03\x09\x00" + request.entity_id in subject
        assert request.role.ou.encode() in subject.upper()


@FAST
@given(_EXTENSION_VALUES["2.5.29.17"], st.booleans())
def test_hostile_device_subject_alt_names_only_raise_smki_errors(san: bytes, critical: bool) -> None:
    flag = b"\x01\x01\xff" if critical else b""
    san_extension = der_tlv(0x30, oid_der("2.5.29.17") + flag + der_tlv(0x04, san))
    try:
        request = check_device_csr(self_signed(b"\x30\x00", [_KU_DS_EXTENSION, san_extension]), ANY_HW_TYPE)
    except SmkiError as error:
        assert error.code in ERROR_CODES
    else:  # accepted: exactly one hardwareModuleName carrying these 8 octets
        assert der_tlv(0x04, request.device_id) in san and san.count(oid_der(_HWMN)) == 1
