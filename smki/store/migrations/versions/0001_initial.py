"""Certificates, the audit log and its head row.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Written by hand to match ``smki.store.models`` (the schema test compares them). Later migrations
(e.g. the RA's parties and AROs) set ``down_revision = "0001"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from smki.audit import GENESIS_HASH
from smki.store.types import BigId, UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IN_USE = sa.text("status = 'I' AND device_id IS NOT NULL")
_REVOKED = sa.text("status = 'R'")
_HAS_ENTITY = sa.text("entity_id IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("serial", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("usage", sa.String(2), nullable=True),
        sa.Column("issuer_key_id", sa.String(64), nullable=False),
        sa.Column("device_id", sa.LargeBinary(8), nullable=True),
        sa.Column("entity_id", sa.LargeBinary(8), nullable=True),
        sa.Column("role", sa.SmallInteger, nullable=True),
        sa.Column("status", sa.String(1), nullable=False),
        sa.Column("not_before", UTCDateTime, nullable=False),
        sa.Column("not_after", UTCDateTime, nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.Column("issued_at", UTCDateTime, nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.Column("revocation_reason", sa.SmallInteger, nullable=True),
        sa.Column("changed_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_certificates"),
        sa.UniqueConstraint("serial", name="uq_certificates_serial"),
        sa.CheckConstraint("status IN ('P', 'I', 'N', 'E', 'R')", name="ck_certificates_status"),
        sa.CheckConstraint("usage IS NULL OR usage IN ('DS', 'KA')", name="ck_certificates_usage"),
    )
    op.create_index("ix_certificates_entity_id", "certificates", ["entity_id"], sqlite_where=_HAS_ENTITY,
                    postgresql_where=_HAS_ENTITY)
    op.create_index("ix_certificates_issued_at", "certificates", ["issued_at"])
    op.create_index("ix_certificates_batch_id", "certificates", ["batch_id"])
    op.create_index("ix_certificates_changed_at", "certificates", ["changed_at"])
    op.create_index("ix_certificates_device_id_usage_status", "certificates", ["device_id", "usage", "status"])
    op.create_index("ix_certificates_revoked", "certificates", ["issuer_key_id"], sqlite_where=_REVOKED,
                    postgresql_where=_REVOKED)
    op.create_index(
        "uq_certificates_device_in_use",
        "certificates",
        ["device_id", "usage"],
        unique=True,
        sqlite_where=_IN_USE,
        postgresql_where=_IN_USE,
    )

    op.create_table(
        "audit_log",
        sa.Column("seq", BigId, primary_key=True, autoincrement=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_subject", "audit_log", ["subject"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", BigId, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
        sa.CheckConstraint("id = 1", name="ck_audit_head_single_row"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_table("audit_log")
    op.drop_table("certificates")
