"""PostgreSQL: batch items leave half of each page free, so that recording an outcome is a HOT update.

A batch's CSRs are loaded with ``COPY`` into full pages, and the runner then records each item's
outcome (``outcome``, ``serial`` or the error) with an ``UPDATE`` per commit. With no room on the
page, every updated row went to a new page and added an entry to the primary key's index: a new
~500-byte row version and an index insert per certificate. With ``fillfactor = 50`` the new
version fits beside the old one and none of the updated columns is indexed, so PostgreSQL makes it
a heap-only (HOT) update: no index entry, and the old version is pruned in place. The table's
size once a batch is done is the same either way (the old versions take the room); pages are only
half full between a batch's load and its outcomes. SQLite, which rewrites rows in place, has no
such setting: nothing changes there.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The share of each page a batch's ``COPY`` fills: the rest holds the rows' outcome versions.
FILLFACTOR = 50


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE batch_items SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE batch_items RESET (fillfactor)")
