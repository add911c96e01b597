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

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from smki.audit import AuditEvent, canonical_details, row_hash
from smki.domain import CertKind, CertStatus, Usage
from smki.errors import NotFound, SmkiError
from smki.store.driver import pg_fixed_width_any, pipelined_first_rows, use_c_bytea_dumper
from smki.store.models import audit_head, audit_log, certificates, revocation_lists
from smki.store.records import NewCertificate, RevocationListRecord, normalise_serial
from smki.store.registry import RegistryWriter

_c = certificates.c
_USAGE_VALUES = frozenset(usage.value for usage in Usage)

_INSERT_CERTS = insert(certificates)
_INSERT_AUDIT = insert(audit_log)
#: The audit head, read (locked on PostgreSQL) and moved on by every audited transaction: built once,
#: not per transaction (building a statement cost about as much as running it on SQLite).
_HEAD = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
_HEAD_FOR_UPDATE = _HEAD.with_for_update()
_SET_HEAD = update(audit_head).where(audit_head.c.id == 1)
_AUDIT_INTO = "INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash)"
_AUDIT_INSERT = _AUDIT_INTO + " VALUES ({marks})"
#: Audit records sent with the head's update in one statement, at most (8 parameters each).
_AUDIT_ROWS_PER_STATEMENT = 200
#: The column order of ``copy_certificates`` rows (the same as the bulk ``INSERT``).
COPY_COLUMNS = ("serial", "kind", "usage", "issuer_key_id", "device_id", "entity_id", "role", "status",
                "not_before", "not_after", "der", "issued_at", "batch_id", "changed_at")
_COPY_SQL = f"COPY certificates ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ["varchar", "varchar", "varchar", "varchar", "bytea", "bytea", "int2", "varchar",
               "timestamptz", "timestamptz", "bytea", "timestamptz", "varchar", "timestamptz"]


def integrity_error(exc: IntegrityError) -> SmkiError:
    """Name the constraint a write broke, as a stable code (the raw driver text is not for users)."""
    return _broken_constraint(str(exc.orig))


def duplicate_key() -> SmkiError:
    """A key register row added twice: another commit certified the same key a moment before."""
    return SmkiError("store.duplicate-key", "a key was certified twice at the same moment; "
                     "nothing of this commit was recorded")


def _broken_constraint(text: str) -> SmkiError:
    if "pk_certified_keys" in text or "certified_keys.fingerprint" in text:
        return duplicate_key()
    if "uq_certificates_serial" in text or "certificates.serial" in text:
        return SmkiError("store.duplicate-serial", "a certificate with this serial number already exists")
    if "uq_certificates_device_in_use" in text or "certificates.device_id, certificates.usage" in text:
        return SmkiError(
            "store.duplicate-in-use", "the device already has an in-use certificate for this usage"
        )
    if "pk_audit_log" in text or "audit_log.seq" in text:
        return SmkiError("store.audit-conflict", "the audit log already holds a record with the next number, "
                         "written behind its head's back: nothing of this commit was recorded (see smki audit verify)")
    if "ck_certificates" in text:
        return SmkiError("store.bad-value", "a certificate value is outside its allowed set")
    return SmkiError("store.integrity", "the change conflicts with stored data")


@contextmanager
def _constraints_named() -> Iterator[None]:
    """A constraint broken inside, reported by SQLAlchemy or straight from psycopg (a pipeline's or
    a ``COPY``'s answers, which SQLAlchemy never sees), raised as its stable code."""
    import psycopg

    try:
        yield
    except IntegrityError as exc:  # inside a pipeline, an earlier statement's error can surface at a later one
        raise integrity_error(exc) from exc
    except psycopg.IntegrityError as exc:
        raise _broken_constraint(str(exc)) from exc


class Transaction:
    """Writes within one database transaction; obtained from ``Store.transaction()``."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._head: tuple[int, bytes] | None = None
        self._head_dirty = False
        #: PostgreSQL: audit rows appended but not yet sent (``finish`` sends them with the head).
        self._unwritten_audit: list[tuple[object, ...]] = []
        #: Inside ``pipelined()`` on PostgreSQL: psycopg's pipeline; statements go without waiting for answers.
        self._pipeline: Any = None
        #: PostgreSQL: this transaction's ``BEGIN`` was sent in a pipeline with the connection in
        #: autocommit (see ``pipelined``); ``ended`` sets the connection back.
        self._began_in_pipeline = False
        self._changes = 0
        self._audited = 0
        #: What this transaction wrote, for the metrics (counted once it commits).
        self.issued_kinds: Counter[str] = Counter()
        self.audit_actions: Counter[str] = Counter()
        self.refused_codes: Counter[str] = Counter()  # batch items refused, by code
        self.registry = RegistryWriter(conn, self._count_change)

    def _count_change(self) -> None:
        self._changes += 1

    def add_certificates(self, rows: Sequence[NewCertificate]) -> None:
        """Insert certificates in bulk. A duplicate serial raises ``store.duplicate-serial``.

        The hot path of batch issuance: one driver-level ``executemany`` of plain tuples, skipping
        SQLAlchemy's per-row type processing (times are converted here, once, by ``_db_time``).
        """
        if not rows:
            return
        when = self._time_converter()
        params = [
            (r.serial, r.kind.value, None if r.usage is None else r.usage.value, r.issuer_key_id, r.device_id,
             r.entity_id, r.role, r.status.value, when(r.not_before), when(r.not_after), r.der, when(r.issued_at),
             r.batch_id, when(r.issued_at))
            for r in rows
        ]
        try:
            self._conn.exec_driver_sql(self._insert_sql, params)
        except IntegrityError as exc:
            raise integrity_error(exc) from exc
        self._changes += len(rows)
        self.issued_kinds.update(r.kind.value for r in rows)

    def _time_converter(self) -> Callable[[datetime], object]:
        """``_db_time`` remembering its answers: the rows of a chunk share a handful of times."""
        cache: dict[datetime, object] = {}

        def when(value: datetime) -> object:
            converted = cache.get(value)
            if converted is None:
                converted = cache[value] = self._db_time(value)
            return converted

        return when

    @property
    def _insert_sql(self) -> str:
        columns = ("serial, kind, usage, issuer_key_id, device_id, entity_id, role, status, not_before, not_after, "
                   "der, issued_at, batch_id, changed_at")
        marks = ", ".join([self._mark] * 14)
        return f"INSERT INTO certificates ({columns}) VALUES ({marks})"

    @property
    def _mark(self) -> str:
        return "?" if self._conn.dialect.paramstyle == "qmark" else "%s"

    def _db_time(self, value: datetime) -> object:
        """A time as the driver takes it: aware UTC for PostgreSQL, SQLAlchemy's SQLite text otherwise."""
        if value.tzinfo is None:
            raise SmkiError("store.naive-datetime", "times given to the store must be time-zone aware")
        value = value.astimezone(UTC)
        if self._conn.dialect.name == "sqlite":
            return value.strftime("%Y-%m-%d %H:%M:%S.%f")
        return value

    @contextmanager
    def pipelined(self) -> Iterator[None]:
        """PostgreSQL: the statements inside are sent one after another without waiting for each
        answer (psycopg's pipeline mode), the transaction's ``BEGIN`` with them; they reach the server
        together and their answers come back together, at the first read of a result (the audit
        head's, in a commit) or when the block ends. One certificate's commit (Ad Hoc, JSON) so
        takes one round trip where it took five: ``BEGIN``, the retirement of the Device's in-use
        certificate, the certificate, its key, the audit head.

        For writes whose results nobody reads at once: inside, a single retirement does not wait
        for its count (it returns 0), and a constraint a write breaks is reported when the answers
        arrive, with the code it has outside (``store.duplicate-serial``, ``store.duplicate-in-use``,
        ``store.duplicate-key``). No ``COPY`` inside (PostgreSQL's pipeline has none). SQLite, which
        has no round trips, runs the block as it is.
        """
        if self._conn.dialect.name != "postgresql" or self._pipeline is not None:
            yield
            return
        import psycopg

        raw = self._conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        begin = None
        if raw.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE and not raw.autocommit:
            # Nothing sent yet: psycopg would send its BEGIN and wait for the answer before the rest
            # (a round trip of its own). In autocommit it sends none, so the block's first
            # statement is this BEGIN, in the pipeline with the others. ``ended`` undoes it.
            level = raw.isolation_level
            begin = "BEGIN" if level is None else f"BEGIN ISOLATION LEVEL {level.name.replace('_', ' ')}"
            raw.autocommit = True
            self._began_in_pipeline = True
        try:
            with _constraints_named(), raw.pipeline() as self._pipeline:
                if begin is not None:
                    raw.cursor().execute(begin, prepare=False)
                yield
        finally:
            self._pipeline = None

    def retire_in_use_device_certificates(self, pairs: Sequence[tuple[bytes, Usage | str]]) -> int:
        """Set a device's in-use ('I') certificate for a usage to not-in-use ('N'); call before adding
        its replacement. Returns how many certificates changed status.

        One indexed SELECT per 500 devices finds which of the pairs have an in-use certificate at
        all (in a fresh batch, almost none), and only those are updated; a single pair is updated
        straight away (on PostgreSQL each statement is a round trip of a few hundred µs). Plain driver SQL: it runs
        for every chunk of a batch, and SQLAlchemy's per-parameter processing cost more than the
        query itself.
        """
        if not pairs:
            return 0
        wanted = {(bytes(device_id), usage if isinstance(usage, str) else Usage(usage).value)
                  for device_id, usage in pairs}
        if not all(usage in _USAGE_VALUES for _, usage in wanted):
            raise SmkiError("store.bad-value", "a Device Certificate usage is DS or KA")
        m = self._mark
        if len(wanted) == 1:  # one CSR (Ad Hoc, JSON): the UPDATE finds its certificate itself, one round trip
            ((device_id, usage),) = wanted
            result = self._conn.exec_driver_sql(
                f"UPDATE certificates SET status = 'N', changed_at = {m} "
                f"WHERE device_id = {m} AND usage = {m} AND status = 'I'",
                (self._db_time(datetime.now(UTC)), device_id, usage))
            if self._pipeline is not None:  # its count is not waited for; counted as a change, so it must be audited
                self._changes += 1
                return 0
            changed = int(result.rowcount)
            self._changes += changed
            return changed
        devices = sorted({device for device, _ in wanted})
        found: list[tuple[bytes, str]] = []
        if self._conn.dialect.name == "postgresql":  # one statement, the Device IDs packed in one parameter
            packed = pg_fixed_width_any(devices, 8)
            any_of, params = packed if packed is not None else ("ANY(%s::bytea[])", (devices,))
            rows = self._conn.exec_driver_sql(
                f"SELECT device_id, usage FROM certificates WHERE status = 'I' AND device_id = {any_of}", params)
            found = [(bytes(device_id), usage) for device_id, usage in rows]
            devices = []
        for start in range(0, len(devices), 500):
            part = devices[start:start + 500]
            rows = self._conn.exec_driver_sql(
                f"SELECT device_id, usage FROM certificates WHERE status = 'I' AND device_id IN "
                f"({', '.join([m] * len(part))})", tuple(part),
            )
            found += [(bytes(device_id), usage) for device_id, usage in rows]
        hits = [pair for pair in found if pair in wanted]
        if not hits:
            return 0
        now = self._db_time(datetime.now(UTC))
        m = self._mark
        result = self._conn.exec_driver_sql(
            f"UPDATE certificates SET status = 'N', changed_at = {m} "
            f"WHERE device_id = {m} AND usage = {m} AND status = 'I'",
            [(now, device_id, usage) for device_id, usage in hits],
        )
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
        only_from: Collection[CertStatus] | None = None,
    ) -> None:
        """Change one certificate's status; revoking ('R') records the time and CRL reason code.

        ``only_from`` makes the change conditional on the current status (checked by the UPDATE
        itself, so two operators racing cannot both revoke, or un-revoke, the same certificate):
        if the row's status is not among them the change raises ``store.status-changed``.
        """
        status = CertStatus(status)
        values: dict[str, object] = {"status": status.value, "changed_at": datetime.now(UTC)}
        if status is CertStatus.REVOKED:
            values["revoked_at"] = at if at is not None else datetime.now(UTC)
            values["revocation_reason"] = reason
        elif reason is not None or at is not None:
            raise SmkiError("store.bad-value", "a reason and time apply only to revocation")
        serial = normalise_serial(serial)
        stmt = update(certificates).where(_c.serial == serial).values(**values)
        if only_from is not None:
            stmt = stmt.where(_c.status.in_([CertStatus(s).value for s in only_from]))
        try:
            result = self._conn.execute(stmt)
        except IntegrityError as exc:
            raise integrity_error(exc) from exc
        if result.rowcount == 0:
            exists = self._conn.execute(select(_c.status).where(_c.serial == serial)).scalar_one_or_none()
            if exists is None:
                raise NotFound("store.certificate-not-found", f"no certificate with serial {serial}")
            raise SmkiError("store.status-changed",
                            f"certificate {serial} is now in status {exists}; nothing was changed")
        self._changes += 1

    def expire_certificates(self, kind: CertKind, before: datetime) -> list[str]:
        """Set every certificate of ``kind`` whose notAfter is before ``before`` and whose status is
        P, I or N to expired ('E'); returns their serials (revoked ones stay 'R')."""
        live = (CertStatus.PENDING.value, CertStatus.IN_USE.value, CertStatus.NOT_IN_USE.value)
        stmt = (
            update(certificates)
            .where(_c.kind == kind.value, _c.not_after < before, _c.status.in_(live))
            .values(status=CertStatus.EXPIRED.value, changed_at=datetime.now(UTC))
            .returning(_c.serial)
        )
        serials = sorted(str(s) for s in self._conn.execute(stmt).scalars())
        self._changes += len(serials)
        return serials

    def revoke_certificates(self, serials: Sequence[str], reason: int | None, at: datetime) -> int:
        """Revoke many certificates at once (bulk tooling: ``smki dev populate``); returns the count.

        Only rows not already revoked change; the caller audits the batch.
        """
        if not serials:
            return 0
        m = self._mark
        result = self._conn.exec_driver_sql(
            f"UPDATE certificates SET status = 'R', revoked_at = {m}, revocation_reason = {m}, changed_at = {m} "
            f"WHERE serial = {m} AND status <> 'R'",
            [(self._db_time(at), reason, self._db_time(at), normalise_serial(s)) for s in serials],
        )
        changed = int(result.rowcount)
        self._changes += changed
        return changed

    def driver_time(self, value: datetime) -> object:
        """``value`` in the form ``copy_certificates(..., driver_times=True)`` takes."""
        return self._db_time(value)

    def copy_certificates(self, rows: Iterable[tuple[object, ...]], *, count: int,
                          driver_times: bool = False, kind: CertKind = CertKind.DEVICE) -> None:
        """Bulk-load pre-built rows as fast as the engine allows (batch issuance, ``smki dev populate``).

        Each row holds the ``COPY_COLUMNS`` values in order, times time-zone aware — or, with
        ``driver_times``, already converted by ``driver_time`` (a batch chunk's rows share two
        times, so its writer converts them once rather than four times per row). PostgreSQL gets
        them through ``COPY … FROM STDIN`` (binary), several times faster than ``INSERT`` for
        millions of rows; SQLite through one ``executemany``. ``count`` is how many rows the
        caller passes (the change counter must not have to materialise the iterable), all of ``kind``.
        """
        self.issued_kinds[kind.value] += count
        if self._conn.dialect.name != "postgresql":
            if driver_times:
                params: Sequence[tuple[object, ...]] = rows if isinstance(rows, Sequence) else list(rows)
            else:
                when = self._time_converter()
                params = [(*r[:8], when(r[8]), when(r[9]), r[10], when(r[11]), r[12], when(r[13]))  # type: ignore[arg-type]
                          for r in rows]
            try:
                self._conn.exec_driver_sql(self._insert_sql, params)
            except IntegrityError as exc:
                raise integrity_error(exc) from exc
            self._changes += count
            return
        if count == 1:  # one certificate (Ad Hoc, JSON): a plain INSERT, a third of a COPY's round trips
            (row,) = rows
            try:
                self._conn.exec_driver_sql(self._insert_sql, tuple(row))
            except IntegrityError as exc:
                raise integrity_error(exc) from exc
            self._changes += 1
            return
        import psycopg

        raw = self._conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        with _constraints_named(), raw.cursor() as cursor:
            use_c_bytea_dumper(cursor)
            with cursor.copy(_COPY_SQL) as copy:
                copy.set_types(_COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
        self._changes += count

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
            params.append((seq, at, event.actor, event.action, event.subject, details, prev, digest))
            seqs.append(seq)
            prev = digest
        if self._conn.dialect.name == "postgresql":
            self._unwritten_audit += params  # sent with the head's update, just before commit (``finish``)
        else:
            try:
                self._conn.exec_driver_sql(_AUDIT_INSERT.format(marks=", ".join([self._mark] * 8)), params)
            except IntegrityError as exc:
                raise integrity_error(exc) from exc
        self._head = (seq, prev)
        self._head_dirty = True
        self._audited += len(events)
        self.audit_actions.update(e.action for e in events)
        return seqs

    def _lock_head(self) -> tuple[int, bytes]:
        if self._head is None:
            if self._pipeline is not None:  # the block's statements go with this read, and are answered
                row = self._read_in_pipeline("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
            else:
                stmt = _HEAD_FOR_UPDATE if self._conn.dialect.name == "postgresql" else _HEAD
                row = self._conn.execute(stmt).one_or_none()
            if row is None:
                raise SmkiError("store.not-migrated", "the audit head is missing: run migrations first")
            self._head = (int(row[0]), bytes(row[1]))
        return self._head

    def ended(self) -> None:
        """Called by ``Store.transaction()`` once the transaction has committed or rolled back: a
        connection ``pipelined`` put in autocommit goes back to the pool as it came (or, should it
        be unusable, not at all)."""
        if not self._began_in_pipeline:
            return
        import psycopg

        self._began_in_pipeline = False
        raw = self._conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        if not raw.closed and raw.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            raw.autocommit = False
        else:
            self._conn.invalidate()

    def _read_in_pipeline(self, sql: str) -> tuple[Any, ...] | None:
        """One row of ``sql`` inside ``pipelined()``: sent after what is queued, then everything is
        answered."""
        assert self._pipeline is not None
        (row,) = pipelined_first_rows(self._conn.connection.driver_connection, self._pipeline, [(sql, ())])
        return row  # type: ignore[no-any-return]

    def finish(self) -> None:
        """Called by ``Store.transaction()`` just before commit.

        On PostgreSQL, a transaction with audit records to send commits here: the records, the
        head's new value and the ``COMMIT`` go in one round trip (psycopg's pipeline) where they
        took two, and the commit that follows finds nothing left to do. A failure of either
        (a broken constraint, the server gone) raises here, so nothing was committed and the
        caller's block fails as it would have at commit.
        """
        if self._changes and not self._audited:
            raise SmkiError("store.unaudited-change", "a state change must be audited in its transaction")
        if self._head_dirty and self._head is not None:
            seq, digest = self._head
            if self._unwritten_audit:
                self._write_audit_head_and_commit(seq, digest)
            else:
                self._conn.execute(_SET_HEAD, {"seq": seq, "hash": digest})
            self._head_dirty = False

    def _write_audit_head_and_commit(self, seq: int, digest: bytes) -> None:
        """PostgreSQL (the only engine with unwritten audit records): see ``finish``."""
        import psycopg

        raw = self._conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        try:
            with _constraints_named(), raw.pipeline():
                self._write_audit_and_head(seq, digest)
                raw.cursor().execute("COMMIT", prepare=False)
        except psycopg.Error as exc:  # raw driver: SQLAlchemy does not wrap what the pipeline's end raises
            raise SmkiError("store.unavailable", f"the database refused the write: {str(exc).strip()[:200]}") from exc

    def _write_audit_and_head(self, seq: int, digest: bytes) -> None:
        """PostgreSQL: the transaction's audit records and the head's new value in one statement
        (one round trip where a request's single certificate took two, of its dozen or so). Nothing
        reads ``audit_log`` inside a transaction, so holding the records back until now changes
        nothing but when they are sent; the head row is locked since ``_lock_head`` read it."""
        rows, self._unwritten_audit = self._unwritten_audit, []
        if len(rows) > _AUDIT_ROWS_PER_STATEMENT:  # many records (a register import): all but the last go first
            earlier, rows = rows[:-_AUDIT_ROWS_PER_STATEMENT], rows[-_AUDIT_ROWS_PER_STATEMENT:]
            self._conn.exec_driver_sql(_AUDIT_INSERT.format(marks=", ".join(["%s"] * 8)), earlier)
        values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
        self._conn.exec_driver_sql(
            f"WITH added AS ({_AUDIT_INTO} VALUES {values}) "
            "UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1",
            (*[value for row in rows for value in row], seq, digest))
