"""Duplicate keys (issue 13 point 5): no public key is certified twice, by any path, any kind.

The DCC answers ``CR:9999`` (duplicate) for a CSR whose key already has a certificate; smki refuses
it as ``csr.duplicate`` — a Device CSR whose key was certified for another Device or usage, the
same CSR sent again, an Organisation CSR sent twice, and two CSRs with one key in the same batch.

One exception, configurable (``reissue-organisation-same-key``, on by default): spec §7.6 says
Organisation Certificates "expire in real use and are re-issued for the same keys" (the DCC did so
in 2025). So an Organisation CSR may reuse a key whose latest certificate is an Organisation
Certificate *for the same Entity Identifier, role and usage* that is expired (``E`` or past its
notAfter) or not in use (``N``). Never for a revoked one (a compromised key stays refused), never
across subjects or usages, never for Device keys (a Device makes a new key for every replacement,
spec §7.6).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, cast

from smki.ca.keyid import certificate_key_fingerprint, key_fingerprint
from smki.domain import CertKind, CertStatus
from smki.errors import SmkiError
from smki.store.certified_keys import certified_key_reads, certified_key_writes

if TYPE_CHECKING:
    from smki.ca.requests import OrganisationRequest
    from smki.services.context import Home
    from smki.store.transaction import Transaction

DUPLICATE_KEY = "csr.duplicate"

#: One batch result as the signing workers return it: ``(index, item_id, device_id, usage, serial,
#: der)`` when issued, ``(index, item_id, code, message)`` when refused.
_Result = tuple[int, str, bytes, str, str, bytes] | tuple[int, str, str, str]
_ChunkResult = tuple[datetime, list[_Result]]


def _duplicate(result: _Result, what: str) -> _Result:
    return (result[0], result[1], DUPLICATE_KEY, f"this CSR's public key {what}; a key is certified once")


def refuse_duplicate_device_keys(home: Home, chunks: Sequence[_ChunkResult],
                                 ) -> tuple[list[_ChunkResult], list[tuple[bytes, str]]]:
    """The chunks with every certificate whose key is already certified — before, or earlier in
    these chunks — turned into a ``csr.duplicate`` refusal (its signature is thrown away: it was
    never recorded nor handed out), and the (fingerprint, serial) pairs to record for the rest.

    One bulk look-up for all the chunks; the writer commits chunks in batch order, so a key met in
    an earlier commit of the same batch is found in the register.
    """
    fingerprints: list[bytes | None] = []
    for _, results in chunks:
        for result in results:
            fingerprints.append(certificate_key_fingerprint(result[5]) if len(result) == 6 else None)
    known = certified_key_reads(home.store).serials([f for f in fingerprints if f is not None])
    seen: set[bytes] = set()
    pairs: list[tuple[bytes, str]] = []
    out: list[_ChunkResult] = []
    position = 0
    for not_before, results in chunks:
        kept: list[_Result] = []
        for result in results:
            fingerprint = fingerprints[position]
            position += 1
            if fingerprint is None:
                kept.append(result)
            elif fingerprint in known:
                kept.append(_duplicate(result, f"is already certified (certificate {known[fingerprint]})"))
            elif fingerprint in seen:
                kept.append(_duplicate(result, "is in an earlier CSR of this batch"))
            else:
                seen.add(fingerprint)
                issued = cast(tuple[int, str, bytes, str, str, bytes], result)
                pairs.append((fingerprint, issued[4]))
                kept.append(result)
        out.append((not_before, kept))
    return out, pairs


def record_device_keys(tx: Transaction, pairs: Sequence[tuple[bytes, str]]) -> None:
    certified_key_writes(tx).record(pairs)


def claim_organisation_key(home: Home, tx: Transaction, request: OrganisationRequest, serial: str,
                           now: datetime) -> None:
    """Record the key of an Organisation Certificate being issued, or refuse it as a duplicate
    (inside the issuing transaction, so the check and the record cannot be split by another)."""
    fingerprint = key_fingerprint(request.point)
    writes = certified_key_writes(tx)
    previous = writes.serials([fingerprint]).get(fingerprint)
    if previous is None:
        writes.record([(fingerprint, serial)])
        return
    if home.settings.reissue_organisation_same_key and _reissuable(home, previous, request, now):
        writes.move(fingerprint, serial)
        return
    raise SmkiError(DUPLICATE_KEY, f"this CSR's public key is already certified (certificate {previous}); "
                    "a key is certified once, or re-issued for the same subject once its certificate expired")


def _reissuable(home: Home, serial: str, request: OrganisationRequest, now: datetime) -> bool:
    """Whether ``serial`` is an expired or not-in-use Organisation Certificate for the same subject."""
    record = home.store.certificate_by_serial(serial)
    if record is None or record.kind is not CertKind.ORGANISATION:
        return False
    same_subject = (record.entity_id, record.role, record.usage) == (
        request.entity_id, int(request.role), request.usage)
    finished = record.status in (CertStatus.EXPIRED, CertStatus.NOT_IN_USE) or (
        record.status is not CertStatus.REVOKED and record.not_after < now)
    return same_subject and finished


def record_ca_keys(tx: Transaction, certificates: Sequence[tuple[bytes, str]]) -> None:
    """The CA certificates' keys (DER, serial): a subscriber CSR can never get a CA's key certified.
    A CA key certified again (a new CA certificate for an existing key) moves to the new serial."""
    writes = certified_key_writes(tx)
    pairs = [(certificate_key_fingerprint(der), serial) for der, serial in certificates]
    known = writes.serials([fingerprint for fingerprint, _ in pairs])
    writes.record([(fingerprint, serial) for fingerprint, serial in pairs if fingerprint not in known])
    for fingerprint, serial in pairs:
        if fingerprint in known:
            writes.move(fingerprint, serial)
