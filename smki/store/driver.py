"""Below SQLAlchemy's row processing: the driver's own placeholders, tuples and write connections.

Why: batches move 50,000 rows at a time, and SQLAlchemy's per-row parameter and result processing
cost more than the SQL itself there. Only the hot paths of :mod:`smki.store.batches` use this.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine

from smki.store.engine import WRITE_OPTION


def placeholder(conn: Any) -> str:
    """The driver's parameter mark: ``?`` for SQLite, ``%s`` for psycopg."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def pg_fixed_width_any(values: Sequence[bytes], width: int) -> tuple[str, tuple[bytes, int]] | None:
    """``ANY(…)`` of PostgreSQL byte strings that all have ``width`` octets, sent as one ``bytea``.

    psycopg adapts a list of ``bytes`` element by element in Python (~4 µs each, measured): a
    chunk's 500 key fingerprints cost the batch writer more than the look-up itself. One
    concatenated ``bytea``, cut up by the server, costs ~0.5 µs a value; the planner still uses the
    primary key (``Index Cond: (… = ANY ($0))``). None when a value has another width (the caller
    sends the list then).
    """
    if any(len(value) != width for value in values):
        return None
    return (f"ANY(ARRAY(SELECT substring(%s::bytea FROM i * {int(width)} + 1 FOR {int(width)}) "
            "FROM generate_series(0, %s - 1) AS i))", (b"".join(values), len(values)))


def driver_rows(engine: Engine, sql: str, params: tuple[object, ...]) -> list[Any]:
    """Rows of one query as the driver's own tuples, ``?`` marks adapted to the driver.

    SQLite and psycopg both return BLOB/bytea values as ``bytes``.
    """
    with engine.connect() as conn:
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
