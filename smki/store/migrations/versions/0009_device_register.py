"""Issue 13, continued: the device register (Device IDs, type, SMI status, responsible Parties, dated
changes), and the key register rebuilt WITHOUT ROWID on SQLite.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

0007 (the key register) was merged before the device register existed, so the rest of issue 13's
schema is here rather than in an edited 0007. On SQLite, ``certified_keys`` becomes a WITHOUT ROWID
table (its rows in the primary-key b-tree: a batch's insert touches one b-tree per key, not two);
PostgreSQL has no such distinction.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from smki.store.types import BigId

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild_certified_keys(without_rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    suffix = " WITHOUT ROWID" if without_rowid else ""
    op.execute("CREATE TABLE certified_keys_new (fingerprint BLOB NOT NULL, serial VARCHAR(32) NOT NULL, "
               f"CONSTRAINT pk_certified_keys PRIMARY KEY (fingerprint)){suffix}")
    op.execute("INSERT INTO certified_keys_new (fingerprint, serial) SELECT fingerprint, serial FROM certified_keys")
    op.execute("DROP TABLE certified_keys")
    op.execute("ALTER TABLE certified_keys_new RENAME TO certified_keys")


def upgrade() -> None:
    _rebuild_certified_keys(True)
    op.create_table(
        "devices",
        sa.Column("device_id", sa.LargeBinary(8), nullable=False),
        sa.Column("device_type", sa.String(8), nullable=False),
        sa.Column("smi_status", sa.String(32), nullable=False),
        sa.Column("import_supplier", sa.String(64), nullable=True),
        sa.Column("gas_supplier", sa.String(64), nullable=True),
        sa.Column("network_operator", sa.String(64), nullable=True),
        sa.Column("changed_on", sa.Date, nullable=False),
        sa.PrimaryKeyConstraint("device_id", name="pk_devices"),
    )
    op.create_table(
        "device_changes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("device_id", sa.LargeBinary(8), nullable=False),
        sa.Column("effective", sa.Date, nullable=False),
        sa.Column("device_type", sa.String(8), nullable=False),
        sa.Column("smi_status", sa.String(32), nullable=False),
        sa.Column("import_supplier", sa.String(64), nullable=True),
        sa.Column("gas_supplier", sa.String(64), nullable=True),
        sa.Column("network_operator", sa.String(64), nullable=True),
        sa.Column("recorded_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_device_changes"),
    )
    op.create_index("ix_device_changes_device_id", "device_changes", ["device_id"])


def downgrade() -> None:
    op.drop_index("ix_device_changes_device_id", table_name="device_changes")
    op.drop_table("device_changes")
    op.drop_table("devices")
    _rebuild_certified_keys(False)
