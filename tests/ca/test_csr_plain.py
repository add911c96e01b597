"""The plain-Device-CSR shortcut in ``check_device_csr`` never changes a result.

``_plain_device_extensions`` reads the requested extensions of the common Device CSR directly
instead of through ``cryptography``. These tests build CSRs whose extension requests vary in every
way the shortcut looks at (order, criticality, keyUsage bits, names in the subjectAltName, hwType,
hwSerialNum length, extra extensions, single flipped or dropped bytes), sign them validly, and
check that the answer — the request or the refusal code — is the one the general path gives.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.ca import csr as csr_module
from smki.ca.csr import check_device_csr
from smki.ca.der import der_tlv
from smki.ca.devcsr import oid_der
from smki.ca.oids import HARDWARE_MODULE_NAME
from smki.errors import SmkiError
from tests.ca.conftest import ANY_HW_TYPE
from tests.ca.test_csr_checks import EXTENSION_REQUEST, SPKI, attribute, cri, ext, sign

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KU_OID, SAN_OID = "2.5.29.15", "2.5.29.17"


@contextmanager
def general_path_only() -> Iterator[None]:
    original = csr_module._plain_device_extensions, csr_module._known_shape_request
    csr_module._plain_device_extensions = lambda value: None  # type: ignore[assignment]
    csr_module._known_shape_request = lambda der: None  # type: ignore[assignment]
    try:
        yield
    finally:
        csr_module._plain_device_extensions, csr_module._known_shape_request = original  # type: ignore[assignment]


def outcome(der: bytes) -> object:
    try:
        request = check_device_csr(der, ANY_HW_TYPE)
    except SmkiError as exc:
        return exc.code
    return (request.device_id, request.usage, request.hw_type, request.spki_der, request.point)


def both_paths(der: bytes) -> tuple[object, object]:
    fast = outcome(der)
    with general_path_only():
        general = outcome(der)
    return fast, general


def csr_with_extensions(extensions_value: bytes) -> bytes:
    """A validly self-signed Device CSR whose extensionRequest value is exactly these bytes."""
    return sign(cri(attributes=(attribute(EXTENSION_REQUEST, extensions_value),)))


def hwmn(hw_type: bytes, serial: bytes) -> bytes:
    """A GeneralName otherName hardwareModuleName with raw hwType OID content and hwSerialNum."""
    inner = der_tlv(0x30, der_tlv(0x06, hw_type) + der_tlv(0x04, serial))
    return der_tlv(0xA0, oid_der(HARDWARE_MODULE_NAME.dotted_string) + der_tlv(0xA0, inner))


# Each strategy favours the plain case, so that about half the examples take the shortcut.
ku_bits = st.one_of(*[st.sampled_from([0x001, 0x010])] * 3, st.integers(min_value=0, max_value=0x1FF))
hw_types = st.sampled_from([bytes.fromhex("2a863a0001848fb90f01020201"), bytes.fromhex("2b0601")] * 6
                           + [b"\x80\x01", b"", b"\x2b\x86"])
serials = st.one_of(*[st.binary(min_size=8, max_size=8)] * 3, st.binary(min_size=6, max_size=10))
#: Other GeneralNames, raw: a dNSName and an iPAddress.
other_names = st.sampled_from([b"\x82\x05meter", b"\x87\x04\x7f\x00\x00\x01"])


def key_usage_value(bits: int) -> bytes:
    value = x509.KeyUsage(*(bool(bits >> i & 1) for i in range(7)),
                          encipher_only=bool(bits >> 7 & 1) and bool(bits >> 4 & 1),
                          decipher_only=bool(bits >> 8 & 1) and bool(bits >> 4 & 1))
    return value.public_bytes()


@st.composite
def extension_lists(draw: st.DrawFn) -> bytes:
    items = [ext(KU_OID, key_usage_value(draw(ku_bits)), critical=draw(st.booleans()))]
    names = [hwmn(draw(hw_types), draw(serials))]
    if draw(st.integers(0, 3)) == 0:
        names.append(draw(other_names))
    names = draw(st.permutations(names))
    items.append(ext(SAN_OID, der_tlv(0x30, b"".join(names)), critical=draw(st.booleans())))
    extra = draw(st.sampled_from([None] * 15 + ["2.5.29.14", "2.5.29.19", "1.2.3.4", KU_OID, SAN_OID]))
    if extra is not None:
        value = {"2.5.29.14": b"\x04\x02\x01\x02", "2.5.29.19": b"\x30\x00"}.get(extra, b"\x05\x00")
        items.append(ext(extra, value, critical=False))
    if draw(st.integers(0, 3)) == 0:
        items = items[:1] if draw(st.booleans()) else items[1:]
    return der_tlv(0x30, b"".join(draw(st.permutations(items))))


@SETTINGS
@given(extension_lists())
def test_shortcut_agrees_with_the_general_path(extensions_value: bytes) -> None:
    fast, general = both_paths(csr_with_extensions(extensions_value))
    assert fast == general


@SETTINGS
@given(extension_lists(), st.data())
def test_shortcut_agrees_on_mutated_bytes(extensions_value: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(min_value=0, max_value=len(extensions_value) - 1))
    if data.draw(st.booleans()):
        mutated = extensions_value[:position] + extensions_value[position + 1:]
    else:
        byte = data.draw(st.integers(min_value=0, max_value=255))
        mutated = extensions_value[:position] + bytes([byte]) + extensions_value[position + 1:]
    fast, general = both_paths(csr_with_extensions(mutated))
    assert fast == general


@pytest.mark.parametrize("critical", [True, False])
@pytest.mark.parametrize("bits, usage", [(0x001, "DS"), (0x010, "KA")])
def test_plain_csrs_take_the_shortcut(critical: bool, bits: int, usage: str) -> None:
    serial = bytes.fromhex("00db123456789001")
    value = der_tlv(0x30, ext(SAN_OID, der_tlv(0x30, hwmn(bytes.fromhex("2b0601"), serial)), critical)
                    + ext(KU_OID, key_usage_value(bits), critical))
    plain = csr_module._plain_device_extensions(value)
    assert plain is not None and plain[0] == serial and plain[1].value == usage
    assert value[plain[2]:plain[2] + 8] == serial and value[plain[3]:plain[3] + 4] == key_usage_value(bits)
    request = check_device_csr(csr_with_extensions(value), ANY_HW_TYPE)
    assert request.point_checked and request.device_id == serial and request.spki_der == SPKI
