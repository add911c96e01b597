"""Pre-issuance linting with pkilint (spec §4.5).

Organisation and CA certificates are linted before the real signature, as Let's Encrypt's Boulder
does: a certificate that an RFC 5280 linter refuses must never carry a CA signature. The validator
is the one ``lint_pkix_cert`` runs, built once per process (building it costs far more than
linting one certificate), with one configuration fix: pkilint does not know attribute type
``2.5.4.45`` and decodes it as a DirectoryString, so every correct Organisation Certificate (the
DCC's own included) would get a FATAL ``itu.invalid_asn1_syntax``. X.520 defines
x500UniqueIdentifier as UniqueIdentifier (a BIT STRING), so we teach pkilint that mapping rather
than bend the profile.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from smki.errors import SmkiError

X500_UNIQUE_IDENTIFIER = "2.5.4.45"
CRL_KINDS = ("CRL", "ARL")


class Severity(IntEnum):
    """pkilint's severities, most severe first (so ``<=`` ERROR means "refuse")."""

    FATAL = 0
    ERROR = 1
    WARNING = 2
    NOTICE = 3
    INFO = 4
    DEBUG = 5


@dataclass(frozen=True, slots=True)
class Finding:
    """One pkilint finding: its severity, code (e.g. ``pkix.…``), message and document path."""

    severity: Severity
    code: str
    message: str
    path: str

    def __str__(self) -> str:
        text = f"{self.severity.name} {self.code} at {self.path}"
        return f"{text}: {self.message}" if self.message else text


_lock = threading.Lock()
_cert_validator: Any = None
_crl_validator: Any = None


def _configure_attribute_mappings() -> dict[Any, Any]:
    """Add ``2.5.4.45 → UniqueIdentifier`` to pkilint's attribute mappings (idempotent)."""
    from pkilint.pkix import name
    from pyasn1.type import univ
    from pyasn1_alt_modules import rfc5280

    mappings: dict[Any, Any] = name.ATTRIBUTE_TYPE_MAPPINGS
    mappings[univ.ObjectIdentifier(X500_UNIQUE_IDENTIFIER)] = rfc5280.UniqueIdentifier()
    return mappings


def _certificate_validator() -> Any:
    global _cert_validator
    with _lock:
        if _cert_validator is None:
            from pkilint.pkix import certificate, extension

            mappings = _configure_attribute_mappings()
            _cert_validator = certificate.create_pkix_certificate_validator_container(
                certificate.create_decoding_validators(mappings, extension.EXTENSION_MAPPINGS),
                [
                    certificate.create_issuer_validator_container([]),
                    certificate.create_validity_validator_container(),
                    certificate.create_subject_validator_container([]),
                    certificate.create_extensions_validator_container([]),
                    certificate.create_spki_validator_container([]),
                ],
            )
        return _cert_validator


def _crl_validator_container() -> Any:
    """The validator ``lint_crl -p PKIX`` builds; its CRL/ARL type only matters for the BR profile."""
    global _crl_validator
    with _lock:
        if _crl_validator is None:
            from pkilint import pkix
            from pkilint.pkix import crl, extension

            mappings = _configure_attribute_mappings()
            _crl_validator = crl.create_pkix_crl_validator_container(
                [
                    pkix.create_attribute_decoder(mappings),
                    pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
                ],
                [
                    crl.create_issuer_validator_container([]),
                    crl.create_validity_validator_container([]),
                    crl.create_extensions_validator_container([]),
                ],
            )
        return _crl_validator


def _findings(results: Any) -> list[Finding]:
    found: list[Finding] = []
    for result in results:
        for description in result.finding_descriptions:
            found.append(
                Finding(
                    severity=Severity(int(description.finding.severity)),
                    code=str(description.finding.code),
                    message=str(description.message or ""),
                    path=str(result.node.path),
                )
            )
    return found


def _load(loader: Any, der: bytes, what: str) -> Any:
    try:
        return loader.load_der_document(der, what)
    except Exception as exc:  # pkilint/pyasn1 raise many types on undecodable input
        raise SmkiError("ca.lint-undecodable", f"pkilint cannot decode the {what}: {exc}") from exc


def pkilint_findings(cert_der: bytes) -> list[Finding]:
    """Every finding of pkilint's RFC 5280 certificate lint (``lint_pkix_cert``) on ``cert_der``."""
    from pkilint import loader

    document = _load(loader.RFC5280CertificateDocumentLoader(), cert_der, "certificate")
    return _findings(_certificate_validator().validate(document.root))


def crl_findings(crl_der: bytes, kind: str) -> list[Finding]:
    """Every finding of pkilint's RFC 5280 CRL lint (``lint_crl -t CRL|ARL -p PKIX``)."""
    if kind not in CRL_KINDS:
        raise SmkiError("ca.lint-bad-kind", f"CRL kind must be one of {', '.join(CRL_KINDS)}, got {kind!r}")
    from pkilint import loader

    document = _load(loader.RFC5280CertificateListDocumentLoader(), crl_der, kind)
    return _findings(_crl_validator_container().validate(document.root))


def refuse_on_errors(findings: list[Finding], what: str) -> None:
    """Raise ``ca.lint-failed`` naming every ERROR or FATAL finding; lesser findings pass."""
    bad = [f for f in findings if f.severity <= Severity.ERROR]
    if bad:
        raise SmkiError("ca.lint-failed", f"{what} refused by pkilint: " + "; ".join(str(f) for f in bad))
