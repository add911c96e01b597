"""Work only one process of one node may do at a time: a named, non-blocking, cluster-wide lock.

Several ``smki serve`` nodes share one PostgreSQL database, and each runs the same background jobs
(CRL/ARL re-signing, retention purges). Without coordination each node would publish its own CRL
at every interval. :func:`exclusive` takes a PostgreSQL *session advisory lock* on a connection of
its own for the duration of the work: the first process gets it and does the work; any other
process at the same moment is told ``False`` and skips that round; a process that dies mid-work
loses its connection and with it the lock, so nothing has to be cleaned up.

On SQLite (one home, so one machine) a lock file beside the database does the same.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, text


def lock_key(name: str) -> int:
    """The advisory-lock key of a lock name (a signed 64-bit integer, as PostgreSQL takes it)."""
    return int.from_bytes(hashlib.sha256(f"smki:{name}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def exclusive(engine: Engine, name: str) -> Iterator[bool]:
    """Hold the lock ``name`` for the block if nobody else does; yields whether it is held.

    Never waits: a caller that gets ``False`` skips the work this time (another process is doing it).
    """
    if engine.dialect.name == "postgresql":
        key = lock_key(name)
        with engine.connect() as conn:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield True  # a private in-memory database: this process is the only one
        return
    import fcntl

    path = Path(f"{database}.{name}.lock")
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
