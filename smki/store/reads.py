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
    conn = engine.connect()
    try:
        if engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        token = _held.set((*_held.get(), _Held(engine, conn)))
        try:
            yield
        finally:
            _held.reset(token)
    finally:
        conn.close()


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for one read: the held one when there is one and it is free, else a checkout.

    On the held connection, the read's transaction (SQLite) is ended when the read ends, so the
    next read sees everything committed in between.
    """
    held = _find(engine)
    if held is None or held.busy:
        with engine.connect() as conn:
            yield conn
        return
    held.busy = True
    try:
        yield held.conn
    finally:
        held.busy = False
        if held.conn.in_transaction():
            held.conn.rollback()
