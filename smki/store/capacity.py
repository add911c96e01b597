"""Per-Party capacity buckets (token buckets for the SEC's request limits) in the store.

Several server processes share them: a bucket is read ``FOR UPDATE`` (PostgreSQL) or under
SQLite's write lock, so two processes never both spend the same tokens. Bucket levels are
bookkeeping, not a state change of the SMKI, so they carry no audit record.
"""

from __future__ import annotations

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from smki.store.driver import write_connection
from smki.store.models import capacity_buckets
from smki.store.reads import read_connection
from smki.store.store import Store

_b = capacity_buckets.c


class CapacityLedger:
    """Takes tokens from, and reports the levels of, the Parties' capacity buckets."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def take_tokens(self, party_id: str, limit_name: str, *, amount: float, capacity: float, rate: float,
                    now: float) -> tuple[bool, float]:
        """Take ``amount`` tokens from the Party's bucket (refilled at ``rate``/s up to ``capacity``).

        Returns (granted, seconds until enough tokens would be there). Atomic across processes.
        """
        with write_connection(self._engine) as conn, conn.begin():
            stmt = select(_b.tokens, _b.updated).where(_b.party_id == party_id, _b.limit_name == limit_name)
            if conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update()
            row = conn.execute(stmt).one_or_none()
            if row is None:
                tokens = capacity
                try:
                    with conn.begin_nested():
                        conn.execute(insert(capacity_buckets).values(party_id=party_id, limit_name=limit_name,
                                                                     tokens=capacity, updated=now))
                except IntegrityError:  # another process created it first: read and lock theirs
                    row = conn.execute(stmt).one()
                    tokens = float(row.tokens)
                    tokens = min(capacity, tokens + max(0.0, now - float(row.updated)) * rate)
            else:
                tokens = min(capacity, float(row.tokens) + max(0.0, now - float(row.updated)) * rate)
            granted = tokens >= amount
            if granted:
                tokens -= amount
            conn.execute(update(capacity_buckets)
                         .where(_b.party_id == party_id, _b.limit_name == limit_name)
                         .values(tokens=tokens, updated=now))
            wait = 0.0 if granted else ((amount - tokens) / rate if rate > 0 else float("inf"))
            return granted, wait

    def bucket_levels(self, party_id: str | None = None) -> list[tuple[str, str, float, float]]:
        """(party, limit name, tokens, updated) of every bucket, or of one Party's."""
        stmt = select(_b.party_id, _b.limit_name, _b.tokens, _b.updated)
        if party_id is not None:
            stmt = stmt.where(_b.party_id == party_id)
        with read_connection(self._engine) as conn:
            return [(r.party_id, r.limit_name, float(r.tokens), float(r.updated)) for r in conn.execute(stmt)]


def capacity_ledger(store: Store) -> CapacityLedger:
    return CapacityLedger(store.engine)
