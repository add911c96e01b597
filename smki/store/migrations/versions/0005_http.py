"""The HTTP interfaces: SMKI credentials, Device CSR batch jobs and their items, capacity buckets.

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from smki.store.types import BigId, UTCDateTime

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("serial", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("party_id", sa.String(64), nullable=True),
        sa.Column("aro_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("not_before", UTCDateTime, nullable=False),
        sa.Column("not_after", UTCDateTime, nullable=False),
        sa.Column("issued_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("serial", name="pk_credentials"),
        sa.CheckConstraint("status IN ('active', 'revoked')", name="ck_credentials_status"),
    )
    op.create_index("ix_credentials_kind_status", "credentials", ["kind", "status"])
    op.create_table(
        "batch_jobs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.Column("party_id", sa.String(64), nullable=False),
        sa.Column("aro_id", sa.String(64), nullable=False),
        sa.Column("system", sa.String(64), nullable=True),
        sa.Column("route", sa.String(8), nullable=False),
        sa.Column("interface", sa.String(8), nullable=False),
        sa.Column("client_ref", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("processed", sa.Integer, nullable=False),
        sa.Column("issued", sa.Integer, nullable=False),
        sa.Column("rejected", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("heartbeat_at", UTCDateTime, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=True),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_text", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_batch_jobs"),
        sa.UniqueConstraint("ref", name="uq_batch_jobs_ref"),
    )
    op.create_index("ix_batch_jobs_status", "batch_jobs", ["status"])
    op.create_index("ix_batch_jobs_party_id", "batch_jobs", ["party_id"])
    op.create_table(
        "batch_items",
        sa.Column("batch_id", BigId, nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("item_id", sa.String(100), nullable=False),
        sa.Column("csr", sa.LargeBinary, nullable=False),
        sa.Column("outcome", sa.String(8), nullable=True),
        sa.Column("serial", sa.String(32), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_text", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("batch_id", "idx", name="pk_batch_items"),
        sa.ForeignKeyConstraint(["batch_id"], ["batch_jobs.id"], name="fk_batch_items_batch_id_batch_jobs",
                                ondelete="CASCADE"),
    )
    op.create_table(
        "capacity_buckets",
        sa.Column("party_id", sa.String(64), nullable=False),
        sa.Column("limit_name", sa.String(40), nullable=False),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("party_id", "limit_name", name="pk_capacity_buckets"),
    )


def downgrade() -> None:
    op.drop_table("capacity_buckets")
    op.drop_table("batch_items")
    op.drop_index("ix_batch_jobs_party_id", table_name="batch_jobs")
    op.drop_index("ix_batch_jobs_status", table_name="batch_jobs")
    op.drop_table("batch_jobs")
    op.drop_index("ix_credentials_kind_status", table_name="credentials")
    op.drop_table("credentials")
