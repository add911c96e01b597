"""The store's front door: open a database, migrate it, read from it, and write in transactions.

Guarantees callers rely on:

* A write happens only inside ``with store.transaction() as tx:``; the whole block commits or none
  of it does, and a block that changed certificates without appending an audit record refuses to
  commit (``store.unaudited-change``). So a certificate is never recorded without its audit record.
* Reads return frozen records (``CertificateRecord``, ``AuditRow``), never ORM objects.
* Large reads (audit verification, extracts) stream rows with keyset pagination, so memory stays
  flat whatever the table size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Select, bindparam, func, select, text
from sqlalchemy.exc import DatabaseError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from smki.audit import AuditReport, AuditRow, verify_chain
from smki.domain import CertKind, CertStatus, Usage
from smki.errors import SmkiError
from smki.store.driver import pg_fixed_width_any, pipelined_first_rows
from smki.store.engine import WRITE_OPTION, create_store_engine
from smki.store.migrate import SchemaStatus, current_revision, head_revision, is_current, upgrade
from smki.store.models import audit_head, audit_log, certificates, revocation_lists
from smki.store.reads import held_reads, read_connection
from smki.store.records import (
    CertificateRecord,
    RevocationListRecord,
    RevokedEntry,
    SingleDeviceReads,
    normalise_serial,
)
from smki.store.registry import RegistryReader
from smki.store.transaction import Transaction


@dataclass(frozen=True)
class AuditQuery:
    """Filters for ``Store.audit_search`` (all optional, combined with AND) and its page."""

    actor: str | None = None
    action: str | None = None
    subject: str | None = None
    since: date | None = None
    until: date | None = None
    before_seq: int | None = None
    limit: int = 50


_c = certificates.c
_a = audit_log.c
_PAGE = 5_000
_CA_KINDS = frozenset({CertKind.ROOT.value, CertKind.ORGANISATION_CA.value, CertKind.DEVICE_CA.value})
#: Statements every issuance runs, built once (building a ``select`` costs about as much as
#: running it on SQLite): the newest in-use CA certificate of each kind (``ca_certificate``), a
#: certificate by serial.
_CA_CERTIFICATE = {
    kind: select(certificates).where(text(f"kind = '{kind}'"), _c.status == CertStatus.IN_USE.value)
    .order_by(_c.id.desc()).limit(1)
    for kind in sorted(_CA_KINDS)
}
#: The newest CA certificate of each kind whatever its status (``last_ca_certificate``).
_LAST_CA_CERTIFICATE = {
    kind: select(certificates).where(text(f"kind = '{kind}'")).order_by(_c.id.desc()).limit(1)
    for kind in sorted(_CA_KINDS)
}
_BY_SERIAL = select(certificates).where(_c.serial == bindparam("serial"))
#: ``ca_certificate(CertKind.DEVICE_CA)``'s certificate, its DER alone (``single_device_reads``).
_DEVICE_CA_DER = (f"SELECT der FROM certificates WHERE kind = '{CertKind.DEVICE_CA.value}' "
                  f"AND status = '{CertStatus.IN_USE.value}' ORDER BY id DESC LIMIT 1")
#: The largest page a search may ask for: interfaces paginate rather than fetch everything.
MAX_PAGE = 1_000


@dataclass(frozen=True)
class CertificateQuery:
    """Search criteria (all optional, combined with AND) plus keyset pagination."""

    kind: CertKind | None = None
    status: CertStatus | None = None
    usage: Usage | None = None
    device_id: bytes | None = None
    entity_id: bytes | None = None
    role: int | None = None
    issued_from: datetime | None = None
    issued_before: datetime | None = None
    batch_id: str | None = None
    changed_since: datetime | None = None
    #: Kinds left out in the query itself (the SPOTI listener's Device Certificates), so that a page
    #: still holds ``limit`` rows and ``after_id`` paging stays correct.
    exclude_kinds: frozenset[CertKind] = frozenset()
    after_id: int = 0
    limit: int = 100


#: Called after each committed transaction with the certificates it added (by kind), the audit
#: records it appended (by action) and the batch items it refused (by code): how the metrics count
#: issuance without the store knowing of them.
CommitHook = Callable[[Mapping[str, int], Mapping[str, int], Mapping[str, int]], None]
_commit_hooks: list[CommitHook] = []


def add_commit_hook(hook: CommitHook) -> None:
    if hook not in _commit_hooks:
        _commit_hooks.append(hook)


class Store:
    """A database holding certificates and the audit log. Open with ``Store.open(url)``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.registry = RegistryReader(engine)

    @classmethod
    def open(cls, url: str) -> Store:
        return cls(create_store_engine(url))

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        self._engine.dispose()

    # -- schema ------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to this version of smki (a no-op when it is current)."""
        try:
            if is_current(self._engine):
                return
            upgrade(self._engine)
        except OperationalError as exc:
            raise SmkiError("store.unavailable", f"cannot reach the database: {_first_line(exc)}") from exc

    def some_tables(self, limit: int = 3) -> list[str]:
        """Up to ``limit`` tables in the database, anyone's (``schema.table``; SQLite: the name): what
        shows that a database given to restore into is not empty, whoever made it."""
        from sqlalchemy import inspect

        inspector = inspect(self._engine)
        found: list[str] = []
        for schema in inspector.get_schema_names():
            if schema in ("information_schema", "pg_catalog") or schema.startswith("pg_toast"):
                continue
            found += [f"{schema}.{name}" if self._engine.dialect.name != "sqlite" else name
                      for name in inspector.get_table_names(schema=schema)]
            if len(found) >= limit:
                break
        return sorted(found)[:limit]

    def schema_status(self) -> SchemaStatus:
        try:
            return SchemaStatus(current_revision(self._engine), head_revision())
        except OperationalError as exc:
            raise SmkiError("store.unavailable", f"cannot reach the database: {_first_line(exc)}") from exc
        except DatabaseError as exc:
            if self._engine.dialect.name != "sqlite":  # e.g. PostgreSQL refusing the role: not a corrupt file
                raise SmkiError("store.unavailable", f"cannot read the database: {_first_line(exc)}") from exc
            # SQLite: "file is not a database", "database disk image is malformed"
            raise SmkiError("store.corrupt", f"the database cannot be read: {_first_line(exc)}; restore it from "
                            "a backup ('smki backup restore')") from exc

    def require_current_schema(self) -> None:
        """Refuse to work on a schema this smki did not make: only ``ca init`` and ``db upgrade`` migrate.

        An upgrade is an operator's decision (take a backup first), never a side effect of a
        read-only command or of a server restart.
        """
        if is_current(self._engine):  # one query, no Alembic: the every-command path
            return
        status = self.schema_status()
        if status.up_to_date:
            return
        if status.current is None:
            raise SmkiError("store.not-initialised",
                            "the database has no smki schema: run 'smki ca init' for a new home, or "
                            "'smki backup restore' to bring one back")
        if not status.known:
            raise SmkiError("store.schema-unknown",
                            f"the database schema is at {status.current}, newer than this smki ({status.head})")
        raise SmkiError("store.schema-outdated",
                        f"the database schema is at {status.current}, this smki needs {status.head}: "
                        "run 'smki db upgrade'")

    # -- writes ------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A write transaction: commits when the block ends normally, rolls back on any exception."""
        try:
            with self._engine.connect() as conn:
                conn = conn.execution_options(**{WRITE_OPTION: True})
                tx = Transaction(conn)
                try:
                    with conn.begin():
                        yield tx
                        tx.finish()
                finally:
                    tx.ended()
        except OperationalError as exc:
            raise SmkiError("store.unavailable", f"the database refused the write: {_first_line(exc)}") from exc
        except PoolTimeout as exc:  # every pooled connection in use for the pool's whole timeout
            raise SmkiError("store.unavailable", f"no database connection came free: {_first_line(exc)}") from exc
        if _commit_hooks and (tx.issued_kinds or tx.audit_actions or tx.refused_codes):
            for hook in _commit_hooks:
                hook(tx.issued_kinds, tx.audit_actions, tx.refused_codes)

    def held_reads(self) -> AbstractContextManager[None]:
        """Around one request: its reads share one pooled connection, each still its own
        transaction (:mod:`smki.store.reads`); writes take their own connection as ever."""
        return held_reads(self._engine)

    # -- certificate reads -------------------------------------------------------------------

    def _certificates(self, stmt: Select[tuple[object, ...]],
                      params: Mapping[str, object] | None = None) -> list[CertificateRecord]:
        try:
            with read_connection(self._engine) as conn:
                return [CertificateRecord.from_row(row) for row in conn.execute(stmt, params)]
        except SQLAlchemyError as exc:
            raise SmkiError("store.unavailable", f"cannot read from the database: {_first_line(exc)}") from exc

    def certificate_by_serial(self, serial: str | int) -> CertificateRecord | None:
        rows = self._certificates(_BY_SERIAL, {"serial": normalise_serial(serial)})
        return rows[0] if rows else None

    def certificates_for_device(self, device_id: bytes, usage: Usage | None = None) -> list[CertificateRecord]:
        stmt = select(certificates).where(_c.device_id == device_id)
        if usage is not None:
            stmt = stmt.where(_c.usage == usage.value)
        return self._certificates(stmt.order_by(_c.id))

    def certificates_for_entity(self, entity_id: bytes) -> list[CertificateRecord]:
        return self._certificates(select(certificates).where(_c.entity_id == entity_id).order_by(_c.id))

    def find_certificates(self, query: CertificateQuery) -> list[CertificateRecord]:
        """One page of matching certificates in insertion order; pass the last ``id`` as ``after_id``."""
        if not 1 <= query.limit <= MAX_PAGE:
            raise SmkiError("store.bad-page", f"a page holds 1 to {MAX_PAGE} certificates")
        stmt = select(certificates).where(_c.id > query.after_id)
        if query.kind is not None:
            stmt = stmt.where(_c.kind == query.kind.value)
        if query.exclude_kinds:
            stmt = stmt.where(_c.kind.not_in(sorted(k.value for k in query.exclude_kinds)))
        if query.status is not None:
            stmt = stmt.where(_c.status == query.status.value)
        if query.usage is not None:
            stmt = stmt.where(_c.usage == query.usage.value)
        if query.device_id is not None:
            stmt = stmt.where(_c.device_id == query.device_id)
        if query.entity_id is not None:
            stmt = stmt.where(_c.entity_id == query.entity_id)
        if query.role is not None:
            stmt = stmt.where(_c.role == query.role)
        if query.issued_from is not None:
            stmt = stmt.where(_c.issued_at >= query.issued_from)
        if query.issued_before is not None:
            stmt = stmt.where(_c.issued_at < query.issued_before)
        if query.batch_id is not None:
            stmt = stmt.where(_c.batch_id == query.batch_id)
        if query.changed_since is not None:
            stmt = stmt.where(_c.changed_at >= query.changed_since)
        return self._certificates(stmt.order_by(_c.id).limit(query.limit))

    def count_device_certificates(self, device_id: bytes) -> int:
        """How many Device Certificates were ever issued for a Device ID (the 100-per-device limit)."""
        return self.device_certificate_counts([device_id]).get(bytes(device_id), 0)

    def single_device_reads(self, device_id: bytes, fingerprint: bytes) -> SingleDeviceReads:
        """The three reads one Device CSR needs before it is signed — the Device's certificate count,
        the issuing Device CA certificate, the key register's entry for the CSR's key
        (``smki.ca.keyid.key_fingerprint``) — as ``count_device_certificates``, ``ca_certificate`` and
        the key register's look-up give them.

        On PostgreSQL the three go in one round trip (psycopg's pipeline), where they took three: a
        single CSR's latency there is mostly round trips (``smki bench sql-forms``). Each is still
        its own statement, so each sees what was committed before it, as three reads would.
        """
        statements = (
            ("SELECT count(*) FROM certificates WHERE device_id = {m}", (bytes(device_id),)),
            (_DEVICE_CA_DER, ()),
            ("SELECT serial FROM certified_keys WHERE fingerprint = {m}", (bytes(fingerprint),)),
        )
        try:
            with read_connection(self._engine) as conn:
                if conn.dialect.name != "postgresql":
                    rows = [conn.exec_driver_sql(sql.format(m="?"), params).first() for sql, params in statements]
                else:
                    rows = _pipelined_rows(conn, [(sql.format(m="%s"), params) for sql, params in statements])
        except SQLAlchemyError as exc:
            raise SmkiError("store.unavailable", f"cannot read from the database: {_first_line(exc)}") from exc
        count, ca, key = rows
        return SingleDeviceReads(int(count[0]) if count is not None else 0,
                                 None if ca is None else bytes(ca[0]), None if key is None else str(key[0]))

    def device_certificate_counts(self, device_ids: Sequence[bytes]) -> dict[bytes, int]:
        """The same count for many Device IDs at once (batches check the limit in bulk); absent = 0."""
        counts: dict[bytes, int] = {}
        unique = sorted({bytes(d) for d in device_ids})
        with read_connection(self._engine) as conn:
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            if conn.dialect.name == "postgresql" and unique:
                # One statement, the Device IDs packed into one parameter (see ``pg_fixed_width_any``:
                # a list of 2,000 ``bytes`` cost ~8 ms of Python to adapt). Packed, the array is not
                # a constant the planner can count, so it plans an index scan; given a constant
                # array of 2,000 Device IDs and no statistics yet (a fresh store, or rows added
                # moments ago by the same batch), it scanned the whole table for every page of a batch.
                packed = pg_fixed_width_any(unique, 8)
                any_of, params = packed if packed is not None else ("ANY(%s::bytea[])", (unique,))
                rows = conn.exec_driver_sql(
                    f"SELECT device_id, count(*) FROM certificates WHERE device_id = {any_of} GROUP BY device_id",
                    params)
                return {bytes(device_id): int(count) for device_id, count in rows}
            for start in range(0, len(unique), 500):
                part = unique[start:start + 500]
                # Driver SQL: SQLAlchemy rendering 500 expanding IN parameters cost more than the query.
                marks = ", ".join([mark] * len(part))
                rows = conn.exec_driver_sql(
                    f"SELECT device_id, count(*) FROM certificates WHERE device_id IN ({marks}) GROUP BY device_id",
                    tuple(part))
                for device_id, count in rows:
                    counts[bytes(device_id)] = int(count)
        return counts

    def highest_device_id(self) -> bytes | None:
        """The largest Device ID with any certificate (an index lookup: where a generator continues)."""
        with read_connection(self._engine) as conn:
            value = conn.execute(  # ORDER BY … LIMIT 1, not max(): PostgreSQL has no max(bytea)
                select(_c.device_id).where(_c.device_id.is_not(None)).order_by(_c.device_id.desc()).limit(1)
            ).scalar_one_or_none()
        return None if value is None else bytes(value)

    def ca_certificate(self, kind: CertKind) -> CertificateRecord | None:
        """The newest in-use CA certificate of ``kind`` (root, org-ca, device-ca).

        Every issuance reads it. The kind is written into the SQL as a literal (it is one of three
        enum values), so that both engines see the term of the partial index ``ix_certificates_ca``
        at planning time and read a few index entries rather than the table.
        """
        stmt = _CA_CERTIFICATE.get(kind.value)
        if stmt is None:
            raise SmkiError("store.bad-value", f"{kind.value} is not a CA certificate kind")
        rows = self._certificates(stmt)
        return rows[0] if rows else None

    def last_ca_certificate(self, kind: CertKind) -> CertificateRecord | None:
        """The newest CA certificate of ``kind`` in any status: when none is in use, it tells a
        hierarchy never made from one whose certificate was revoked (through the same partial index)."""
        stmt = _LAST_CA_CERTIFICATE.get(kind.value)
        if stmt is None:
            raise SmkiError("store.bad-value", f"{kind.value} is not a CA certificate kind")
        rows = self._certificates(stmt)
        return rows[0] if rows else None

    def iter_certificates(self, query: CertificateQuery) -> Iterator[CertificateRecord]:
        """Every matching certificate, fetched page by page (flat memory; for extracts)."""
        after = query.after_id
        while True:
            page = self.find_certificates(
                CertificateQuery(**{**query.__dict__, "after_id": after, "limit": MAX_PAGE})
            )
            yield from page
            if len(page) < MAX_PAGE:
                return
            after = page[-1].id

    # -- revocation ------------------------------------------------------------------------------

    def ping(self) -> None:
        """One trivial statement: raises if the database does not answer (the readiness probe)."""
        with read_connection(self._engine) as conn:
            conn.exec_driver_sql("SELECT 1")

    def revoked_entries(self, kinds: tuple[CertKind, ...], issuer_key_id: str) -> Iterator[RevokedEntry]:
        """Every revoked certificate of ``kinds`` issued by ``issuer_key_id``, streamed (for CRLs/ARLs)."""
        stmt = (
            select(_c.serial, _c.revoked_at, _c.revocation_reason)
            .where(text("status = 'R'"), _c.issuer_key_id == issuer_key_id,  # literal: matches the partial index
                   _c.kind.in_([k.value for k in kinds]))
            .order_by(_c.id)
            .execution_options(yield_per=_PAGE)
        )
        with self._engine.connect() as conn:  # a server-side cursor on PostgreSQL: in a transaction
            for row in conn.execute(stmt):
                yield RevokedEntry(int(row.serial, 16), row.revoked_at, row.revocation_reason)
            conn.commit()  # read only: ended without a ROLLBACK, which would drop psycopg's prepared statements

    def revoked_count(self, kinds: tuple[CertKind, ...], issuer_key_id: str) -> int:
        """How many certificates :meth:`revoked_entries` would stream: a publisher compares it with the
        newest list's entry count to find a revocation that no published list holds yet."""
        stmt = (
            select(func.count())
            .select_from(certificates)
            .where(text("status = 'R'"), _c.issuer_key_id == issuer_key_id,  # literal: matches the partial index
                   _c.kind.in_([k.value for k in kinds]))
        )
        with read_connection(self._engine) as conn:
            return int(conn.execute(stmt).scalar_one())

    def revocation_list(self, kind: str, number: int | None = None) -> RevocationListRecord | None:
        """The CRL/ARL with ``number``, or the newest one."""
        _r = revocation_lists.c
        stmt = select(revocation_lists).where(_r.kind == kind)
        stmt = stmt.where(_r.number == number) if number is not None else stmt.order_by(_r.number.desc()).limit(1)
        with read_connection(self._engine) as conn:
            row = conn.execute(stmt).one_or_none()
        if row is None:
            return None
        m = row._mapping
        return RevocationListRecord(m["kind"], int(m["number"]), m["this_update"], m["next_update"],
                                    int(m["entries"]), bytes(m["der"]))

    def revocation_list_numbers(self, kind: str) -> list[int]:
        _r = revocation_lists.c
        with read_connection(self._engine) as conn:
            return [int(n) for n in conn.execute(select(_r.number).where(_r.kind == kind).order_by(_r.number))
                    .scalars()]

    # -- audit reads -------------------------------------------------------------------------

    def audit_head(self) -> tuple[int, bytes]:
        with read_connection(self._engine) as conn:
            row = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).one()
            return int(row.seq), bytes(row.hash)

    def audit_rows(self, start: int = 1) -> Iterator[AuditRow]:
        """Audit records from ``start`` in sequence order, streamed a page at a time."""
        after = start - 1
        while True:
            with read_connection(self._engine) as conn:
                rows = conn.execute(select(audit_log).where(_a.seq > after).order_by(_a.seq).limit(_PAGE)).all()
            for row in rows:
                yield _audit_row(row)
            if len(rows) < _PAGE:
                return
            after = int(rows[-1].seq)

    def audit_rows_for(self, subject: str, action: str | None = None) -> list[AuditRow]:
        """The audit records about one subject (a serial, a batch reference, a party…), in order."""
        stmt = select(audit_log).where(_a.subject == subject)
        if action is not None:
            stmt = stmt.where(_a.action == action)
        with read_connection(self._engine) as conn:
            return [_audit_row(row) for row in conn.execute(stmt.order_by(_a.seq))]

    def audit_search(self, query: AuditQuery) -> list[AuditRow]:
        """Audit records matching ``query``, newest first, one page (keyset on ``seq``).

        Actor and subject match as substrings, the action as a prefix (``application.`` finds every
        application event); ``since``/``until`` are ISO dates (UTC), both inclusive.
        """
        stmt = select(audit_log)
        if query.actor:
            stmt = stmt.where(_a.actor.contains(query.actor, autoescape=True))
        if query.action:
            stmt = stmt.where(_a.action.startswith(query.action, autoescape=True))
        if query.subject:
            stmt = stmt.where(_a.subject.contains(query.subject, autoescape=True))
        if query.since is not None:
            stmt = stmt.where(_a.at >= query.since.isoformat())
        if query.until is not None:
            stmt = stmt.where(_a.at < (query.until + timedelta(days=1)).isoformat())
        if query.before_seq is not None:
            stmt = stmt.where(_a.seq < query.before_seq)
        stmt = stmt.order_by(_a.seq.desc()).limit(max(1, min(query.limit, _PAGE)))
        with read_connection(self._engine) as conn:
            return [_audit_row(row) for row in conn.execute(stmt)]

    def audit_record(self, seq: int) -> AuditRow | None:
        with read_connection(self._engine) as conn:
            row = conn.execute(select(audit_log).where(_a.seq == seq)).first()
        return None if row is None else _audit_row(row)

    def audit_tail(self, count: int) -> list[AuditRow]:
        with read_connection(self._engine) as conn:
            rows = conn.execute(select(audit_log).order_by(_a.seq.desc()).limit(count)).all()
        return [_audit_row(row) for row in reversed(rows)]

    def verify_audit(self) -> AuditReport:
        """Check the whole hash chain and that it ends at the head row."""
        return verify_chain(self.audit_rows(), self.audit_head())


def _audit_row(row: object) -> AuditRow:
    m = row._mapping  # type: ignore[attr-defined]
    return AuditRow(
        seq=int(m["seq"]),
        at=m["at"],
        actor=m["actor"],
        action=m["action"],
        subject=m["subject"],
        details=m["details"],
        prev_hash=bytes(m["prev_hash"]),
        hash=bytes(m["hash"]),
    )


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", exc)) or type(exc).__name__
    return text.strip().splitlines()[0][:200]


def _pipelined_rows(conn: Any, statements: Sequence[tuple[str, tuple[object, ...]]]) -> list[Any]:
    """PostgreSQL: the first row (or None) of each statement, in one round trip of a pipeline of
    their own (``driver.pipelined_first_rows``)."""
    import psycopg

    raw = conn.connection.driver_connection
    try:
        with raw.pipeline() as pipeline:
            return pipelined_first_rows(raw, pipeline, statements)
    except psycopg.Error as exc:
        raise SmkiError("store.unavailable", f"cannot read from the database: {_first_line(exc)}") from exc
