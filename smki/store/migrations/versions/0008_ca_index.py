"""A partial index on the CA certificates: every issuance reads the newest in-use one.

Without it, ``Store.ca_certificate`` (``kind = 'device-ca' AND status = 'I' ORDER BY id DESC
LIMIT 1``) walked the whole certificates table backwards from the newest row to the CA
certificate near its start: single-CSR issuance slowed in proportion to the store (issue 15: Ad
Hoc p50 from ~9 ms at 2,000 certificates to ~37 ms at 100,000 on SQLite). Device and
Organisation rows never enter the index, so inserts do not pay for it.

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IS_CA = sa.text("kind = 'root' OR kind = 'org-ca' OR kind = 'device-ca'")


def upgrade() -> None:
    op.create_index("ix_certificates_ca", "certificates", ["kind", "id"], sqlite_where=_IS_CA,
                    postgresql_where=_IS_CA)


def downgrade() -> None:
    op.drop_index("ix_certificates_ca", table_name="certificates")
