"""The audit record format and its hash chain (pure: no I/O).

Every state change in smki appends an audit record in the same database transaction as the change.
Records are hash-chained: record *n*'s hash covers record *n-1*'s hash, its own sequence number, time
and content, so editing, deleting, inserting or reordering any stored record breaks the chain at the
first record touched. The newest (seq, hash) is also kept in a separate head row; comparing with it
catches the one change the chain alone cannot see: deleting the newest records.

The hashed bytes are a canonical JSON array ``[seq, at, actor, action, subject, details]`` (sorted
keys, compact separators, UTF-8). ``details`` is stored as exactly its canonical JSON text, so a
verifier rebuilds the hashed bytes by string concatenation without parsing it again — the writer
computes one hash per event and the verifier one per row, in microseconds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from smki.errors import SmkiError

#: The hash "before" the first record.
GENESIS_HASH = bytes(32)
#: Domain separation: these bytes can never be mistaken for another SHA-256 use in smki.
_DOMAIN = b"smki-audit-v1\n"

_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class AuditError(SmkiError):
    """An audit event that cannot be recorded (codes ``audit.*``)."""


@dataclass(frozen=True)
class AuditEvent:
    """What happened: who (``actor``) did what (``action``, e.g. ``cert.issue``) to what (``subject``).

    ``details`` must be JSON-able (str keys; str, int, bool, None, finite float, lists, dicts).
    """

    actor: str
    action: str
    subject: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditRow:
    """One stored record, as read back: ``details`` is the canonical JSON text that was hashed."""

    seq: int
    at: str
    actor: str
    action: str
    subject: str
    details: str
    prev_hash: bytes
    hash: bytes

    @property
    def details_dict(self) -> dict[str, Any]:
        value = json.loads(self.details)
        if not isinstance(value, dict):
            raise AuditError("audit.bad-details", f"audit record {self.seq}: details is not an object")
        return value


@dataclass(frozen=True)
class AuditReport:
    """The outcome of checking a chain: ``first_bad_seq`` names the first record that fails."""

    ok: bool
    checked: int
    first_bad_seq: int | None
    reason: str


def canonical_details(details: Mapping[str, Any]) -> str:
    """The canonical JSON text of ``details``; refuses what JSON cannot carry exactly."""
    try:
        return _encoder.encode(dict(details))
    except (TypeError, ValueError) as exc:
        raise AuditError("audit.details-not-json", f"audit details are not JSON-able: {exc}") from exc


def _record_bytes(seq: int, at: str, actor: str, action: str, subject: str, details_json: str) -> bytes:
    # json.dumps of a list is "[" + ",".join(items) + "]", so splicing the stored details text in
    # gives exactly the canonical serialisation of the whole record.
    head = _encoder.encode([seq, at, actor, action, subject])
    return (head[:-1] + "," + details_json + "]").encode("utf-8")


def _hash(prev_hash: bytes, record: bytes) -> bytes:
    return hashlib.sha256(_DOMAIN + prev_hash + record).digest()


def chain_hash(prev_hash: bytes, seq: int, at: str, event: AuditEvent) -> bytes:
    """SHA-256 over the predecessor's hash and the canonical bytes of this record."""
    details_json = canonical_details(event.details)
    return _hash(prev_hash, _record_bytes(seq, at, event.actor, event.action, event.subject, details_json))


def row_hash(
    prev_hash: bytes, seq: int, at: str, actor: str, action: str, subject: str, details: str
) -> bytes:
    """The hash of a record whose details are already canonical JSON text (writer and verifier)."""
    return _hash(prev_hash, _record_bytes(seq, at, actor, action, subject, details))


def verify_chain(rows: Iterable[AuditRow], head: tuple[int, bytes] | None) -> AuditReport:
    """Check ``rows`` (in ascending seq order, starting at seq 1) against each other and the head.

    Detects: an edited record (its hash no longer matches, or — if the editor recomputed it — the
    next record's ``prev_hash`` no longer matches); a deleted record (a gap in seq: the missing seq
    is named); an inserted or reordered record (a seq out of order, or a hash mismatch); deleted
    newest records (the last seq/hash differ from ``head``). ``head`` None skips the last check.
    """
    expected_seq = 1
    prev = GENESIS_HASH
    checked = 0
    for row in rows:
        if row.seq != expected_seq:
            if row.seq > expected_seq:
                return AuditReport(False, checked, expected_seq, f"record {expected_seq} is missing")
            return AuditReport(False, checked, row.seq, f"record {row.seq} is out of order")
        if row.prev_hash != prev:
            return AuditReport(False, checked, row.seq, f"record {row.seq} does not follow its predecessor")
        computed = row_hash(prev, row.seq, row.at, row.actor, row.action, row.subject, row.details)
        if computed != row.hash:
            return AuditReport(False, checked, row.seq, f"record {row.seq} was altered")
        prev = row.hash
        expected_seq += 1
        checked += 1
    last_seq = expected_seq - 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq > last_seq:
            missing = f"records {last_seq + 1}..{head_seq} are missing (head at {head_seq})"
            return AuditReport(False, checked, last_seq + 1, missing)
        if head_seq < last_seq:
            return AuditReport(
                False, checked, head_seq + 1, f"record {head_seq + 1} is beyond the head ({head_seq})"
            )
        if head_hash != prev:
            return AuditReport(False, checked, last_seq, f"record {last_seq} does not match the head")
    return AuditReport(True, checked, None, f"{checked} records verified")
