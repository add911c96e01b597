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

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING

from smki.ca.keyid import certificate_key_fingerprint, key_fingerprint
from smki.domain import CertKind, CertStatus
from smki.errors import SmkiError

if TYPE_CHECKING:
    from smki.ca.requests import OrganisationRequest
    from smki.services.context import Home
    from smki.store.certified_keys import CertifiedKeyWrites
    from smki.store.transaction import Transaction

DUPLICATE_KEY = "csr.duplicate"

#: A CSR of a batch between the signing workers' two passes. Checked (it passed every CSR check and
#: is ready to build): ``(index, item_id, device_id, usage, fingerprint, hw_type, point)``; refused:
#: ``(index, item_id, code, message)`` — the only entries of length 4.
Checked = tuple[int, str, bytes, str, bytes, str, bytes]
Refusal = tuple[int, str, str, str]
Entry = Checked | Refusal
#: A screen turns some checked entries of one chunk into refusals, before anything is signed.
Screen = Callable[[list[Entry]], list[Entry]]


def in_order(*screens: Screen) -> Screen:
    """One screen applying ``screens`` in turn: a CSR one of them refuses reaches none after it (so an
    ineligible CSR uses no Device slot, and a refused CSR's key is not claimed)."""
    if len(screens) == 1:
        return screens[0]

    def screen(entries: list[Entry]) -> list[Entry]:
        for each in screens:
            entries = each(entries)
        return entries

    return screen


def _writes(tx: Transaction) -> CertifiedKeyWrites:
    """The key register in ``tx``. Imported here, not at the top: the signing workers import this
    module for its entry types (through :mod:`smki.services.device_issuance`) and never touch the
    database, and the store's import (SQLAlchemy) was two thirds of each worker's start-up time."""
    from smki.store.certified_keys import certified_key_writes

    return certified_key_writes(tx)


def _duplicate(entry: Entry, what: str) -> Refusal:
    return (entry[0], entry[1], DUPLICATE_KEY, f"this CSR's public key {what}; a key is certified once")


class DeviceKeyScreen:
    """A batch's duplicate-key screen: refuses, before signing, every CSR whose key is certified
    already, or is the key of an earlier CSR of the batch — however many chunks apart.

    One look-up per chunk (its fingerprints, computed by the workers' checking pass). The writer
    commits chunks in batch order, and a chunk is screened before any later one, so a key is either
    in the register (committed) or among the keys this screen let through and the writer has not
    committed yet (``_pending``, forgotten once they are: memory stays flat however long the batch).
    """

    def __init__(self, home: Home, *, known: Mapping[bytes, str | None] | None = None) -> None:
        from smki.store.certified_keys import certified_key_reads  # see ``_writes``

        self._reads = certified_key_reads(home.store)
        self._pending: set[bytes] = set()
        self._chunks: deque[list[bytes]] = deque()
        #: The register's answers read ahead for the first chunk (one Device CSR: ``ReadAhead``),
        #: used when they cover every key the checks found, else the register is read as usual.
        self._known = known

    def __call__(self, entries: list[Entry]) -> list[Entry]:
        fingerprints = [entry[4] for entry in entries if len(entry) != 4]
        ahead, self._known = self._known, None
        if ahead is not None and all(fingerprint in ahead for fingerprint in fingerprints):
            known = {fingerprint: serial for fingerprint in fingerprints if (serial := ahead[fingerprint]) is not None}
        else:
            known = self._reads.serials(fingerprints) if fingerprints else {}
        pending = self._pending
        if not known and pending.isdisjoint(fingerprints) and len(set(fingerprints)) == len(fingerprints):
            pending.update(fingerprints)  # the usual chunk: every key new (set operations, no loop)
            self._chunks.append(fingerprints)
            return entries
        accepted: list[bytes] = []
        out: list[Entry] = []
        for entry in entries:
            if len(entry) == 4:
                out.append(entry)
                continue
            fingerprint = entry[4]
            if fingerprint in known:
                out.append(_duplicate(entry, f"is already certified (certificate {known[fingerprint]})"))
            elif fingerprint in pending:
                out.append(_duplicate(entry, "is in an earlier CSR of this batch"))
            else:
                pending.add(fingerprint)
                accepted.append(fingerprint)
                out.append(entry)
        self._chunks.append(accepted)
        return out

    def held(self) -> AbstractContextManager[None]:
        """Around the batch: its look-ups share one connection on PostgreSQL (see ``CertifiedKeyReads.held``)."""
        return self._reads.held()

    def committed(self, chunks: int) -> None:
        """The writer committed the oldest ``chunks`` screened chunks: their keys are in the register."""
        for _ in range(chunks):
            self._pending.difference_update(self._chunks.popleft())


def record_device_keys(tx: Transaction, pairs: list[tuple[bytes, str]]) -> None:
    """Record (fingerprint, serial) pairs, in fingerprint order: the register's primary key is a
    hash, so rows in key order touch its pages once each, left to right, rather than at random."""
    pairs.sort()
    _writes(tx).record(pairs)


def claim_organisation_key(home: Home, tx: Transaction, request: OrganisationRequest, serial: str,
                           now: datetime) -> None:
    """Record the key of an Organisation Certificate being issued, or refuse it as a duplicate
    (inside the issuing transaction, so the check and the record cannot be split by another)."""
    fingerprint = key_fingerprint(request.point)
    writes = _writes(tx)
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
    writes = _writes(tx)
    pairs = [(certificate_key_fingerprint(der), serial) for der, serial in certificates]
    known = writes.serials([fingerprint for fingerprint, _ in pairs])
    writes.record([(fingerprint, serial) for fingerprint, serial in pairs if fingerprint not in known])
    for fingerprint, serial in pairs:
        if fingerprint in known:
            writes.move(fingerprint, serial)
