"""A Party's DCC Gateway Connections and Registered User roles become dated rows (``party_periods``).

They were JSON lists on the Party's row, with no date: a what-if or a replay for a past date
counted a connection or role added today as if it had held then, and nobody could say since when
a connection existed. Each is now a period — in force from ``valid_from`` until ``valid_until``
(the first day it no longer holds; NULL while it holds) — with the RA staff member and reason for
each end. Removing one ends its period; nothing is deleted.

Carried over: every connection and role in the old lists becomes a period in force from **its
Party's registration date** (the date of ``parties.created_at``, when the register first held the
Party and hence the earliest the register can vouch for it), or, failing that (a registration time
that cannot be read), **the date this migration runs**. The periods are recorded as added by
``migration-0013`` with a reason saying so. A list that is not a JSON list of identifiers is
refused (``store.migration-data``): guessing would put wrong facts under RA decisions.

The JSON columns are then dropped (SQLite ≥ 3.35 drops a column in place; PostgreSQL likewise).
The downgrade puts back, as JSON lists, what is in force on the day it runs, and drops the table.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from smki.errors import SmkiError
from smki.store.types import BigId

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = sa.text("valid_until IS NULL")
_COLUMNS = (("gateway_connections", "gateway-connection"), ("registered_user_roles", "registered-role"))
MIGRATED_BY = "migration-0013"


def _values(party_id: str, column: str, text: Any) -> list[str]:
    try:
        values = json.loads(text) if text else []
    except ValueError:
        values = None
    if not isinstance(values, list) or not all(isinstance(v, str) and 0 < len(v) <= 64 for v in values):
        raise SmkiError("store.migration-data",
                        f"Party {party_id!r}: {column} is not a JSON list of identifiers; fix it and upgrade again")
    return sorted(set(values))


def _registered_on(created_at: Any) -> date | None:
    """The registration date from ``created_at`` as the driver returns it (a datetime on PostgreSQL,
    naive UTC text on SQLite), or None if it cannot be read."""
    if isinstance(created_at, datetime):
        return created_at.date()
    if isinstance(created_at, str):
        try:
            return datetime.fromisoformat(created_at.strip()).date()
        except ValueError:
            return None
    return None


def _drop_column(table: str, column: str) -> None:
    if op.get_bind().dialect.name == "sqlite":  # in place (SQLite >= 3.35), not a batch rebuild of parties
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    else:
        op.drop_column(table, column)


def upgrade() -> None:
    op.create_table(
        "party_periods",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("party_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("valid_until", sa.Date, nullable=True),
        sa.Column("added_by", sa.String(64), nullable=False),
        sa.Column("added_reason", sa.Text, nullable=True),
        sa.Column("removed_by", sa.String(64), nullable=True),
        sa.Column("removed_reason", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_party_periods"),
        sa.ForeignKeyConstraint(["party_id"], ["parties.party_id"], name="fk_party_periods_party_id_parties"),
        sa.CheckConstraint("kind = 'gateway-connection' OR kind = 'registered-role'", name="ck_party_periods_kind"),
        sa.CheckConstraint("valid_until IS NULL OR valid_until >= valid_from", name="ck_party_periods_period"),
    )
    op.create_index("ix_party_periods_party_id", "party_periods", ["party_id"])
    op.create_index("uq_party_periods_open", "party_periods", ["party_id", "kind", "value"], unique=True,
                    sqlite_where=_OPEN, postgresql_where=_OPEN)

    conn = op.get_bind()
    today = datetime.now(UTC).date()
    old = sa.table("parties", sa.column("party_id"), sa.column("created_at"),
                   sa.column("gateway_connections"), sa.column("registered_user_roles"))
    periods = sa.table("party_periods", sa.column("party_id"), sa.column("kind"), sa.column("value"),
                       sa.column("valid_from", sa.Date), sa.column("added_by"), sa.column("added_reason"))
    rows: list[dict[str, Any]] = []
    for party in conn.execute(sa.select(old)).all():
        registered = _registered_on(party.created_at)
        since, basis = (registered, "the Party's registration date") if registered is not None \
            else (today, "the migration date (registration date unreadable)")
        for column, kind in _COLUMNS:
            for value in _values(party.party_id, column, getattr(party, column)):
                rows.append({"party_id": party.party_id, "kind": kind, "value": value, "valid_from": since,
                             "added_by": MIGRATED_BY,
                             "added_reason": f"carried over undated by migration 0013, in force from {basis}"})
    if rows:
        conn.execute(sa.insert(periods), rows)
    _drop_column("parties", "gateway_connections")
    _drop_column("parties", "registered_user_roles")


def downgrade() -> None:
    op.add_column("parties", sa.Column("registered_user_roles", sa.Text, nullable=False, server_default="[]"))
    op.add_column("parties", sa.Column("gateway_connections", sa.Text, nullable=False, server_default="[]"))
    conn = op.get_bind()
    today = datetime.now(UTC).date()
    periods = sa.table("party_periods", sa.column("party_id"), sa.column("kind"), sa.column("value"),
                       sa.column("valid_from", sa.Date), sa.column("valid_until", sa.Date))
    held: dict[tuple[str, str], set[str]] = {}
    for row in conn.execute(sa.select(periods)).all():
        if row.valid_from <= today and (row.valid_until is None or row.valid_until > today):
            held.setdefault((row.party_id, row.kind), set()).add(row.value)
    parties = sa.table("parties", sa.column("party_id"), sa.column("gateway_connections"),
                       sa.column("registered_user_roles"))
    for (party_id, kind), values in held.items():
        column = dict((k, c) for c, k in _COLUMNS)[kind]
        conn.execute(sa.update(parties).where(parties.c.party_id == party_id)
                     .values({column: json.dumps(sorted(values))}))
    op.drop_index("uq_party_periods_open", table_name="party_periods")
    op.drop_index("ix_party_periods_party_id", table_name="party_periods")
    op.drop_table("party_periods")
