"""smki's Organisation CA certificate against the DCC test Organisation CA, as spec §7.5 describes it.

The DCC's test OCA (``OU=07, CN=Z1`` issued by ``OU=00, CN=ZA``, from the DUIS templates) is known
to us by its description, not its bytes: PrintableString names, validity 2015-10-29 00:00:00 →
2040-10-28 23:59:59 in UTCTime (25 years), and extensions keyUsage (critical; keyCertSign,
cRLSign), basicConstraints (critical; cA, pathLen 0), certificatePolicies (critical; the
Organisation policy), subjectKeyIdentifier (8 octets), authorityKeyIdentifier. ``DCC_TEST_OCA``
writes that description down in the terms of ``tests.ca.structure.shape`` and the test requires
smki's Organisation CA, issued on the same day with the default settings, to have exactly it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from smki.ca.profiles import build_root, build_subordinate_ca
from smki.config import Settings
from smki.domain import CertKind
from tests.ca.conftest import DeterministicSigner
from tests.ca.structure import decode_certificate, shape

#: The issue day of the DCC's test OCA.
DCC_OCA_ISSUED = datetime(2015, 10, 29, 9, 30, tzinfo=UTC)

PRINTABLE_OU_CN = [("2.5.4.11", "PrintableString"), ("2.5.4.3", "PrintableString")]
DCC_TEST_OCA = {
    "issuer": PRINTABLE_OU_CN,
    "subject": PRINTABLE_OU_CN,
    "not_before_type": "utcTime",
    "not_after_type": "utcTime",
    "extensions": [
        ("2.5.29.15", True),  # keyUsage
        ("2.5.29.19", True),  # basicConstraints
        ("2.5.29.32", True),  # certificatePolicies
        ("2.5.29.14", False),  # subjectKeyIdentifier
        ("2.5.29.35", False),  # authorityKeyIdentifier
    ],
    "ski_octets": 8,
}
DCC_OCA_VALIDITY = (datetime(2015, 10, 29, 0, 0, 0, tzinfo=UTC), datetime(2040, 10, 28, 23, 59, 59, tzinfo=UTC))


def _organisation_ca(settings: Settings) -> x509.Certificate:
    root_signer = DeterministicSigner("root", ec.generate_private_key(ec.SECP256R1()))
    oca_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    root = build_root(root_signer, settings, DCC_OCA_ISSUED)
    return build_subordinate_ca(CertKind.ORGANISATION_CA, oca_key, root, root_signer, settings, DCC_OCA_ISSUED)


def test_organisation_ca_has_the_shape_of_the_dcc_test_oca() -> None:
    settings = Settings(root_name="ZA", organisation_ca_name="Z1")
    oca = _organisation_ca(settings)
    der = oca.public_bytes(Encoding.DER)
    ours = shape(der)
    assert {key: ours[key] for key in DCC_TEST_OCA} == DCC_TEST_OCA
    assert (oca.not_valid_before_utc, oca.not_valid_after_utc) == DCC_OCA_VALIDITY
    assert oca.subject.rfc4514_string() == "CN=Z1,OU=07"
    assert oca.issuer.rfc4514_string() == "CN=ZA,OU=00"
    ku = oca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature and not ku.key_agreement
    bc = oca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    policies = oca.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == [settings.organisation_policy_oid]
    # Independently of cryptography: the raw validity is two UTCTimes of the DCC's values.
    validity = decode_certificate(der)["tbsCertificate"]["validity"]
    assert str(validity["notBefore"]["utcTime"]) == "151029000000Z"
    assert str(validity["notAfter"]["utcTime"]) == "401028235959Z"


def test_ca_validity_is_configurable() -> None:
    oca = _organisation_ca(Settings(ca_validity_years=20))
    assert oca.not_valid_after_utc == datetime(2035, 10, 28, 23, 59, 59, tzinfo=UTC)
