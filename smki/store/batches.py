"""Device CSR batch jobs and their items in the store.

Three kinds of access, named for what they do:

* :class:`BatchReads` (``batch_reads(store)``): jobs, items and results;
* :class:`BatchWrites` (``batch_writes(tx)``): inside ``store.transaction()``, a batch accepted
  (audited with it) and a chunk's item outcomes, committed with the chunk's certificates;
* :class:`BatchProgress` (``batch_progress(store)``): the runner's bookkeeping — claiming a job,
  heartbeats, outcomes that have no certificate transaction, status, retention purges. Not a state
  change of the SMKI: written in small transactions of their own, without audit (the certificates
  an outcome refers to were audited when they were committed).

Several server processes share these tables: a job is *claimed* with a conditional UPDATE, so only
one process wins it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine, delete, func, insert, or_, select, update

from smki.store.driver import (
    PLANNED_WITH_ITS_VALUES,
    driver_rows,
    pg_hex_array,
    pg_int_array,
    placeholder,
    read_ahead,
    use_c_bytea_dumper,
    write_connection,
)
from smki.store.models import batch_items, batch_jobs, certificates
from smki.store.reads import read_connection
from smki.store.store import Store
from smki.store.transaction import Transaction

_j = batch_jobs.c
_i = batch_items.c


@dataclass(frozen=True)
class BatchJobRecord:
    id: int
    ref: str
    party_id: str
    aro_id: str
    system: str | None
    route: str
    interface: str
    client_ref: str
    status: str
    total: int
    processed: int
    issued: int
    rejected: int
    owner: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime
    error_code: str | None
    error_text: str | None


@dataclass(frozen=True, slots=True)
class BatchItemRecord:
    idx: int
    item_id: str
    csr: bytes
    outcome: str | None
    serial: str | None
    error_code: str | None
    error_text: str | None


@dataclass(frozen=True, slots=True)
class ItemResult:
    """The outcome of one batch item: a certificate serial, or an error code and text."""

    idx: int
    serial: str | None = None
    error_code: str | None = None
    error_text: str | None = None


class ResultRow(NamedTuple):
    """One item of a batch as its result is rendered: outcome ``ok`` (with ``der``), ``error``
    (code and text) or None (not processed yet)."""

    idx: int
    item_id: str
    outcome: str | None
    error_code: str | None
    error_text: str | None
    der: bytes | None


#: One CSR of a batch being accepted, ``(idx, item_id, csr)``: a plain tuple (a submission makes
#: 50,000 of them, and a named tuple cost three times as much to make).
NewItem = tuple[int, str, bytes]


def _job(row: Any) -> BatchJobRecord:
    return BatchJobRecord(**dict(row._mapping))


def _item(row: Any) -> BatchItemRecord:
    m = row._mapping
    return BatchItemRecord(m["idx"], m["item_id"], bytes(m["csr"]), m["outcome"], m["serial"], m["error_code"],
                           m["error_text"])


def _record_outcomes(conn: Any, job_id: int, owner: str | None, issued: Sequence[tuple[int, str]],
                     refused: Sequence[tuple[int, str | None, str | None]], now: datetime, *,
                     set_based: bool | None = None) -> None:
    """Item outcomes and the job's counters, on ``conn`` inside the caller's transaction.

    Only items without an outcome are updated, and the counters advance by the rows actually
    changed, so recording the same outcome twice (a resumed run) never counts it twice.

    How, per engine (``set_based`` forces one way, for the test that compares them):

    * SQLite: one driver-level ``executemany`` per kind of outcome, plain tuples (an in-process
      loop in C; SQLAlchemy's parameter processing cost more than the UPDATEs).
    * PostgreSQL: one statement per kind, the outcomes passed as arrays and joined in with
      ``unnest``. ``executemany`` there is one statement per item on the server (parse, plan,
      execute, ~2,000 per commit): set-based, the server plans once, and a 50,000-CSR batch's
      bookkeeping costs its backend about a fifth of the CPU. The statement also bounds ``idx`` by
      the commit's lowest and highest: without it the planner, which has no statistics for rows
      added moments ago, hashed every still-pending item of the batch for each commit — a cost
      growing with the batch (measured: the database's CPU per certificate 1.6 times as high at 50,000
      CSRs than at 10,000).
    """
    if set_based is None:
        set_based = conn.dialect.name == "postgresql"
    done = 0
    ok = 0
    if set_based:
        if issued:
            indices = [idx for idx, _ in issued]
            serials = [serial for _, serial in issued]
            ok = int(conn.exec_driver_sql(
                f"{PLANNED_WITH_ITS_VALUES} UPDATE batch_items AS i SET outcome = 'ok', serial = v.serial "
                "FROM unnest(%s::integer[], %s::varchar[]) AS v(idx, serial) "
                "WHERE i.batch_id = %s AND i.idx BETWEEN %s AND %s AND i.idx = v.idx AND i.outcome IS NULL",
                (pg_int_array(indices), pg_hex_array(serials) or serials, job_id, *_span(indices))).rowcount)
        if refused:
            done = int(conn.exec_driver_sql(
                f"{PLANNED_WITH_ITS_VALUES} UPDATE batch_items AS i "
                "SET outcome = 'error', error_code = v.code, error_text = v.text "
                "FROM unnest(%s::integer[], %s::varchar[], %s::text[]) AS v(idx, code, text) "
                "WHERE i.batch_id = %s AND i.idx BETWEEN %s AND %s AND i.idx = v.idx AND i.outcome IS NULL",
                ([idx for idx, _, _ in refused], [code for _, code, _ in refused], [text for _, _, text in refused],
                 job_id, *_span(idx for idx, _, _ in refused))).rowcount)
    else:
        mark = placeholder(conn)
        if issued:
            ok = int(conn.exec_driver_sql(
                f"UPDATE batch_items SET outcome = 'ok', serial = {mark} "
                f"WHERE batch_id = {mark} AND idx = {mark} AND outcome IS NULL",
                [(serial, job_id, idx) for idx, serial in issued]).rowcount)
        if refused:
            done = int(conn.exec_driver_sql(
                f"UPDATE batch_items SET outcome = 'error', error_code = {mark}, error_text = {mark} "
                f"WHERE batch_id = {mark} AND idx = {mark} AND outcome IS NULL",
                [(code, text, job_id, idx) for idx, code, text in refused]).rowcount)
    stmt = update(batch_jobs).where(_j.id == job_id)
    if owner is not None:
        stmt = stmt.where(_j.owner == owner)
    conn.execute(stmt.values(processed=_j.processed + ok + done, issued=_j.issued + ok,
                             rejected=_j.rejected + done, heartbeat_at=now))


def _span(indices: Iterable[int]) -> tuple[int, int]:
    """The lowest and highest of ``indices`` (a commit's items: a narrow range of the batch)."""
    values = list(indices)
    return min(values), max(values)


def _add_items(conn: Any, job_id: int, items: Sequence[NewItem], *, copy: bool | None = None) -> None:
    """A batch's CSRs. SQLite: driver-level ``executemany`` of plain tuples, 5,000 at a time.
    PostgreSQL: binary ``COPY`` (``copy`` forces one way, for the test that compares them), which
    the server loads several times faster than 50,000 INSERT statements."""
    if copy is None:
        copy = conn.dialect.name == "postgresql"
    if copy:
        import psycopg

        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        with raw.cursor() as cursor:
            use_c_bytea_dumper(cursor)
            with cursor.copy("COPY batch_items (batch_id, idx, item_id, csr) FROM STDIN (FORMAT BINARY)") as load:
                load.set_types(["int8", "int4", "varchar", "bytea"])
                for idx, item_id, csr in items:
                    load.write_row((job_id, idx, item_id, csr))
        return
    mark = placeholder(conn)
    sql = f"INSERT INTO batch_items (batch_id, idx, item_id, csr) VALUES ({mark}, {mark}, {mark}, {mark})"
    for start in range(0, len(items), 5000):  # plain tuples: SQLAlchemy's per-row processing cost more
        conn.exec_driver_sql(sql, [(job_id, *it) for it in items[start:start + 5000]])


class BatchReads:
    """Jobs, their items and their results. The reads that touch every item of a batch (pending
    items, result rows) go through the driver: SQLAlchemy's result rows cost more there than the query."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def job(self, job_id: int) -> BatchJobRecord | None:
        with read_connection(self._engine) as conn:
            row = conn.execute(select(batch_jobs).where(_j.id == job_id)).one_or_none()
        return None if row is None else _job(row)

    def job_by_ref(self, ref: str) -> BatchJobRecord | None:
        """The server-held batch (XML, JSON or Portal) with reference ``ref``, if there is one."""
        with read_connection(self._engine) as conn:
            row = conn.execute(select(batch_jobs).where(_j.ref == ref)).one_or_none()
        return None if row is None else _job(row)

    def jobs(self, *, party_id: str | None = None, statuses: Sequence[str] | None = None,
             limit: int = 100) -> list[BatchJobRecord]:
        stmt = select(batch_jobs)
        if party_id is not None:
            stmt = stmt.where(_j.party_id == party_id)
        if statuses is not None:
            stmt = stmt.where(_j.status.in_(list(statuses)))
        with read_connection(self._engine) as conn:
            return [_job(r) for r in conn.execute(stmt.order_by(_j.id.desc()).limit(limit))]

    def items(self, job_id: int, *, after: int = -1, limit: int = 1000,
              unprocessed: bool = False) -> list[BatchItemRecord]:
        stmt = select(batch_items).where(_i.batch_id == job_id, _i.idx > after)
        if unprocessed:
            stmt = stmt.where(_i.outcome.is_(None))
        with read_connection(self._engine) as conn:
            return [_item(r) for r in conn.execute(stmt.order_by(_i.idx).limit(limit))]

    def iter_items(self, job_id: int, *, unprocessed: bool = False, page: int = 2000) -> Iterator[BatchItemRecord]:
        after = -1
        while True:
            rows = self.items(job_id, after=after, limit=page, unprocessed=unprocessed)
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1].idx

    def refused_items(self, job_id: int, *, limit: int) -> list[tuple[int, str, str | None, str | None]]:
        """``(idx, item_id, error_code, error_text)`` of the first ``limit`` refused items, in order."""
        stmt = (select(_i.idx, _i.item_id, _i.error_code, _i.error_text)
                .where(_i.batch_id == job_id, _i.outcome == "error").order_by(_i.idx).limit(limit))
        with read_connection(self._engine) as conn:
            return [(int(r[0]), str(r[1]), r[2], r[3]) for r in conn.execute(stmt)]

    def refusal_codes(self, job_id: int) -> dict[str, int]:
        """How many of the job's items were refused with each error code (one grouped query)."""
        stmt = (select(_i.error_code, func.count()).where(_i.batch_id == job_id, _i.outcome == "error")
                .group_by(_i.error_code))
        with read_connection(self._engine) as conn:
            return {str(code or ""): int(n) for code, n in conn.execute(stmt)}

    def last_index(self, job_id: int) -> int:
        """The highest item index of a job (-1 when it has none): where its item ranges end."""
        rows = driver_rows(self._engine, "SELECT max(idx) FROM batch_items WHERE batch_id = ?", (job_id,))
        return -1 if not rows or rows[0][0] is None else int(rows[0][0])

    def pending_items(self, job_id: int, *, after: int = -1, limit: int = 2000,
                      last: int | None = None) -> list[tuple[int, str, bytes]]:
        """``(idx, item_id, csr)`` of up to ``limit`` items without an outcome after index ``after``,
        in order: what a run still issues. ``last`` is :meth:`last_index` (read here if not given).

        The items are read a range of indices at a time (``idx > a AND idx <= a + limit``), never
        as "every item after ``after``, sorted, the first ``limit``": PostgreSQL, with no
        statistics yet for items added moments ago, planned the latter as a scan and sort of the
        whole rest of the batch for every page — a cost growing with the square of the batch.
        """
        if last is None:
            last = self.last_index(job_id)
        found: list[tuple[int, str, bytes]] = []
        low = after
        while len(found) < limit and low < last:
            high = min(low + limit, last)
            found += driver_rows(self._engine, "SELECT idx, item_id, csr FROM batch_items WHERE batch_id = ? "
                                 "AND idx > ? AND idx <= ? AND outcome IS NULL ORDER BY idx LIMIT ?",
                                 (job_id, low, high, limit - len(found)))
            low = high
        return found

    def iter_result_rows(self, job_id: int, page: int = 5000, *, ahead: bool | None = None) -> Iterator[ResultRow]:
        """Every item of a job as a :class:`ResultRow`, in order, with its certificate's DER.

        A page at a time: the ``CSRBatchResult`` of a 50,000-entry batch is rendered from these.
        A range of indices at a time, for the reason :meth:`pending_items` gives. On PostgreSQL the
        next page is read while the caller renders this one (:func:`read_ahead`; ``ahead`` forces
        one way, for ``smki bench service-phases``).
        """
        last = self.last_index(job_id)
        ranges = [(low, min(low + page, last)) for low in range(-1, last, page)]

        def rows(bounds: tuple[int, int]) -> list[Any]:
            return driver_rows(self._engine,
                "SELECT i.idx, i.item_id, i.outcome, i.error_code, i.error_text, c.der "
                "FROM batch_items i LEFT OUTER JOIN certificates c ON c.serial = i.serial "
                "WHERE i.batch_id = ? AND i.idx > ? AND i.idx <= ? ORDER BY i.idx", (job_id, *bounds))

        if ahead is None:
            ahead = self._engine.dialect.name == "postgresql"
        pages = read_ahead(rows, ranges) if ahead else map(rows, ranges)
        for found in pages:
            for row in found:
                yield ResultRow._make(row)

    def items_with_der(self, job_id: int, *, after: int = -1,
                       limit: int = 1000) -> list[tuple[BatchItemRecord, bytes | None]]:
        """One page of a job's items in order, each with its certificate's DER (None when it got
        none): one query per page, the certificates joined in rather than read one by one."""
        stmt = (
            select(batch_items, certificates.c.der.label("cert_der"))
            .select_from(batch_items.outerjoin(certificates, certificates.c.serial == _i.serial))
            .where(_i.batch_id == job_id, _i.idx > after)
            .order_by(_i.idx)
            .limit(limit)
        )
        with read_connection(self._engine) as conn:
            rows = conn.execute(stmt).all()
        return [(_item(row), None if row._mapping["cert_der"] is None else bytes(row._mapping["cert_der"]))
                for row in rows]

    def iter_results(self, job_id: int, page: int = 2000) -> Iterator[tuple[BatchItemRecord, bytes | None]]:
        """Every item of a job with its certificate's DER (None when it got none), in order."""
        after = -1
        while True:
            rows = self.items_with_der(job_id, after=after, limit=page)
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1][0].idx


class BatchProgress:
    """The batch runner's bookkeeping writes, each in a small transaction of its own, unaudited."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def claim(self, job_id: int, owner: str, *, statuses: Sequence[str], stale_before: datetime | None,
              now: datetime, status: str) -> bool:
        """Take a job for ``owner`` if it is in ``statuses`` and unowned or its owner's heartbeat is stale."""
        free = or_(_j.owner.is_(None), _j.heartbeat_at.is_(None))
        if stale_before is not None:
            free = or_(free, _j.heartbeat_at < stale_before)
        stmt = (update(batch_jobs)
                .where(_j.id == job_id, _j.status.in_(list(statuses)), free)
                .values(owner=owner, heartbeat_at=now, status=status,
                        started_at=func.coalesce(_j.started_at, now)))
        with write_connection(self._engine) as conn, conn.begin():
            return bool(conn.execute(stmt).rowcount == 1)

    def claim_from(self, job_id: int, owner: str, dead_owner: str, now: datetime, status: str) -> bool:
        """Take a job whose owner is known to be dead (same host, process gone)."""
        stmt = (update(batch_jobs).where(_j.id == job_id, _j.owner == dead_owner)
                .values(owner=owner, heartbeat_at=now, status=status))
        with write_connection(self._engine) as conn, conn.begin():
            return bool(conn.execute(stmt).rowcount == 1)

    def release(self, job_id: int, owner: str, *, status: str | None = None) -> bool:
        """Give a claimed job back (its owner is shutting down, or, with ``status="PAUSED"``, the
        processing window closed): any process may claim it at once (a PAUSED one inside the window)."""
        values: dict[str, Any] = {"owner": None, "heartbeat_at": None}
        if status is not None:
            values["status"] = status
        with write_connection(self._engine) as conn, conn.begin():
            stmt = update(batch_jobs).where(_j.id == job_id, _j.owner == owner).values(**values)
            return bool(conn.execute(stmt).rowcount == 1)

    def heartbeat(self, job_id: int, owner: str, now: datetime) -> bool:
        with write_connection(self._engine) as conn, conn.begin():
            stmt = update(batch_jobs).where(_j.id == job_id, _j.owner == owner).values(heartbeat_at=now)
            return bool(conn.execute(stmt).rowcount == 1)

    def record_results(self, job_id: int, owner: str | None, results: Sequence[ItemResult], now: datetime) -> None:
        """Store item outcomes and advance the job's counters in one small transaction.

        Only items without an outcome are updated, and the counters advance by the rows actually
        changed, so recording the same outcome twice (a resumed run) never counts it twice. Used
        for outcomes that have no certificate transaction of their own (limit refusals, recovery,
        failures); issued chunks go through :meth:`BatchWrites.record_outcomes` instead.
        """
        if not results:
            return
        issued = [(r.idx, r.serial) for r in results if r.serial is not None]
        refused = [(r.idx, r.error_code, r.error_text) for r in results if r.serial is None]
        with write_connection(self._engine) as conn, conn.begin():
            _record_outcomes(conn, job_id, owner, issued, refused, now)

    def pause_queued(self, now: datetime) -> int:
        """Outside the processing window: every QUEUED job becomes PAUSED (spec §7.2)."""
        stmt = update(batch_jobs).where(_j.status == "QUEUED").values(status="PAUSED", heartbeat_at=now)
        with write_connection(self._engine) as conn, conn.begin():
            return int(conn.execute(stmt).rowcount)

    def set_status(self, job_id: int, status: str, *, now: datetime, owner: str | None = None,
                   finished: bool = False, expires_at: datetime | None = None, error_code: str | None = None,
                   error_text: str | None = None) -> None:
        """``finished``: the job has its final status; ``expires_at``: until when its results are kept
        (counted from now, when they exist, not from the submission)."""
        values: dict[str, Any] = {"status": status, "heartbeat_at": now}
        if finished:
            values["finished_at"] = now
            values["owner"] = None
        if expires_at is not None:
            values["expires_at"] = expires_at
        if error_code is not None:
            values["error_code"] = error_code
            values["error_text"] = error_text
        stmt = update(batch_jobs).where(_j.id == job_id)
        if owner is not None:
            stmt = stmt.where(_j.owner == owner)
        with write_connection(self._engine) as conn, conn.begin():
            conn.execute(stmt.values(**values))

    def purge_expired(self, now: datetime) -> int:
        """Delete finished jobs past their retention (30 days by default) with their items."""
        with write_connection(self._engine) as conn, conn.begin():
            expired = [int(r) for r in conn.execute(
                select(_j.id).where(_j.expires_at < now, _j.finished_at.is_not(None))).scalars()]
            if not expired:
                return 0
            conn.execute(delete(batch_items).where(_i.batch_id.in_(expired)))
            conn.execute(delete(batch_jobs).where(_j.id.in_(expired)))
            return len(expired)


class BatchWrites:
    """Audited writes (inside ``store.transaction()``): a batch accepted, a chunk's item outcomes."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self._conn = tx._conn  # same package: the transaction's connection

    def add_job(self, *, ref: str, party_id: str, aro_id: str, system: str | None, route: str, interface: str,
                client_ref: str, status: str, items: Sequence[NewItem], now: datetime,
                expires_at: datetime) -> int:
        """Record an accepted batch and its CSRs; returns its BatchId."""
        result = self._conn.execute(insert(batch_jobs).values(
            ref=ref, party_id=party_id, aro_id=aro_id, system=system, route=route, interface=interface,
            client_ref=client_ref, status=status, total=len(items), processed=0, issued=0, rejected=0,
            created_at=now, expires_at=expires_at,
        ).returning(_j.id))
        job_id = int(result.scalar_one())
        _add_items(self._conn, job_id, items)
        self._tx._count_change()
        return job_id

    def record_outcomes(self, job_id: int, owner: str | None, issued: Sequence[tuple[int, str]],
                        refused: Sequence[tuple[int, str | None, str | None]], now: datetime) -> None:
        """Item outcomes (``(idx, serial)``, ``(idx, code, text)``) and the job's counters, in this
        transaction: the batch runner records a chunk's outcomes in the transaction that commits
        its certificates, so the items can never lag behind (or run ahead of) the certificates.

        Bookkeeping, not a state change of the SMKI: it needs no audit record of its own.
        """
        _record_outcomes(self._conn, job_id, owner, issued, refused, now)
        self._tx.refused_codes.update(code or "unknown" for _idx, code, _text in refused)

    def change_status(self, job_id: int, from_status: str, to_status: str, *,
                      error_code: str | None = None, error_text: str | None = None,
                      finished_at: datetime | None = None, expires_at: datetime | None = None) -> bool:
        """Move a job from ``from_status`` to ``to_status`` (RA approval or rejection, audited in
        this transaction); False when it was not in ``from_status`` (someone moved it first).
        ``finished_at``/``expires_at``: a final status (a rejection) and how long it is kept."""
        values: dict[str, Any] = {"status": to_status}
        if finished_at is not None:
            values["finished_at"] = finished_at
        if expires_at is not None:
            values["expires_at"] = expires_at
        if error_code is not None:
            values.update(error_code=error_code, error_text=error_text)
        stmt = update(batch_jobs).where(_j.id == job_id, _j.status == from_status).values(**values)
        return bool(self._conn.execute(stmt).rowcount == 1)


def batch_reads(store: Store) -> BatchReads:
    return BatchReads(store.engine)


def batch_progress(store: Store) -> BatchProgress:
    return BatchProgress(store.engine)


def batch_writes(tx: Transaction) -> BatchWrites:
    return BatchWrites(tx)
