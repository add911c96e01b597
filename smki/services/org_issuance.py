"""Organisation Certificate issuance (one CSR at a time, as the SMKI Portal does).

The CSR is checked (``smki.ca.csr``), the certificate built and linted by the profile
(``smki.ca.profiles``), and stored with its audit record in one transaction before it is
returned. Policy — who may ask for which Entity Identifier and role — is the RA's, applied by
the request service in front of this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.audit import AuditEvent
from smki.domain import CertKind, CertStatus
from smki.services.context import Home

ORGANISATION_CA_LABEL = "organisation-ca"


@dataclass(frozen=True)
class IssuedOrganisation:
    serial: str
    der: bytes
    certificate: x509.Certificate


def issue_organisation(home: Home, csr_data: bytes, *, actor: str, extra_audit: dict[str, object] | None = None,
                       now: datetime | None = None) -> IssuedOrganisation:
    from smki.ca.csr import check_organisation_csr, decode_csr_text
    from smki.ca.keyid import key_identifier
    from smki.ca.profiles import build_organisation
    from smki.store import NewCertificate

    request = check_organisation_csr(decode_csr_text(csr_data), home.settings.role_usages)
    issuer = home.ca_certificate(CertKind.ORGANISATION_CA)
    signer = home.backend().signer(ORGANISATION_CA_LABEL)
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    cert = build_organisation(request, issuer, signer, home.settings, moment)
    der = cert.public_bytes(Encoding.DER)
    serial = f"{cert.serial_number:032x}"
    row = NewCertificate(
        serial=serial, kind=CertKind.ORGANISATION, usage=request.usage,
        issuer_key_id=key_identifier(issuer.public_key()).hex(),  # type: ignore[arg-type]
        device_id=None, entity_id=request.entity_id, role=int(request.role), status=CertStatus.IN_USE,
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc, der=der, issued_at=moment,
        batch_id=None,
    )
    details: dict[str, object] = {
        "kind": "org", "entity_id": request.entity_id.hex(), "role": int(request.role),
        "usage": request.usage.value,
    }
    details.update(extra_audit or {})
    from smki.services.key_register import claim_organisation_key

    with home.store.transaction() as tx:
        claim_organisation_key(home, tx, request, serial, moment)
        tx.add_certificates([row])
        tx.append_audit([AuditEvent(actor, "certificate.issued", serial, details)])
    return IssuedOrganisation(serial, der, cert)
