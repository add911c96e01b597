"""Telling the database being away from every other error (the batch runner's retry decision).

A connection refused, a database that does not accept connections, or a connection the server
terminated mid-query is transient: the work it interrupted is retried when the database answers,
never recorded as an outcome. Any other error is the work's own.
"""

from __future__ import annotations

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from smki.errors import SmkiError

UNAVAILABLE = "store.unavailable"


def database_away(exc: BaseException) -> str | None:
    """One line saying why the database could not be used, if that is what ``exc`` (or what caused
    it) is; None for any other error."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SmkiError) and seen.code == UNAVAILABLE:
            return f"{seen.code}: {seen.message}"
        if isinstance(seen, OperationalError | InterfaceError | DisconnectionError) or _driver_operational(seen):
            text = str(getattr(seen, "orig", None) or seen).strip() or type(seen).__name__
            return f"{UNAVAILABLE}: {text.splitlines()[0][:200]}"
        seen = seen.__cause__ or seen.__context__
    return None


def _driver_operational(exc: BaseException) -> bool:
    """psycopg's own OperationalError (raised raw where SQLAlchemy does not wrap, e.g. a pipeline)."""
    try:
        import psycopg
    except ImportError:  # SQLite only
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
