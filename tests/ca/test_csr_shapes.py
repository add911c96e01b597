"""Known CSR shapes in ``check_device_csr`` never change a result.

After a Device CSR passes the full checks on the plain path, its TBS is remembered as a shape with
three holes (the key's point, the Device ID, the keyUsage value); later CSRs matching it outside the
holes skip walking the DER and have only their key and signature checked. These tests learn a shape,
then feed CSRs of that shape — other keys, Device IDs and usages, and TBS bytes replaced, dropped or
inserted anywhere (re-signed, so the signature is not what refuses them), and signature parts
mangled — and check that the answer is the one the full path gives without any shape.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.ca import csr as csr_module
from smki.ca.csr import check_device_csr, decode_csr_text, known_device_csr
from smki.ca.der import der_tlv
from smki.ca.devcsr import device_csr_stream
from smki.domain import Usage
from smki.errors import SmkiError
from tests.ca.conftest import ANY_HW_TYPE
from tests.ca.test_csr_checks import ECDSA_SHA256
from tests.ca.test_csr_plain import general_path_only

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.function_scoped_fixture])
KEY = ec.generate_private_key(ec.SECP256R1())
#: Plain Device CSRs of one shape: DS and KA for four Devices, each with its own key.
CSRS = [der for _, _, der in device_csr_stream(8, first_device=0x00DB000000000100)]


@pytest.fixture(autouse=True)
def learnt() -> Iterator[None]:
    """Start each test with exactly the shape of ``CSRS`` learnt (the full path learns it)."""
    saved = csr_module._SHAPES
    csr_module._SHAPES = ()
    check_device_csr(CSRS[0])
    assert len(csr_module._SHAPES) == 1
    yield
    csr_module._SHAPES = saved


def outcome(der: bytes) -> object:
    try:
        request = check_device_csr(der, ANY_HW_TYPE)
    except SmkiError as exc:
        return exc.code
    return (request.device_id, request.usage, request.hw_type, request.spki_der, request.point, request.point_checked)


def full_path(der: bytes) -> object:
    saved = csr_module._SHAPES
    try:
        with general_path_only():
            return outcome(der)
    finally:
        csr_module._SHAPES = saved


def tbs_of(der: bytes) -> bytes:
    return x509.load_der_x509_csr(der).tbs_certrequest_bytes


def resigned(tbs: bytes, key: ec.EllipticCurvePrivateKey = KEY) -> bytes:
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return der_tlv(0x30, tbs + ECDSA_SHA256 + der_tlv(0x03, b"\x00" + signature))


def with_key(der: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The same TBS with ``key``'s point in place of the original one, signed by ``key``."""
    tbs = tbs_of(der)
    old = x509.load_der_x509_csr(der).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    new = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    assert tbs.count(old) == 1
    return resigned(tbs.replace(old, new), key)


@pytest.mark.parametrize("index", range(1, len(CSRS)))
def test_csrs_of_a_learnt_shape_take_it_and_agree(index: int) -> None:
    der = CSRS[index]
    known = csr_module._known_shape_request(der)
    assert known is not None  # other key, Device ID and usage: the same shape
    assert known.usage is (Usage.DS if index % 2 == 0 else Usage.KA)
    assert outcome(der) == full_path(der)


def test_a_bad_signature_falls_back_and_is_reported() -> None:
    der = bytearray(CSRS[3])
    der[-1] ^= 0x01
    assert csr_module._known_shape_request(bytes(der)) is None
    assert outcome(bytes(der)) == full_path(bytes(der)) == "csr.bad-signature"


def test_unused_bits_in_the_signature_falls_back_and_is_reported() -> None:
    der = CSRS[3]
    at = len(tbs_of(der)) + 4 + len(ECDSA_SHA256) + 2  # the BIT STRING's unused-bits octet
    assert der[at] == 0
    candidate = der[:at] + b"\x01" + der[at + 1:]
    assert csr_module._known_shape_request(candidate) is None
    assert outcome(candidate) == full_path(candidate) in ("csr.malformed", "csr.bad-signature")


def test_a_point_off_the_curve_falls_back_and_is_reported() -> None:
    tbs = bytearray(tbs_of(CSRS[2]))
    point_at = bytes(tbs).index(bytes.fromhex("034200")) + 4
    tbs[point_at + 10] ^= 0x40
    der = resigned(bytes(tbs))  # the signature is not what refuses it
    assert csr_module._known_shape_request(der) is None
    assert outcome(der) == full_path(der) == "csr.key-invalid"


@SETTINGS
@given(st.data())
def test_mutated_tbs_agrees_with_the_full_path(data: st.DataObject) -> None:
    der = with_key(data.draw(st.sampled_from(CSRS)), KEY)
    tbs = tbs_of(der)
    position = data.draw(st.integers(min_value=0, max_value=len(tbs) - 1))
    action = data.draw(st.sampled_from(["replace", "delete", "insert"]))
    byte = bytes([data.draw(st.integers(min_value=0, max_value=255))])
    if action == "replace":
        mutated = tbs[:position] + byte + tbs[position + 1:]
    elif action == "delete":
        mutated = tbs[:position] + tbs[position + 1:]
    else:
        mutated = tbs[:position] + byte + tbs[position:]
    candidate = resigned(mutated)
    assert outcome(candidate) == full_path(candidate)


@SETTINGS
@given(st.data())
def test_mutated_signature_part_agrees_with_the_full_path(data: st.DataObject) -> None:
    der = data.draw(st.sampled_from(CSRS))
    tail_start = len(tbs_of(der)) + 4  # every CSR here has a 4-octet outer header
    position = data.draw(st.integers(min_value=0, max_value=len(der) - 1))
    if data.draw(st.booleans()):  # the outer header, the algorithm and the BIT STRING's header
        position = data.draw(st.sampled_from([0, 1, 2, 3, *range(tail_start, tail_start + 15)]))
    byte = bytes([data.draw(st.integers(min_value=0, max_value=255))])
    candidate = der[:position] + byte + der[position + 1:]
    assert outcome(candidate) == full_path(candidate)


# ``known_device_csr``: the batch workers' way in, from the CSR's text, without a request object.


def general(text: bytes, accepted: object = ANY_HW_TYPE) -> object:
    """What ``check_device_csr(decode_csr_text(text))`` answers, by the full path, as a tuple."""
    saved = csr_module._SHAPES
    try:
        with general_path_only():
            request = check_device_csr(decode_csr_text(text), accepted)  # type: ignore[arg-type]
    except SmkiError as exc:
        return exc.code
    finally:
        csr_module._SHAPES = saved
    return (request.device_id, request.usage, request.point, request.hw_type)


def as_pem(der: bytes) -> bytes:
    """PEM as OpenSSL writes it, of any bytes (a mutated CSR too)."""
    body = base64.b64encode(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"\n".join([b"-----BEGIN CERTIFICATE REQUEST-----", *lines, b"-----END CERTIFICATE REQUEST-----", b""])


@pytest.mark.parametrize("index", range(len(CSRS)))
@pytest.mark.parametrize("form", [bytes, as_pem])
def test_known_device_csr_answers_csrs_of_a_learnt_shape_as_the_full_path(index: int, form: object) -> None:
    text = form(CSRS[index])  # type: ignore[operator]
    assert form is bytes or text == x509.load_der_x509_csr(CSRS[index]).public_bytes(serialization.Encoding.PEM)
    known = known_device_csr(text, ANY_HW_TYPE)
    assert known is not None
    assert known == general(text)


def test_known_device_csr_leaves_an_unaccepted_hw_type_to_the_full_path() -> None:
    assert known_device_csr(CSRS[1], ("1.2.3.4",)) is None
    assert general(CSRS[1], ("1.2.3.4",)) == "csr.hw-type"


def test_every_signature_length_takes_the_known_shape() -> None:
    """DER ECDSA signatures are 70 to 72 octets nearly always, fewer rarely: each length is read."""
    tbs = with_key_tbs(tbs_of(CSRS[2]))
    lengths = set()
    for _ in range(400):
        der = resigned(tbs)
        signature_length = len(der) - len(tbs) - 4 - len(ECDSA_SHA256) - 3
        lengths.add(signature_length)
        assert known_device_csr(der, ANY_HW_TYPE) == general(der) != "csr.bad-signature"
    assert {70, 71, 72} <= lengths


def mutated(data: st.DataObject, der: bytes) -> bytes:
    """``der`` with one byte changed: in its TBS (replaced, dropped or inserted, then re-signed with
    ``KEY``), or in its outer header, algorithm identifier or signature (replaced)."""
    if data.draw(st.booleans()):
        tbs = tbs_of(with_key(der, KEY))
        position = data.draw(st.integers(min_value=0, max_value=len(tbs) - 1))
        byte = bytes([data.draw(st.integers(min_value=0, max_value=255))])
        action = data.draw(st.sampled_from(["replace", "delete", "insert"]))
        tbs = {"replace": tbs[:position] + byte + tbs[position + 1:], "delete": tbs[:position] + tbs[position + 1:],
               "insert": tbs[:position] + byte + tbs[position:]}[action]
        return resigned(tbs)
    position = data.draw(st.sampled_from([0, 1, 2, 3, *range(len(tbs_of(der)) + 4, len(der))]))
    return der[:position] + bytes([data.draw(st.integers(0, 255))]) + der[position + 1:]


@SETTINGS
@given(st.data())
def test_known_device_csr_of_mutated_csrs_agrees_with_the_full_path(data: st.DataObject) -> None:
    """Whatever it answers (None aside: then the full path decides), the full path answers too."""
    der = data.draw(st.sampled_from(CSRS))
    # one byte changed, or an octet more or less at the end
    candidate = data.draw(st.sampled_from([mutated(data, der), der + b"\x00", der[:-1]]))
    text = as_pem(candidate) if data.draw(st.booleans()) and candidate[:1] == b"\x30" else candidate
    known = known_device_csr(text, ANY_HW_TYPE)
    if known is not None:
        assert known == general(text)


def test_shapes_are_bounded() -> None:
    csr_module._SHAPES = ()
    for hw_type_arc in range(12):  # each hwType OID a different shape
        tbs = tbs_of(CSRS[0]).replace(bytes.fromhex("0d2a863a0001848fb90f01020201"),
                                      bytes.fromhex("0d2a863a0001848fb90f010202") + bytes([hw_type_arc + 1]))
        check_device_csr(resigned(with_key_tbs(tbs)), ANY_HW_TYPE)
    assert len(csr_module._SHAPES) == csr_module._MAX_SHAPES


def with_key_tbs(tbs: bytes) -> bytes:
    """``tbs`` with KEY's point in place of the one it holds (so ``resigned`` verifies)."""
    point_at = tbs.index(bytes.fromhex("034200")) + 3
    new = KEY.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return tbs[:point_at] + new + tbs[point_at + 65:]


# The Device-ID peek's own shapes (learnt by the peek's plain walk, never used by the full check).


def peek_without_shapes(der: bytes) -> bytes | None:
    saved = csr_module._PEEK_SHAPES
    csr_module._PEEK_SHAPES = ()
    try:
        return csr_module.peek_device_id(der)
    finally:
        csr_module._PEEK_SHAPES = saved


@pytest.fixture
def peek_learnt() -> Iterator[None]:
    saved = csr_module._PEEK_SHAPES
    csr_module._PEEK_SHAPES = ()
    assert csr_module.peek_device_id(CSRS[0]) == bytes.fromhex("00db000000000100")
    assert len(csr_module._PEEK_SHAPES) == 1
    yield
    csr_module._PEEK_SHAPES = saved


@pytest.mark.usefixtures("peek_learnt")
@pytest.mark.parametrize("index", range(1, len(CSRS)))
def test_the_peek_reads_csrs_of_its_shape_from_the_hole(index: int) -> None:
    device = csr_module._peek_shape_device_id(CSRS[index])
    assert device == (0x00DB000000000100 + index // 2).to_bytes(8, "big")
    assert csr_module.peek_device_id(CSRS[index]) == device == peek_without_shapes(CSRS[index])


def test_the_peek_shapes_are_not_the_full_checks() -> None:
    """A peek never teaches the full check a shape: the CSRs it reads were never checked."""
    saved = csr_module._SHAPES, csr_module._PEEK_SHAPES
    csr_module._SHAPES = csr_module._PEEK_SHAPES = ()
    try:
        csr_module.peek_device_id(CSRS[1])
        assert csr_module._SHAPES == () and len(csr_module._PEEK_SHAPES) == 1
    finally:
        csr_module._SHAPES, csr_module._PEEK_SHAPES = saved


@pytest.mark.usefixtures("peek_learnt")
@SETTINGS
@given(st.data())
def test_the_peek_of_mutated_csrs_agrees_with_the_walk(data: st.DataObject) -> None:
    candidate = mutated(data, data.draw(st.sampled_from(CSRS)))
    shapes = csr_module._PEEK_SHAPES
    assert csr_module.peek_device_id(candidate) == peek_without_shapes(candidate)
    csr_module._PEEK_SHAPES = shapes  # what the peek learnt from the candidate is not for the next example
