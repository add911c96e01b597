"""The Registration Authority's register: Parties, Entity Identifiers, subscriptions, staff, AROs,
applications and their evidence.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from smki.store.types import BigId, UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "parties",
        sa.Column("party_id", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("category", sa.String(40), nullable=False),
        sa.Column("srept_passed", sa.Date, nullable=True),
        sa.Column("uept_completed", sa.Date, nullable=True),
        sa.Column("registered_user_roles", sa.Text, nullable=False),
        sa.Column("gateway_connections", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("party_id", name="pk_parties"),
    )
    op.create_table(
        "party_entities",
        sa.Column("entity_id", sa.LargeBinary(8), nullable=False),
        sa.Column("party_id", sa.String(64), nullable=False),
        sa.Column("roles", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("entity_id", name="pk_party_entities"),
        sa.ForeignKeyConstraint(["party_id"], ["parties.party_id"], name="fk_party_entities_party_id_parties"),
    )
    op.create_index("ix_party_entities_party_id", "party_entities", ["party_id"])
    op.create_table(
        "subscriptions",
        sa.Column("party_id", sa.String(64), nullable=False),
        sa.Column("policy", sa.String(16), nullable=False),
        sa.Column("standing", sa.String(16), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("party_id", "policy", name="pk_subscriptions"),
        sa.ForeignKeyConstraint(["party_id"], ["parties.party_id"], name="fk_subscriptions_party_id_parties"),
    )
    op.create_table(
        "staff",
        sa.Column("staff_id", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("roles", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("staff_id", name="pk_staff"),
    )
    op.create_table(
        "aros",
        sa.Column("aro_id", sa.String(64), nullable=False),
        sa.Column("party_id", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("nominated_by", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("identity_verified", sa.Date, nullable=True),
        sa.Column("identity_check", sa.Text, nullable=True),
        sa.Column("verified_by", sa.String(64), nullable=True),
        sa.Column("screened", sa.Date, nullable=True),
        sa.Column("screening_standard", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("aro_id", name="pk_aros"),
        sa.ForeignKeyConstraint(["party_id"], ["parties.party_id"], name="fk_aros_party_id_parties"),
    )
    op.create_index("ix_aros_party_id", "aros", ["party_id"])
    op.create_table(
        "applications",
        sa.Column("application_id", BigId, autoincrement=True, nullable=False),
        sa.Column("party_id", sa.String(64), nullable=False),
        sa.Column("policy", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("proposed_by", sa.String(64), nullable=True),
        sa.Column("proposed_at", UTCDateTime, nullable=True),
        sa.Column("proposal", sa.Text, nullable=True),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_at", UTCDateTime, nullable=True),
        sa.Column("decision", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("application_id", name="pk_applications"),
        sa.ForeignKeyConstraint(["party_id"], ["parties.party_id"], name="fk_applications_party_id_parties"),
    )
    op.create_index("ix_applications_party_id", "applications", ["party_id"])
    op.create_table(
        "evidence",
        sa.Column("evidence_id", BigId, autoincrement=True, nullable=False),
        sa.Column("application_id", BigId, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("reference", sa.Text, nullable=False),
        sa.Column("recorded_by", sa.String(64), nullable=False),
        sa.Column("recorded_on", sa.Date, nullable=False),
        sa.PrimaryKeyConstraint("evidence_id", name="pk_evidence"),
        sa.ForeignKeyConstraint(["application_id"], ["applications.application_id"],
                                name="fk_evidence_application_id_applications"),
    )
    op.create_index("ix_evidence_application_id", "evidence", ["application_id"])


def downgrade() -> None:
    for table in ("evidence", "applications", "aros", "staff", "subscriptions", "party_entities", "parties"):
        op.drop_table(table)
