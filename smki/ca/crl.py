"""CRLs and ARLs (spec §4.3): v2 lists signed through a ``Signer``.

The Organisation CA signs the CRL of revoked Organisation Certificates; the Root signs the ARL of
revoked CA certificates. Both have the same shape: v2, ecdsa-with-SHA256, AKI (keyIdentifier only,
matching the issuer's SKI) and CRL number, one entry per revoked serial with a reasonCode unless
the reason is unspecified (RFC 5280 §5.3.1 says to omit it then). As for certificates,
``cryptography`` builds the list with a throw-away key, which gives the TBSCertList bytes; the
issuer key signs those through its ``Signer``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from smki.ca.der import signed_structure
from smki.ca.profiles import (
    issuer_key_identifier,
    normalise_time,
    require_issuer_valid,
    require_signer,
    throwaway_key,
)
from smki.errors import SmkiError
from smki.keys.base import Signer

#: RFC 5280 §5.3.1 CRLReason codes (7 is unused); 0 (unspecified) is written by omitting the entry
#: extension.
REASONS: dict[int, x509.ReasonFlags] = {
    1: x509.ReasonFlags.key_compromise,
    2: x509.ReasonFlags.ca_compromise,
    3: x509.ReasonFlags.affiliation_changed,
    4: x509.ReasonFlags.superseded,
    5: x509.ReasonFlags.cessation_of_operation,
    6: x509.ReasonFlags.certificate_hold,
    8: x509.ReasonFlags.remove_from_crl,
    9: x509.ReasonFlags.privilege_withdrawn,
    10: x509.ReasonFlags.aa_compromise,
}
UNSPECIFIED = 0
_MAX_NUMBER = 1 << 159  # CRL numbers are at most 20 octets (RFC 5280 §5.2.3)


_ENTRY_EXTENSIONS: dict[int | None, list[x509.Extension[x509.ExtensionType]]] = {
    code: [x509.Extension(CRLEntryExtensionOID.CRL_REASON, False, x509.CRLReason(flag))]
    for code, flag in REASONS.items()
}
_ENTRY_EXTENSIONS[None] = _ENTRY_EXTENSIONS[UNSPECIFIED] = []


def _entry(serial: int, revoked_at: datetime, reason: int | None, seen: set[int]) -> x509.RevokedCertificate:
    """One revokedCertificates entry; a serial may appear only once on a list."""
    if not 0 < serial < _MAX_NUMBER:
        raise SmkiError("ca.bad-serial", f"{serial!r} is not a certificate serial")
    if serial in seen:
        raise SmkiError("ca.crl-duplicate", f"serial {serial:x} appears twice on the list")
    seen.add(serial)
    extensions = _ENTRY_EXTENSIONS.get(reason)
    if extensions is None:
        raise SmkiError("ca.bad-reason", f"{reason!r} is not an RFC 5280 CRL reason code")
    return x509.RevokedCertificateBuilder(serial, normalise_time(revoked_at), extensions).build()


def build_crl(
    issuer: x509.Certificate,
    signer: Signer,
    entries: Iterable[tuple[int, datetime, int | None]],
    number: int,
    this_update: datetime,
    next_update: datetime,
) -> x509.CertificateRevocationList:
    """A v2 CRL (or ARL, when ``issuer`` is the Root) of ``(serial, revoked_at, reason)`` entries."""
    issuer_key = issuer.public_key()
    if not isinstance(issuer_key, ec.EllipticCurvePublicKey):
        raise SmkiError("ca.bad-key", "a CRL issuer key must be EC P-256")
    require_signer(signer, issuer_key, "CRL issuer")
    require_issuer_valid(issuer, this_update, "CRL issuer")
    if not 0 <= number < _MAX_NUMBER:
        raise SmkiError("ca.bad-crl-number", "a CRL number must be non-negative and at most 20 octets")
    this_update = normalise_time(this_update)
    next_update = normalise_time(next_update)
    if next_update <= this_update:
        raise SmkiError("ca.bad-crl-dates", "a CRL's nextUpdate must be after its thisUpdate")
    seen: set[int] = set()
    revoked = [_entry(serial, revoked_at, reason, seen) for serial, revoked_at, reason in entries]
    # The constructor, not add_revoked_certificate(): that copies the whole list on every call,
    # which makes a 100,000-entry CRL quadratic (seconds instead of milliseconds).
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=issuer.subject,
        last_update=this_update,
        next_update=next_update,
        extensions=[
            x509.Extension(
                ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
                False,
                x509.AuthorityKeyIdentifier(issuer_key_identifier(issuer), None, None),
            ),
            x509.Extension(ExtensionOID.CRL_NUMBER, False, x509.CRLNumber(number)),
        ],
        revoked_certificates=revoked,
    )
    tbs = builder.sign(throwaway_key(), hashes.SHA256()).tbs_certlist_bytes
    crl = x509.load_der_x509_crl(signed_structure(tbs, signer.sign(tbs)))
    try:
        issuer_key.verify(crl.signature, tbs, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise SmkiError("ca.bad-signature", "the CRL signature does not verify") from exc
    return crl
