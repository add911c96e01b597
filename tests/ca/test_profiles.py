"""The profiles against the DCC's reference certificates, field by field, and their refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtensionOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.der import decoder
from pyasn1_alt_modules import rfc4108, rfc5280

from smki.ca import profiles
from smki.ca.keyid import key_identifier
from smki.ca.lint import Finding, Severity
from smki.ca.profiles import (
    build_device,
    build_organisation,
    build_root,
    build_subordinate_ca,
    day_validity,
    hardware_module_name,
    random_serial,
)
from smki.ca.requests import DeviceRequest, OrganisationRequest
from smki.domain import CertKind, RemotePartyRole, Usage
from smki.errors import SmkiError
from tests.ca.conftest import (
    NOW,
    DeterministicCA,
    FileCA,
    RecordingSigner,
    device_request,
    openssl,
    organisation_request,
    reference,
    write_pem,
)
from tests.ca.structure import decode_certificate, extension_value, shape

DER = Encoding.DER


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(DER)


# --- structure against the references -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "usage"), [("00db123456789001-ds.pem", Usage.DS), ("00db123456789001-ka.pem", Usage.KA)]
)
def test_device_certificate_has_the_reference_structure(file_ca: FileCA, name: str, usage: Usage) -> None:
    ours = build_device(
        device_request(usage=usage), file_ca.hierarchy.device_ca, file_ca.device_signer, file_ca.settings, NOW
    )
    ref = reference(name)
    assert shape(_der(ours)) == shape(_der(ref))
    # Same key usage bits, SAN and policy bytes: only keys, serials, dates and ids differ.
    for oid in (
        ExtensionOID.KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.CERTIFICATE_POLICIES,
    ):
        assert (
            ours.extensions.get_extension_for_oid(oid).value
            == ref.extensions.get_extension_for_oid(oid).value
        )
    assert abs(len(_der(ours)) - len(_der(ref))) <= 2  # the DER signature length varies by a byte or two


@pytest.mark.parametrize(
    ("name", "usage", "common_name"),
    [("Z1-supplier-ds.pem", Usage.DS, "GITTESTSUPPLIER"), ("90b3d51f30010000-ka.pem", Usage.KA, None)],
)
def test_organisation_certificate_has_the_reference_structure(
    file_ca: FileCA, name: str, usage: Usage, common_name: str | None
) -> None:
    request = organisation_request(usage=usage, common_name=common_name)
    ours = build_organisation(
        request, file_ca.hierarchy.organisation_ca, file_ca.organisation_signer, file_ca.settings, NOW
    )
    ref = reference(name)
    assert shape(_der(ours)) == shape(_der(ref))
    # With the reference's own Entity Identifier and CN, the subject is byte-identical.
    assert ours.subject.public_bytes() == ref.subject.public_bytes()
    assert (
        ours.extensions.get_extension_for_class(x509.KeyUsage).value
        == ref.extensions.get_extension_for_class(x509.KeyUsage).value
    )
    assert (
        ours.extensions.get_extension_for_class(x509.CertificatePolicies).value
        == ref.extensions.get_extension_for_class(x509.CertificatePolicies).value
    )


def test_issuer_names_match_the_reference_issuers(file_ca: FileCA) -> None:
    """With the default names, our CA subjects are byte-identical to the references' issuers."""
    assert (
        file_ca.hierarchy.device_ca.subject.public_bytes()
        == reference("00db123456789001-ds.pem").issuer.public_bytes()
    )
    assert (
        file_ca.hierarchy.organisation_ca.subject.public_bytes()
        == reference("Z1-supplier-ds.pem").issuer.public_bytes()
    )


def test_device_certificate_fields(file_ca: FileCA) -> None:
    device_id = bytes.fromhex("0123456789abcdef")
    cert = build_device(
        device_request(device_id=device_id, usage=Usage.KA),
        file_ca.hierarchy.device_ca,
        file_ca.device_signer,
        file_ca.settings,
        NOW + timedelta(microseconds=123456),
    )
    assert cert.version is x509.Version.v3
    assert cert.subject == x509.Name([]) and cert.subject.public_bytes() == b"\x30\x00"
    assert cert.not_valid_before_utc == NOW  # microseconds dropped
    assert cert.not_valid_after_utc == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    asn1 = decode_certificate(_der(cert))
    assert str(asn1["tbsCertificate"]["validity"]["notAfter"]["generalTime"]) == "99991231235959Z"
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.BasicConstraints)
    # subjectAltName: exactly one otherName hardwareModuleName { hwType, 8-octet EUI-64 }.
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    (other,) = san.value
    assert isinstance(other, x509.OtherName)
    assert other.type_id.dotted_string == "1.3.6.1.5.5.7.8.4"
    hmn, rest = decoder.decode(other.value, asn1Spec=rfc4108.HardwareModuleName())
    assert rest == b""
    assert str(hmn["hwType"]) == file_ca.settings.hw_type_oids[0]  # the request's (spec §7.4)
    assert bytes(hmn["hwSerialNum"]) == device_id
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_agreement and not ku.value.digital_signature
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies)
    assert policies.critical
    assert [p.policy_identifier.dotted_string for p in policies.value] == [file_ca.settings.device_policy_oid]
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ski == key_identifier(cert.public_key())  # type: ignore[arg-type]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert not aki.critical
    assert (
        aki.value.key_identifier
        == file_ca.hierarchy.device_ca.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value.digest
    )
    assert aki.value.authority_cert_issuer is None and aki.value.authority_cert_serial_number is None
    cert.verify_directly_issued_by(file_ca.hierarchy.device_ca)


def test_organisation_certificate_fields(file_ca: FileCA) -> None:
    request = organisation_request(
        entity_id=bytes.fromhex("90b3d51f30010001"),
        role=RemotePartyRole.OTHER,
        usage=Usage.KA,
        common_name="Zoë Ltd",
    )
    oca = file_ca.hierarchy.organisation_ca
    cert = build_organisation(request, oca, file_ca.organisation_signer, file_ca.settings, NOW)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Zoë Ltd"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "7F"
    asn1 = decode_certificate(_der(cert))
    uid = asn1["tbsCertificate"]["subject"]["rdnSequence"][2][0]
    assert str(uid["type"]) == "2.5.4.45"
    bits, _ = decoder.decode(bytes(uid["value"]), asn1Spec=rfc5280.UniqueIdentifier())
    assert len(bits) == 64 and bits.asOctets() == bytes.fromhex("90b3d51f30010001")
    cert.verify_directly_issued_by(oca)


def test_organisation_validity_is_whole_days_as_the_reference() -> None:
    """The reference runs 2015-10-30 00:00:00Z → 2025-10-29 23:59:59Z."""
    ref = reference("Z1-supplier-ds.pem")
    assert day_validity(datetime(2015, 10, 30, 17, 3, 1, tzinfo=UTC), 10) == (
        ref.not_valid_before_utc,
        ref.not_valid_after_utc,
    )


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2900, 1, 1), timezones=st.just(UTC)),
    st.integers(1, 30),
)
def test_day_validity_properties(now: datetime, years: int) -> None:
    not_before, not_after = day_validity(now, years)
    assert not_before.date() == now.date() and not_before.time().isoformat() == "00:00:00"
    assert not_after.time().isoformat() == "23:59:59"
    anniversary = not_after.date() + timedelta(days=1)
    assert anniversary.year == now.year + years
    if (now.month, now.day) != (2, 29):
        assert (anniversary.month, anniversary.day) == (now.month, now.day)
    else:
        assert (anniversary.month, anniversary.day) in ((2, 29), (3, 1))


def test_validity_is_capped_by_the_issuer(file_ca: FileCA) -> None:
    oca = file_ca.hierarchy.organisation_ca
    late = oca.not_valid_after_utc - timedelta(days=365)
    cert = build_organisation(
        organisation_request(), oca, file_ca.organisation_signer, file_ca.settings, late
    )
    assert cert.not_valid_after_utc == oca.not_valid_after_utc


# --- CA certificates ------------------------------------------------------------------------


def _ca_checks(cert: x509.Certificate, path_length: int | None, policies: list[str]) -> None:
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == path_length
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    cp = cert.extensions.get_extension_for_class(x509.CertificatePolicies)
    assert cp.critical and [p.policy_identifier.dotted_string for p in cp.value] == policies
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert not ski.critical and ski.value.digest == key_identifier(cert.public_key())  # type: ignore[arg-type]
    assert [e.oid for e in cert.extensions][:4] == [
        ExtensionOID.KEY_USAGE,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ]
    assert shape(_der(cert))["serial_octets"] == 16


def test_root_certificate(file_ca: FileCA) -> None:
    root = file_ca.hierarchy.root
    s = file_ca.settings
    _ca_checks(root, None, [s.organisation_policy_oid, s.device_policy_oid])
    assert len(root.extensions) == 4  # no AKI on the self-signed Root
    assert root.issuer == root.subject
    assert shape(_der(root))["subject"] == [("2.5.4.11", "PrintableString"), ("2.5.4.3", "PrintableString")]
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "00"
    root.verify_directly_issued_by(root)
    assert (root.not_valid_before_utc, root.not_valid_after_utc) == day_validity(NOW, s.root_validity_years)


@pytest.mark.parametrize("kind", [CertKind.ORGANISATION_CA, CertKind.DEVICE_CA])
def test_subordinate_ca_certificates(file_ca: FileCA, kind: CertKind) -> None:
    h, s = file_ca.hierarchy, file_ca.settings
    cert = h.organisation_ca if kind is CertKind.ORGANISATION_CA else h.device_ca
    policy = s.organisation_policy_oid if kind is CertKind.ORGANISATION_CA else s.device_policy_oid
    _ca_checks(cert, 0, [policy])
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert [e.oid for e in cert.extensions][-1] == ExtensionOID.AUTHORITY_KEY_IDENTIFIER and not aki.critical
    assert aki.value.key_identifier == key_identifier(h.root.public_key())  # type: ignore[arg-type]
    cert.verify_directly_issued_by(h.root)
    assert cert.not_valid_after_utc <= h.root.not_valid_after_utc


def test_a_ca_name_a_printable_string_cannot_hold_is_refused(det_ca: DeterministicCA) -> None:
    """Spec §7.5: CA names are PrintableString; no silent UTF8String fallback."""
    from dataclasses import replace

    settings = replace(det_ca.settings, device_ca_name="Gerät_1")
    with pytest.raises(SmkiError) as caught:
        build_subordinate_ca(
            CertKind.DEVICE_CA, det_ca.device_signer.public_key(), det_ca.root, det_ca.root_signer, settings, NOW
        )
    assert caught.value.code == "ca.bad-name"


def test_openssl_verifies_both_chains(file_ca: FileCA, tmp_path: object) -> None:
    from pathlib import Path

    directory = Path(str(tmp_path))
    device = build_device(
        device_request(), file_ca.hierarchy.device_ca, file_ca.device_signer, file_ca.settings, NOW
    )
    org = build_organisation(
        organisation_request(),
        file_ca.hierarchy.organisation_ca,
        file_ca.organisation_signer,
        file_ca.settings,
        NOW,
    )
    root = file_ca.directory / "root.pem"
    for leaf, ca in ((device, "dca.pem"), (org, "oca.pem")):
        leaf_path = write_pem(directory, "leaf.pem", leaf)
        result = openssl(
            "verify",
            "-attime",
            str(int(NOW.timestamp()) + 60),
            "-CAfile",
            root,
            "-untrusted",
            file_ca.directory / ca,
            leaf_path,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith(b"OK")
    # The Device chain does not validate through the Organisation CA.
    wrong = openssl(
        "verify",
        "-CAfile",
        root,
        "-untrusted",
        file_ca.directory / "oca.pem",
        write_pem(directory, "d.pem", device),
    )
    assert wrong.returncode != 0


# --- serials --------------------------------------------------------------------------------


def test_random_serial_is_sixteen_positive_octets() -> None:
    serials = {random_serial() for _ in range(5000)}
    assert len(serials) == 5000
    for serial in serials:
        content = serial.to_bytes(16, "big")
        assert 0x01 <= content[0] <= 0x7F  # no leading zero octet dropped, no sign octet added
    assert min(s >> 120 for s in serials) == 1 and max(s >> 120 for s in serials) == 0x7F


def test_explicit_serial_is_used(det_ca: DeterministicCA) -> None:
    cert = build_device(
        device_request(), det_ca.device_ca, det_ca.device_signer, det_ca.settings, NOW, serial=0x42
    )
    assert cert.serial_number == 0x42


# --- refusals -------------------------------------------------------------------------------


def test_wrong_signer_is_refused(file_ca: FileCA) -> None:
    with pytest.raises(SmkiError) as err:
        build_device(
            device_request(), file_ca.hierarchy.device_ca, file_ca.organisation_signer, file_ca.settings, NOW
        )
    assert err.value.code == "ca.wrong-signer"
    with pytest.raises(SmkiError) as err:
        build_organisation(
            organisation_request(),
            file_ca.hierarchy.organisation_ca,
            file_ca.device_signer,
            file_ca.settings,
            NOW,
        )
    assert err.value.code == "ca.wrong-signer"


def _compressed(request: DeviceRequest | OrganisationRequest) -> tuple[bytes, bytes]:
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), request.point)
    point = key.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo), point


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda r: DeviceRequest(r.device_id[:7], r.usage, r.spki_der, r.point), "ca.bad-device-id"),
        (lambda r: DeviceRequest(r.device_id, r.usage, r.spki_der, r.point[:-1] + bytes([r.point[-1] ^ 1])),
         "ca.bad-key"),
        (lambda r: DeviceRequest(r.device_id, r.usage, *_compressed(r)), "ca.bad-key"),
        (
            lambda r: DeviceRequest(
                r.device_id, r.usage, r.spki_der[:-65] + b"\x04" + b"\x01" * 64, b"\x04" + b"\x01" * 64
            ),
            "ca.bad-key",
        ),
    ],
)
def test_bad_device_requests_are_refused(det_ca: DeterministicCA, mutate: object, code: str) -> None:
    bad = mutate(device_request())  # type: ignore[operator]
    with pytest.raises(SmkiError) as err:
        build_device(bad, det_ca.device_ca, det_ca.device_signer, det_ca.settings, NOW)
    assert err.value.code == code


def test_non_p256_key_is_refused(det_ca: DeterministicCA) -> None:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    point = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    with pytest.raises(SmkiError) as err:
        build_device(
            DeviceRequest(b"\x00" * 8, Usage.DS, spki, point),
            det_ca.device_ca,
            det_ca.device_signer,
            det_ca.settings,
            NOW,
        )
    assert err.value.code == "ca.bad-key"
    with pytest.raises(SmkiError) as err:
        build_subordinate_ca(CertKind.DEVICE_CA, key, det_ca.root, det_ca.root_signer, det_ca.settings, NOW)
    assert err.value.code == "ca.bad-key"


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (organisation_request(entity_id=b"\x01" * 9), "ca.bad-entity-id"),
        (organisation_request(common_name=""), "ca.bad-common-name"),
        (organisation_request(common_name="x" * 65), "ca.bad-common-name"),
    ],
)
def test_bad_organisation_requests_are_refused(
    det_ca: DeterministicCA, request_: OrganisationRequest, code: str
) -> None:
    with pytest.raises(SmkiError) as err:
        build_organisation(request_, det_ca.organisation_ca, det_ca.organisation_signer, det_ca.settings, NOW)
    assert err.value.code == code


def test_issuing_outside_the_issuer_validity_is_refused(det_ca: DeterministicCA) -> None:
    for when in (
        det_ca.device_ca.not_valid_before_utc - timedelta(seconds=1),
        det_ca.device_ca.not_valid_after_utc + timedelta(seconds=1),
    ):
        with pytest.raises(SmkiError) as err:
            build_device(device_request(), det_ca.device_ca, det_ca.device_signer, det_ca.settings, when)
        assert err.value.code == "ca.issuer-not-valid"
    with pytest.raises(SmkiError) as err:
        build_organisation(
            organisation_request(),
            det_ca.organisation_ca,
            det_ca.organisation_signer,
            det_ca.settings,
            datetime(2015, 1, 1, tzinfo=UTC),
        )
    assert err.value.code == "ca.issuer-not-valid"


def test_bad_kind_and_serial_are_refused(det_ca: DeterministicCA) -> None:
    with pytest.raises(SmkiError) as err:
        build_subordinate_ca(
            CertKind.DEVICE,
            det_ca.device_signer.public_key(),
            det_ca.root,
            det_ca.root_signer,
            det_ca.settings,
            NOW,
        )
    assert err.value.code == "ca.bad-kind"
    for serial in (0, -5, 1 << 159):
        with pytest.raises(SmkiError) as err:
            build_device(
                device_request(), det_ca.device_ca, det_ca.device_signer, det_ca.settings, NOW, serial=serial
            )
        assert err.value.code == "ca.bad-serial"


def test_lint_refusal_happens_before_the_real_signature(
    det_ca: DeterministicCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate pkilint refuses never carries a CA signature."""
    signer = RecordingSigner("organisation-ca", det_ca.organisation_signer._key)
    monkeypatch.setattr(
        profiles,
        "pkilint_findings",
        lambda der: [Finding(Severity.ERROR, "pkix.synthetic", "injected", "certificate")],
    )
    with pytest.raises(SmkiError) as err:
        build_organisation(organisation_request(), det_ca.organisation_ca, signer, det_ca.settings, NOW)
    assert err.value.code == "ca.lint-failed"
    assert "pkix.synthetic" in err.value.message
    assert signer.signed == []
    root_signer = RecordingSigner("root", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(SmkiError):
        build_root(root_signer, det_ca.settings, NOW)
    assert root_signer.signed == []


def test_signature_is_checked_after_signing(det_ca: DeterministicCA) -> None:
    """A backend that signs with the wrong key (or garbage) is caught before the cert leaves."""

    class Liar(RecordingSigner):
        def sign(self, data: bytes) -> bytes:
            return ec.generate_private_key(ec.SECP256R1()).sign(data, ec.ECDSA(hashes.SHA256()))

    liar = Liar("device-ca", det_ca.device_signer._key)
    with pytest.raises(SmkiError) as err:
        build_device(device_request(), det_ca.device_ca, liar, det_ca.settings, NOW)
    assert err.value.code == "ca.bad-signature"


def test_reference_extension_bytes_are_reproduced(file_ca: FileCA) -> None:
    """The SAN and policies of the DS reference, byte for byte, for its own Device ID."""
    ref = reference("00db123456789001-ds.pem")
    ours = build_device(
        device_request(), file_ca.hierarchy.device_ca, file_ca.device_signer, file_ca.settings, NOW
    )
    ref_asn1, ours_asn1 = decode_certificate(_der(ref)), decode_certificate(_der(ours))
    for oid in (rfc5280.id_ce_subjectAltName, rfc5280.id_ce_certificatePolicies, rfc5280.id_ce_keyUsage):
        assert extension_value(ours_asn1, oid) == extension_value(ref_asn1, oid)


@settings(max_examples=100, deadline=None)
@given(arcs=st.lists(st.integers(min_value=0, max_value=2**40), min_size=1, max_size=8),
       first=st.integers(min_value=0, max_value=2), serial=st.binary(min_size=0, max_size=20))
def test_hardware_module_name_encodes_as_pyasn1_alt_modules_rfc4108(arcs: list[int], first: int,
                                                                    serial: bytes) -> None:
    from pyasn1.codec.der import encoder
    from pyasn1.type import univ

    oid = ".".join(str(arc) for arc in [first, arcs[0] % 40 if first < 2 else arcs[0], *arcs[1:]])
    reference = rfc4108.HardwareModuleName()
    reference["hwType"] = univ.ObjectIdentifier(oid)
    reference["hwSerialNum"] = univ.OctetString(serial)
    assert hardware_module_name(oid, serial) == bytes(encoder.encode(reference))
