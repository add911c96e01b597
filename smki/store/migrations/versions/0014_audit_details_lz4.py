"""PostgreSQL: the audit log's ``details`` are compressed with LZ4 rather than PostgreSQL's own pglz.

A batch commit's audit record lists every certificate it issued (serial, Device ID, usage, index in
the batch): ~134 kB of JSON for 2,000 certificates, which PostgreSQL compresses as it stores it. With
pglz that cost the server ~2.8 ms a record, ~1.4 µs of its CPU per certificate issued, for a
record of 83 kB; LZ4 (built into Debian's and the PGDG's PostgreSQL 14 and later) stores the same
record in 87 kB in ~0.4 ms (a 500-record copy in one sitting, ``docs/performance.md``). Records
already stored keep the compression they have: PostgreSQL decompresses either on reading.

Only the column's setting changes (no table rewrite), and only where the server can compress with
LZ4: a server built without it (``default_toast_compression`` does not offer ``lz4``) keeps pglz,
which reads and hashes the same. SQLite stores the text as it is: nothing changes there.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _offers_lz4() -> bool:
    """Whether this PostgreSQL server can compress with LZ4 (a build option of the server)."""
    return bool(op.get_bind().execute(text(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")).scalar())


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql" and _offers_lz4():
        op.execute("ALTER TABLE audit_log ALTER COLUMN details SET COMPRESSION lz4")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE audit_log ALTER COLUMN details SET COMPRESSION default")
