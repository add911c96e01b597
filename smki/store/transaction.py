"""A unit of work: certificate changes and their audit records, committed together or not at all.

Hot paths use SQLAlchemy Core ``executemany`` with lists of dicts (one round trip per chunk, no ORM
objects). The audit head is read — and on PostgreSQL locked ``FOR UPDATE`` — at the first
``append_audit`` and written back once at commit, so appenders in different processes serialise on
that one row and sequence numbers are committed in order. On SQLite the whole transaction already
holds the write lock (``BEGIN IMMEDIATE``).

A transaction that changed certificates but appended no audit record refuses to commit
(``store.unaudited-change``): every state change is audited in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from smki.audit import AuditEvent, canonical_details, row_hash
from smki.domain import CertStatus, Usage
from smki.errors import NotFound, SmkiError
from smki.store.models import audit_head, audit_log, certificates, revocation_lists
from smki.store.records import NewCertificate, RevocationListRecord, normalise_serial
from smki.store.registry import RegistryWriter

_c = certificates.c

_RETIRE = (
    update(certificates)
    .where(_c.device_id == bindparam("b_device"), _c.usage == bindparam("b_usage"), _c.status == "I")
    .values(status=CertStatus.NOT_IN_USE.value, changed_at=bindparam("b_at"))
)
_INSERT_CERTS = insert(certificates)
_INSERT_AUDIT = insert(audit_log)


def integrity_error(exc: IntegrityError) -> SmkiError:
    """Name the constraint a write broke, as a stable code (the raw driver text is not for users)."""
    text = str(exc.orig)
    if "uq_certificates_serial" in text or "certificates.serial" in text:
        return SmkiError("store.duplicate-serial", "a certificate with this serial number already exists")
    if "uq_certificates_device_in_use" in text or "certificates.device_id, certificates.usage" in text:
        return SmkiError(
            "store.duplicate-in-use", "the device already has an in-use certificate for this usage"
        )
    if "ck_certificates" in text:
        return SmkiError("store.bad-value", "a certificate value is outside its allowed set")
    return SmkiError("store.integrity", "the change conflicts with stored data")


class Transaction:
    """Writes within one database transaction; obtained from ``Store.transaction()``."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._head: tuple[int, bytes] | None = None
        self._head_dirty = False
        self._changes = 0
        self._audited = 0
        self.registry = RegistryWriter(conn, self._count_change)

    def _count_change(self) -> None:
        self._changes += 1

    def add_certificates(self, rows: Sequence[NewCertificate]) -> None:
        """Insert certificates in bulk. A duplicate serial raises ``store.duplicate-serial``."""
        if not rows:
            return
        params = [row.as_params() for row in rows]
        try:
            self._conn.execute(_INSERT_CERTS, params)
        except IntegrityError as exc:
            raise integrity_error(exc) from exc
        self._changes += len(rows)

    def retire_in_use_device_certificates(self, pairs: Sequence[tuple[bytes, Usage]]) -> int:
        """Set a device's in-use ('I') certificate for a usage to not-in-use ('N'); call before adding
        its replacement. Returns how many certificates changed status."""
        if not pairs:
            return 0
        now = datetime.now(UTC)
        params = [{"b_device": device_id, "b_usage": Usage(usage).value, "b_at": now} for device_id, usage in pairs]
        result = self._conn.execute(_RETIRE, params)
        changed = int(result.rowcount)
        self._changes += changed
        return changed

    def set_certificate_status(
        self,
        serial: str | int,
        status: CertStatus,
        *,
        reason: int | None = None,
        at: datetime | None = None,
    ) -> None:
        """Change one certificate's status; revoking ('R') records the time and CRL reason code."""
        status = CertStatus(status)
        values: dict[str, object] = {"status": status.value, "changed_at": datetime.now(UTC)}
        if status is CertStatus.REVOKED:
            values["revoked_at"] = at if at is not None else datetime.now(UTC)
            values["revocation_reason"] = reason
        elif reason is not None or at is not None:
            raise SmkiError("store.bad-value", "a reason and time apply only to revocation")
        stmt = update(certificates).where(_c.serial == normalise_serial(serial)).values(**values)
        try:
            result = self._conn.execute(stmt)
        except IntegrityError as exc:
            raise integrity_error(exc) from exc
        if result.rowcount == 0:
            raise NotFound("store.certificate-not-found", f"no certificate with serial {serial}")
        self._changes += 1

    def add_revocation_list(self, record: RevocationListRecord) -> None:
        """Record a newly signed CRL/ARL; its number must be new for its kind."""
        try:
            self._conn.execute(insert(revocation_lists).values(
                kind=record.kind, number=record.number, this_update=record.this_update,
                next_update=record.next_update, entries=record.entries, der=record.der,
            ))
        except IntegrityError as exc:
            raise SmkiError("store.duplicate-crl-number",
                            f"{record.kind} number {record.number} was already published") from exc
        self._changes += 1

    def append_audit(self, events: Sequence[AuditEvent]) -> list[int]:
        """Append hash-chained audit records; returns their sequence numbers."""
        if not events:
            return []
        seq, prev = self._lock_head()
        at = datetime.now(UTC).isoformat(timespec="microseconds")
        params = []
        seqs = []
        for event in events:
            seq += 1
            details = canonical_details(event.details)
            digest = row_hash(prev, seq, at, event.actor, event.action, event.subject, details)
            params.append(
                {
                    "seq": seq,
                    "at": at,
                    "actor": event.actor,
                    "action": event.action,
                    "subject": event.subject,
                    "details": details,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            seqs.append(seq)
            prev = digest
        self._conn.execute(_INSERT_AUDIT, params)
        self._head = (seq, prev)
        self._head_dirty = True
        self._audited += len(events)
        return seqs

    def _lock_head(self) -> tuple[int, bytes]:
        if self._head is None:
            stmt = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
            if self._conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update()
            row = self._conn.execute(stmt).one_or_none()
            if row is None:
                raise SmkiError("store.not-migrated", "the audit head is missing: run migrations first")
            self._head = (int(row.seq), bytes(row.hash))
        return self._head

    def finish(self) -> None:
        """Called by ``Store.transaction()`` just before commit."""
        if self._changes and not self._audited:
            raise SmkiError("store.unaudited-change", "a state change must be audited in its transaction")
        if self._head_dirty and self._head is not None:
            seq, digest = self._head
            self._conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=digest))
            self._head_dirty = False
