"""Column types that behave the same on SQLite and PostgreSQL.

Times are stored as UTC: ``timestamptz`` on PostgreSQL, naive UTC text on SQLite (which has no
time-zone type; SQLAlchemy's ISO text sorts correctly, so range queries use the index). Reading
always returns an aware UTC ``datetime`` so callers never compare naive with aware values.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Dialect, Integer
from sqlalchemy.types import TypeDecorator

from smki.errors import SmkiError

#: 64-bit ids; on SQLite an ``INTEGER PRIMARY KEY`` is the rowid itself (no second index).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime, whichever engine stores it."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise SmkiError("store.naive-datetime", "times given to the store must be time-zone aware")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
