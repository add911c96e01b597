"""Published CRLs and ARLs (kept retrievable by number), and actions awaiting a second person.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from smki.store.types import BigId, UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revocation_lists",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(3), nullable=False),
        sa.Column("number", sa.BigInteger, nullable=False),
        sa.Column("this_update", UTCDateTime, nullable=False),
        sa.Column("next_update", UTCDateTime, nullable=False),
        sa.Column("entries", sa.BigInteger, nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_revocation_lists"),
        sa.UniqueConstraint("kind", "number", name="uq_revocation_lists_kind_number"),
        sa.CheckConstraint("kind IN ('CRL', 'ARL')", name="ck_revocation_lists_kind"),
    )
    op.create_table(
        "dual_control",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("proposed_by", sa.String(64), nullable=False),
        sa.Column("proposed_at", UTCDateTime, nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dual_control"),
    )


def downgrade() -> None:
    op.drop_table("dual_control")
    op.drop_table("revocation_lists")
