"""The certificates table's CHECK constraints as chains of ORs on SQLite: its IN lists cost every insert.

SQLite evaluates ``status IN ('P', 'I', 'N', 'E', 'R')`` in a CHECK constraint by first building a
small temporary table from the list, and a batch's ``executemany`` runs the INSERT afresh for each
row, so it built two such tables for every certificate: ~2 µs of the single writer's ~10 µs insert
(issue 15; ``docs/performance.md``). ``status = 'P' OR status = 'I' OR …`` allows exactly the same
values and costs nothing measurable.

The constraints are rewritten in SQLite's schema text, by the procedure SQLite documents for
changing a CHECK constraint (https://www.sqlite.org/lang_altertable.html, "Making Other Kinds Of
Table Schema Changes"): every row satisfies the new constraints, which are the old ones written
another way, so the table is not copied (for a large store a copy would take as long as the store
is big). PostgreSQL evaluates an IN list without such a table: its constraints are left as they are.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (as 0001 wrote it, as it is from now on), in the CREATE TABLE text SQLite keeps.
_CHECKS = (
    ("CHECK (status IN ('P', 'I', 'N', 'E', 'R'))",
     "CHECK (status = 'P' OR status = 'I' OR status = 'N' OR status = 'E' OR status = 'R')"),
    ("CHECK (usage IS NULL OR usage IN ('DS', 'KA'))",
     "CHECK (usage IS NULL OR usage = 'DS' OR usage = 'KA')"),
)


def _rewrite_sqlite_checks(pairs: Sequence[tuple[str, str]]) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    where = "type = 'table' AND name = 'certificates'"
    sql = bind.exec_driver_sql(f"SELECT sql FROM sqlite_master WHERE {where}").scalar_one()
    for before, after in pairs:
        if sql.count(before) != 1:
            raise RuntimeError(f"the certificates table's schema does not hold {before!r} once; not changed")
        sql = sql.replace(before, after)
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        bind.exec_driver_sql(f"UPDATE sqlite_master SET sql = ? WHERE {where}", (sql,))
        # A new schema version makes every connection (this one included) read the schema again.
        bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    _rewrite_sqlite_checks(_CHECKS)


def downgrade() -> None:
    _rewrite_sqlite_checks([(after, before) for before, after in _CHECKS])
