"""The fast Device factory: byte-identical to ``build_device``, verifiable, and strict on input."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from smki.ca.device_template import (
    DeviceCertificateFactory,
    encode_serial,
    encode_time,
    split_tlvs,
    tlv_content,
)
from smki.ca.lint import Severity, pkilint_findings
from smki.ca.profiles import build_device, build_root, build_subordinate_ca, device_tbs
from smki.ca.requests import DeviceRequest
from smki.config import Settings
from smki.domain import CertKind, Usage
from smki.errors import SmkiError
from tests.ca.conftest import (
    NOW,
    DeterministicCA,
    DeterministicSigner,
    FileCA,
    device_request,
    openssl,
    write_pem,
)

# A CA that is valid from 1950 to 9949, so issue times on both sides of 2050 (UTCTime vs
# GeneralizedTime notBefore) can be tested against the slow path.
LONG_START = datetime(1950, 1, 1, tzinfo=UTC)
KEYS = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(8)]
#: hwTypes of different lengths (spec §7.4: the certificate carries the CSR's), so the template's
#: lengths around the subjectAltName vary too; the first arc over 127 needs two octets.
HW_TYPES = ("1.2.826.0.1.8641679.1.2.2.1", "1.2.826.0.1372.1.1.2.1", "1.2.3.4.5.6.7.8.9.10", "2.999.1")


@pytest.fixture(scope="module")
def long_ca() -> tuple[x509.Certificate, DeterministicSigner, Settings]:
    s = replace(Settings(), root_validity_years=8000, ca_validity_years=8000, hw_type_oids=HW_TYPES)
    root_signer = DeterministicSigner("root", ec.generate_private_key(ec.SECP256R1()))
    device_signer = DeterministicSigner("device-ca", ec.generate_private_key(ec.SECP256R1()))
    root = build_root(root_signer, s, LONG_START)
    device_ca = build_subordinate_ca(
        CertKind.DEVICE_CA, device_signer.public_key(), root, root_signer, s, LONG_START
    )
    return device_ca, device_signer, s


@pytest.fixture(scope="module")
def long_factory(long_ca: tuple[x509.Certificate, DeterministicSigner, Settings]) -> DeviceCertificateFactory:
    return DeviceCertificateFactory(*long_ca)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    device_id=st.binary(min_size=8, max_size=8),
    usage=st.sampled_from(list(Usage)),
    key_index=st.integers(0, len(KEYS) - 1),
    serial=st.one_of(st.integers(1, (1 << 159) - 1), st.integers(1, 1 << 20), st.just((1 << 127) - 1)),
    now=st.datetimes(min_value=datetime(1950, 1, 2), max_value=datetime(9949, 1, 1), timezones=st.just(UTC)),
    hw_type=st.sampled_from(HW_TYPES),
)
def test_fast_factory_is_byte_identical_to_build_device(
    long_ca: tuple[x509.Certificate, DeterministicSigner, Settings],
    long_factory: DeviceCertificateFactory,
    device_id: bytes,
    usage: Usage,
    key_index: int,
    serial: int,
    now: datetime,
    hw_type: str,
) -> None:
    device_ca, signer, s = long_ca
    request = replace(device_request(device_id=device_id, usage=usage, key=KEYS[key_index]), hw_type=hw_type)
    issued = long_factory.issue(request, now, serial)
    slow = build_device(request, device_ca, signer, s, now, serial=serial)
    assert issued.der == slow.public_bytes(Encoding.DER)
    assert issued.serial == serial
    assert issued.not_before == slow.not_valid_before_utc
    assert _hw_type_of(issued.der) == hw_type


def _hw_type_of(der: bytes) -> str:
    from pyasn1.codec.der import decoder
    from pyasn1_alt_modules import rfc4108

    san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    (other,) = san.value
    assert isinstance(other, x509.OtherName)
    value, _ = decoder.decode(other.value, asn1Spec=rfc4108.HardwareModuleName())
    return str(value["hwType"])


def test_default_settings_factory_matches_slow_path_with_random_serial(det_ca: DeterministicCA) -> None:
    factory = DeviceCertificateFactory(det_ca.device_ca, det_ca.device_signer, det_ca.settings)
    for usage in Usage:
        request = device_request(usage=usage)
        issued = factory.issue(request, NOW)
        assert len(issued.der) in range(410, 430)
        slow = build_device(
            request, det_ca.device_ca, det_ca.device_signer, det_ca.settings, NOW, serial=issued.serial
        )
        assert issued.der == slow.public_bytes(Encoding.DER)
        assert issued.serial.bit_length() in range(121, 128)


def test_file_signer_certificates_verify(file_ca: FileCA, tmp_path: Path) -> None:
    """Randomised ECDSA (the FileSigner): same TBS as the slow path, signature verifies, openssl agrees."""
    h = file_ca.hierarchy
    factory = DeviceCertificateFactory(h.device_ca, file_ca.device_signer, file_ca.settings)
    chain = file_ca.directory
    for i, usage in enumerate([Usage.DS, Usage.KA, Usage.DS]):
        request = device_request(device_id=bytes([i]) * 8, usage=usage)
        issued = factory.issue(request, NOW)
        cert = x509.load_der_x509_certificate(issued.der)
        assert cert.tbs_certificate_bytes == device_tbs(
            request, h.device_ca, file_ca.settings, NOW, issued.serial
        )
        h.device_ca.public_key().verify(  # type: ignore[call-arg, union-attr]
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256())
        )
        cert.verify_directly_issued_by(h.device_ca)
        leaf = write_pem(tmp_path, f"device-{i}.pem", cert)
        result = openssl("verify", "-CAfile", chain / "root.pem", "-untrusted", chain / "dca.pem", leaf)
        assert result.returncode == 0, result.stderr
        # pkilint on the profile: nothing above INFO.
        assert [f for f in pkilint_findings(issued.der) if f.severity < Severity.INFO] == []


def test_many_issues_in_one_second_reuse_the_same_time(det_ca: DeterministicCA) -> None:
    factory = DeviceCertificateFactory(det_ca.device_ca, det_ca.device_signer, det_ca.settings)
    first = factory.issue(device_request(), NOW + timedelta(microseconds=1))
    second = factory.issue(device_request(), NOW + timedelta(microseconds=999_999))
    later = factory.issue(device_request(), NOW + timedelta(seconds=1))
    assert first.not_before == second.not_before == NOW
    assert later.not_before == NOW + timedelta(seconds=1)
    assert x509.load_der_x509_certificate(later.der).not_valid_before_utc == NOW + timedelta(seconds=1)


def test_naive_and_other_zone_times_are_utc(det_ca: DeterministicCA) -> None:
    from datetime import timezone

    factory = DeviceCertificateFactory(det_ca.device_ca, det_ca.device_signer, det_ca.settings)
    naive = factory.issue(device_request(), NOW.replace(tzinfo=None))
    shifted = factory.issue(device_request(), NOW.astimezone(timezone(timedelta(hours=5, minutes=30))))
    assert naive.not_before == shifted.not_before == NOW


# --- the DER pieces -------------------------------------------------------------------------


@given(st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
def test_encode_time_round_trips_through_openssl_rules(moment: datetime) -> None:
    moment = moment.replace(microsecond=0)
    der = encode_time(moment)
    assert der[0] == (0x17 if moment.year < 2050 else 0x18)
    text = der[2:].decode()
    fmt = "%y%m%d%H%M%SZ" if der[0] == 0x17 else "%Y%m%d%H%M%SZ"
    parsed = datetime.strptime(text, fmt)
    if der[0] == 0x17 and parsed.year >= 2050:
        parsed = parsed.replace(year=parsed.year - 100)
    assert parsed == moment


def test_time_boundary_2050() -> None:
    assert encode_time(datetime(2049, 12, 31, 23, 59, 59)) == b"\x17\x0d491231235959Z"
    assert encode_time(datetime(2050, 1, 1, 0, 0, 0)) == b"\x18\x0f20500101000000Z"


@given(st.integers(1, (1 << 159) - 1))
def test_encode_serial_is_minimal_positive_der(serial: int) -> None:
    der = encode_serial(serial)
    (tlv,) = split_tlvs(der)
    content = tlv_content(tlv)
    assert int.from_bytes(content, "big", signed=True) == serial
    assert not (len(content) > 1 and content[0] == 0 and content[1] < 0x80)  # minimal


@given(st.lists(st.binary(max_size=300), max_size=5))
def test_split_tlvs_inverts_concatenation(values: list[bytes]) -> None:
    from smki.ca.der import der_tlv

    tlvs = [der_tlv(0x04, v) for v in values]
    assert split_tlvs(b"".join(tlvs)) == tlvs
    assert [tlv_content(t) for t in tlvs] == values


# --- refusals -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def factory(det_ca: DeterministicCA) -> DeviceCertificateFactory:
    return DeviceCertificateFactory(det_ca.device_ca, det_ca.device_signer, det_ca.settings)


def _off_curve(r: DeviceRequest) -> DeviceRequest:
    point = r.point[:-1] + bytes([r.point[-1] ^ 1])
    return DeviceRequest(r.device_id, r.usage, r.spki_der[:-65] + point, point)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda r: DeviceRequest(r.device_id + b"\x00", r.usage, r.spki_der, r.point), "ca.bad-device-id"),
        (lambda r: DeviceRequest(r.device_id, "XX", r.spki_der, r.point), "ca.bad-usage"),
        (lambda r: DeviceRequest(r.device_id, r.usage, r.spki_der, r.point[:-1]), "ca.bad-key"),
        (
            lambda r: DeviceRequest(r.device_id, r.usage, b"\x30" + r.spki_der[1:], r.point[:1] + bytes(64)),
            "ca.bad-key",
        ),
        (_off_curve, "ca.bad-key"),
    ],
)
def test_bad_requests_are_refused(factory: DeviceCertificateFactory, mutate: object, code: str) -> None:
    with pytest.raises(SmkiError) as err:
        factory.issue(mutate(device_request()), NOW)  # type: ignore[operator]
    assert err.value.code == code


@pytest.mark.parametrize("serial", [0, -1, 1 << 159])
def test_bad_serials_are_refused(factory: DeviceCertificateFactory, serial: int) -> None:
    with pytest.raises(SmkiError) as err:
        factory.issue(device_request(), NOW, serial)
    assert err.value.code == "ca.bad-serial"


def test_time_outside_the_device_ca_validity_is_refused(
    factory: DeviceCertificateFactory, det_ca: DeterministicCA
) -> None:
    with pytest.raises(SmkiError) as err:
        factory.issue(device_request(), det_ca.device_ca.not_valid_after_utc + timedelta(seconds=1))
    assert err.value.code == "ca.issuer-not-valid"


def test_factory_refuses_a_signer_that_is_not_the_device_ca(det_ca: DeterministicCA) -> None:
    with pytest.raises(SmkiError) as err:
        DeviceCertificateFactory(det_ca.device_ca, det_ca.organisation_signer, det_ca.settings)
    assert err.value.code == "ca.wrong-signer"


#: One issue time for a whole run of examples, as a batch chunk has: ``build`` then reuses the pieces
#: it made for the first certificate of each hwType, usage and serial length (the path batches take).
ONE_NOW = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    device_id=st.binary(min_size=8, max_size=8),
    usage=st.sampled_from(list(Usage)),
    key_index=st.integers(0, len(KEYS) - 1),
    serial=st.one_of(st.none(), st.integers(1, (1 << 159) - 1), st.integers(1 << 127, (1 << 128) - 1)),
    hw_type=st.sampled_from(HW_TYPES),
)
def test_pieces_reused_within_one_time_are_byte_identical_to_build_device(
    long_ca: tuple[x509.Certificate, DeterministicSigner, Settings],
    long_factory: DeviceCertificateFactory,
    device_id: bytes,
    usage: Usage,
    key_index: int,
    serial: int | None,
    hw_type: str,
) -> None:
    device_ca, signer, s = long_ca
    request = replace(device_request(device_id=device_id, usage=usage, key=KEYS[key_index]), hw_type=hw_type)
    tbs, drawn, not_before = long_factory.to_be_signed(request, ONE_NOW, serial)
    assert serial is None or drawn == serial
    assert tbs == device_tbs(request, device_ca, s, ONE_NOW, drawn)
    assert long_factory.certificate(tbs) == build_device(request, device_ca, signer, s, ONE_NOW,
                                                         serial=drawn).public_bytes(Encoding.DER)
    assert not_before == ONE_NOW
