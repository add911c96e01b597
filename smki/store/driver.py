"""Below SQLAlchemy's row processing: the driver's own placeholders, tuples and write connections.

Why: batches move 50,000 rows at a time, and SQLAlchemy's per-row parameter and result processing
cost more than the SQL itself there. Only the hot paths of :mod:`smki.store.batches` use this.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from smki.store.engine import WRITE_OPTION
from smki.store.reads import read_connection

_Key = TypeVar("_Key")
_Page = TypeVar("_Page")


def read_ahead(fetch: Callable[[_Key], _Page], keys: Sequence[_Key]) -> Iterator[_Page]:
    """``fetch(key)`` for each key, in order, the next one running in a thread while the caller
    works on the current one.

    For reads from a database server (PostgreSQL: another process, another core): a 50,000-entry
    ``CSRBatchResult`` is rendered a page at a time, and without this the server waited for each
    page's join before rendering it (``smki bench service-phases`` times the whole result both ways:
    on PostgreSQL from no gain to a fifth less, docs/performance.md). SQLite reads in this process
    and gained nothing. At most one fetch is ahead; a caller that stops early waits for that one, and
    its exception reaches the caller.
    """
    if not keys:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="smki-read-ahead") as pool:
        pending = pool.submit(fetch, keys[0])
        for key in keys[1:]:
            current = pending.result()
            pending = pool.submit(fetch, key)
            yield current
        yield pending.result()


#: Marks a statement PostgreSQL must plan with the values of each execution, never from a prepared
#: statement's generic plan: a batch's look-ups and updates, whose values are a chunk's Device IDs,
#: keys or outcomes packed into one ``bytea`` or passed as arrays. After five executions of a prepared
#: statement PostgreSQL may switch to a plan made without the values, and for these it chose scans:
#: the outcomes' ``UPDATE … FROM unnest`` went from milliseconds to 0.7 to 1.4 s per commit, and the
#: nightly 375,000 from a minute to six. The statement runs once per chunk of thousands, so planning
#: it each time costs nothing that shows; ``smki.store.pg_cursor`` sends it unprepared.
PLANNED_WITH_ITS_VALUES = "/* smki: planned with its values */"


def pipelined_first_rows(raw: Any, pipeline: Any, statements: Sequence[tuple[str, Sequence[object]]]) -> list[Any]:
    """PostgreSQL: the first row (or None) of each statement, sent in psycopg's ``pipeline`` of the
    raw connection ``raw`` after whatever it holds already, then all answered at once (one round
    trip). Raw cursors: SQLAlchemy reads a pipelined query's missing description as "no rows"."""
    cursors = [raw.cursor() for _ in statements]
    try:
        for cursor, (sql, params) in zip(cursors, statements, strict=True):
            cursor.execute(sql, params)
        pipeline.sync()
        return [cursor.fetchone() for cursor in cursors]
    finally:
        for cursor in cursors:
            cursor.close()


def placeholder(conn: Any) -> str:
    """The driver's parameter mark: ``?`` for SQLite, ``%s`` for psycopg."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def pg_packed_rows(count: int, columns: Sequence[tuple[bytes, int]]) -> tuple[str, tuple[object, ...]] | None:
    """A PostgreSQL ``SELECT`` of ``count`` rows whose columns are byte strings of fixed widths, each
    column sent as ONE ``bytea`` (its values concatenated) that the server cuts up; ``columns``: each
    column's concatenation and width. The caller checks each value's width (a concatenation of the
    right length may still hold a short and a long value); None when a length does not add up.

    psycopg adapts a list of ``bytes`` element by element in Python (~4 µs each, measured), and
    even binary ``COPY`` encodes row by row (~0.75 µs a two-column row in the batch writer); a
    concatenation per column costs one ``join`` (~0.25 µs a row for the key register's rows,
    measured). ``bytea`` rather than text, whose ``substring`` walks the characters (quadratic:
    ~800 µs a row at 4,000 rows).
    """
    cuts: list[str] = []
    for octets, width in columns:
        if len(octets) != count * width:
            return None
        cuts.append(f"substring(%s::bytea FROM i * {int(width)} + 1 FOR {int(width)})")
    return (f"SELECT {PLANNED_WITH_ITS_VALUES} {', '.join(cuts)} FROM generate_series(0, %s - 1) AS i",
            (*(octets for octets, _ in columns), count))


def pg_fixed_width_any(values: Sequence[bytes], width: int) -> tuple[str, tuple[object, ...]] | None:
    """``ANY(…)`` of PostgreSQL byte strings that all have ``width`` octets, sent as one ``bytea``
    (:func:`pg_packed_rows`): ~0.5 µs a value in the writer rather than ~4 µs for a list, and
    the planner still uses the primary key (``Index Cond: (… = ANY ($0))``). None when a value has
    another width (the caller sends the list then).

    One value (a single CSR's Device, its key) is sent as it is: the packed form's sub-select
    costs the server more than it saves there (``smki bench sql-forms`` on PostgreSQL 15: 270-310 µs
    a statement packed, 12-114 µs less plain, and half the backend's CPU).
    """
    if any(len(value) != width for value in values):
        return None
    if len(values) == 1:
        return "(%s)", (values[0],)
    packed = pg_packed_rows(len(values), [(b"".join(values), width)])
    return None if packed is None else (f"ANY(ARRAY({packed[0]}))", packed[1])


_HEX_ITEMS = re.compile(r"[0-9A-Fa-f]+(?:,[0-9A-Fa-f]+)*")


def pg_int_array(values: Sequence[int]) -> str:
    """A PostgreSQL array literal (``{1,2,3}``) of integers, for a ``%s::integer[]`` parameter.

    psycopg adapts a Python list element by element in Python (``ListDumper``: ~1.4 µs an element
    of the writer's CPU, measured for a commit's 2,000 outcomes); one ``join`` costs ~0.1 µs, and
    the server reads the text as it would the binary array."""
    return "{" + ",".join(map(str, map(int, values))) + "}"


def pg_hex_array(values: Sequence[str]) -> str | None:
    """A PostgreSQL array literal of hexadecimal strings (serial numbers), as :func:`pg_int_array`
    for a ``%s::varchar[]`` parameter; None when a value is empty or not hexadecimal (the caller
    then passes the list). Hex digits need no quoting and can never spell ``NULL``."""
    joined = ",".join(values)
    if not values or _HEX_ITEMS.fullmatch(joined) is None or joined.count(",") != len(values) - 1:
        return None
    return "{" + joined + "}"


def use_c_bytea_dumper(cursor: Any) -> None:
    """Make a psycopg cursor's binary ``COPY`` write ``bytea`` columns with psycopg's C dumper.

    ``Copy.set_types`` looks dumpers up by type OID, and for ``bytea`` psycopg's DB-API module has
    registered its Python ``BinaryBinaryDumper`` (for ``psycopg.Binary`` objects) last: two Python
    calls per value, ~1 µs of the batch writer's CPU per certificate (two ``bytea`` columns). The
    cursor's own adapters map is a copy, so nothing else on the connection changes."""
    from psycopg.types.string import BytesBinaryDumper

    cursor.adapters.register_dumper(bytes, BytesBinaryDumper)


def driver_rows(engine: Engine, sql: str, params: tuple[object, ...]) -> list[Any]:
    """Rows of one query as the driver's own tuples, ``?`` marks adapted to the driver.

    SQLite and psycopg both return BLOB/bytea values as ``bytes``.
    """
    with read_connection(engine) as conn:
        if placeholder(conn) != "?":
            sql = sql.replace("?", placeholder(conn))
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()


def write_connection(engine: Engine) -> Connection:
    """A connection for an unaudited bookkeeping write (SQLite takes its write lock at BEGIN)."""
    return engine.connect().execution_options(**{WRITE_OPTION: True})
