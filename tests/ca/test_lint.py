"""pkilint with the 2.5.4.45 mapping (spec §4.5): the references and our certificates lint clean."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from smki.ca.lint import (
    Finding,
    Severity,
    crl_findings,
    pkilint_findings,
    refuse_on_errors,
)
from smki.ca.profiles import build_organisation
from smki.domain import RemotePartyRole, Usage
from smki.errors import SmkiError
from tests.ca.conftest import NOW, REFERENCE_DIR, FileCA, organisation_request, reference

REFERENCES = sorted(p.name for p in REFERENCE_DIR.glob("*.pem"))


def _above_info(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity < Severity.INFO]


@pytest.mark.parametrize("name", REFERENCES)
def test_reference_certificates_lint_clean_with_the_mapping(name: str) -> None:
    findings = pkilint_findings(reference(name).public_bytes(Encoding.DER))
    assert _above_info(findings) == []
    assert {f.code for f in findings} <= {"pkix.subject_key_identifier_method_2_identified"}


def test_without_the_mapping_pkilint_rejects_the_dcc_certificates() -> None:
    """Why the mapping exists: stock pkilint decodes 2.5.4.45 as a DirectoryString and fails."""
    from pkilint import loader
    from pkilint.pkix import certificate, extension, name
    from pyasn1.type import univ

    stock = {k: v for k, v in name.ATTRIBUTE_TYPE_MAPPINGS.items() if k != univ.ObjectIdentifier("2.5.4.45")}
    validator = certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(stock, extension.EXTENSION_MAPPINGS),
        [certificate.create_subject_validator_container([])],
    )
    document = loader.RFC5280CertificateDocumentLoader().load_der_document(
        reference("Z1-supplier-ds.pem").public_bytes(Encoding.DER), "reference"
    )
    codes = [
        (d.finding.severity.name, d.finding.code)
        for result in validator.validate(document.root)
        for d in result.finding_descriptions
    ]
    assert ("FATAL", "itu.invalid_asn1_syntax") in codes


def test_our_ca_certificates_lint_clean(file_ca: FileCA) -> None:
    h = file_ca.hierarchy
    for cert in (h.root, h.organisation_ca, h.device_ca):
        assert _above_info(pkilint_findings(cert.public_bytes(Encoding.DER))) == []


@pytest.mark.parametrize("role", list(RemotePartyRole))
@pytest.mark.parametrize("usage", list(Usage))
def test_our_organisation_certificates_lint_clean(
    file_ca: FileCA, role: RemotePartyRole, usage: Usage
) -> None:
    cert = build_organisation(
        organisation_request(role=role, usage=usage, common_name=None if role % 2 else "Ünïcode Energy"),
        file_ca.hierarchy.organisation_ca,
        file_ca.organisation_signer,
        file_ca.settings,
        NOW,
    )
    assert _above_info(pkilint_findings(cert.public_bytes(Encoding.DER))) == []


def test_refuse_on_errors_names_every_error_and_ignores_warnings() -> None:
    findings = [
        Finding(Severity.WARNING, "pkix.w", "", "a"),
        Finding(Severity.ERROR, "pkix.e", "bad", "b"),
        Finding(Severity.FATAL, "pkix.f", "", "c"),
    ]
    refuse_on_errors(findings[:1], "x")
    with pytest.raises(SmkiError) as err:
        refuse_on_errors(findings, "Widget")
    assert err.value.code == "ca.lint-failed"
    assert (
        "pkix.e" in err.value.message and "pkix.f" in err.value.message and "pkix.w" not in err.value.message
    )
    assert "\n" not in err.value.message


def test_undecodable_input_is_a_refusal_not_a_traceback() -> None:
    with pytest.raises(SmkiError) as err:
        pkilint_findings(b"\x30\x03\x02\x01")
    assert err.value.code == "ca.lint-undecodable"
    with pytest.raises(SmkiError) as err:
        crl_findings(b"\x30\x00", "CRL")
    assert err.value.code == "ca.lint-undecodable"
    with pytest.raises(SmkiError) as err:
        crl_findings(b"", "DRL")
    assert err.value.code == "ca.lint-bad-kind"


def test_the_reference_certificates_are_there() -> None:
    """Without them the profile comparisons above would be parametrised over nothing and pass."""
    assert len(REFERENCES) >= 4, REFERENCE_DIR
