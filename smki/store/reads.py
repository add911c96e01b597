"""One pooled connection for all the reads of one request, each read still its own transaction.

Why: a single Device CSR over the web services reads the register half a dozen times (the caller's
credential and ARO, the Party, the Device's certificate count, the Device CA certificate, the key
register), and each read checked out a pooled connection of its own and gave it back with a
rollback: on PostgreSQL a ``BEGIN`` and a ``ROLLBACK`` round trip per read, in SQLAlchemy's pool and
event machinery a fair share of the request's CPU. Inside :func:`held_reads` those reads share one
connection:

* **PostgreSQL**: the connection is in autocommit, so each statement is its own transaction, exactly
  as under READ COMMITTED (each statement of a transaction takes its own snapshot there anyway),
  with no ``BEGIN``/``ROLLBACK`` at all.
* **SQLite**: each read still opens and ends its own (deferred, read-only) transaction on the held
  connection, so it sees every write committed before it — the writes of the request itself
  included — just as before; only the pool checkout goes.

Nothing here ever writes: ``store.transaction()`` takes its own connection as before. A read that
begins while the held connection is already in use (a read inside a streamed read) gets a
connection of its own, so the two never share a cursor or a transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import TimeoutError as PoolTimeout


class _Held:
    """The held connection of one engine, and whether a read is using it now."""

    __slots__ = ("busy", "conn", "engine")

    def __init__(self, engine: Engine, conn: Connection) -> None:
        self.engine = engine
        self.conn = conn
        self.busy = False


#: The held connections of the current request (thread or task: a context variable, so two
#: requests never see each other's), innermost last.
_held: ContextVar[tuple[_Held, ...]] = ContextVar("smki_held_reads", default=())


def _find(engine: Engine) -> _Held | None:
    for held in _held.get():
        if held.engine is engine:
            return held
    return None


def holding(engine: Engine) -> bool:
    """Whether reads on ``engine`` share a held connection here."""
    return _find(engine) is not None


@contextmanager
def held_reads(engine: Engine) -> Iterator[None]:
    """Around one request's work: its reads on ``engine`` share one connection (see the module).

    Re-entrant: inside an outer scope for the same engine it adds nothing. The connection goes
    back to the pool when the block ends, however it ends.
    """
    if _find(engine) is not None:
        yield
        return
    try:
        conn = engine.connect()
    except PoolTimeout as exc:  # every pooled connection in use for the pool's whole timeout
        from smki.errors import SmkiError

        raise SmkiError("store.unavailable", f"no database connection came free: {str(exc).splitlines()[0]}") from exc
    try:
        conn = reading(conn)
        token = _held.set((*_held.get(), _Held(engine, conn)))
        try:
            yield
        finally:
            _held.reset(token)
    finally:
        conn.close()


def reading(conn: Connection) -> Connection:
    """``conn`` set up for reads only: on PostgreSQL in autocommit, so no read ends in a ``ROLLBACK``.

    Why: psycopg forgets every statement it has prepared on a connection at each ``ROLLBACK`` (and
    sends ``DEALLOCATE ALL``), as a rolled-back ``DROP`` or ``ALTER`` could have left them invalid. A
    read that ended the usual way, with the pool's rollback, so cost the next five uses of every
    statement on that connection a fresh parse and plan in the server (a wide ``SELECT``: 150-250 us
    of its CPU each), and the batch runner's poll for queued jobs, or a ``/readyz`` probe, did that
    to a pooled connection several times a second. In autocommit each statement is its own
    transaction, which under READ COMMITTED sees what it would have seen inside one (every statement
    takes its own snapshot there), and the connection goes back to the pool with nothing to roll
    back. SQLite is left as it is: its reads end with a rollback that costs nothing.
    """
    if conn.dialect.name == "postgresql":
        return conn.execution_options(isolation_level="AUTOCOMMIT")
    return conn


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for one read: the held one when there is one and it is free, else a checkout.

    On the held connection, the read's transaction (SQLite) is ended when the read ends, so the
    next read sees everything committed in between.
    """
    held = _find(engine)
    if held is None or held.busy:
        with engine.connect() as conn:
            yield reading(conn)
        return
    held.busy = True
    try:
        yield held.conn
    finally:
        held.busy = False
        if held.conn.in_transaction():
            held.conn.rollback()
