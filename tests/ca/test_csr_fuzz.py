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
from smki.ca.devcsr import (
    device_csr_stream,
    key_usage,
    make_device_csr,
    make_organisation_csr,
    organisation_subject,
)
from smki.ca.oids import X500_UNIQUE_IDENTIFIER as UID
from smki.domain import RemotePartyRole, Usage
from smki.errors import SmkiError

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
    request = check_organisation_csr(decode_csr_text(der))
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
        request = check_organisation_csr(der)
    except SmkiError as error:
        assert error.code == "csr.role-invalid"
        assert ou.upper() not in requestable or len(ou) != 2
    else:
        assert ou.upper() in requestable and request.role.ou == ou.upper()
