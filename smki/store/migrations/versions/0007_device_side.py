"""Issue 13, the Device side of the SEC: the register of certified keys (duplicates, ``CR:9999``).

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-06

The key register is filled from the certificates already issued, so a key certified before this
revision is a duplicate too. The fingerprint is SHA-256 of the key's uncompressed P-256 point, cut
to 16 octets (``smki.ca.keyid.key_fingerprint``; repeated here, as a migration must not change when
the code does).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_P256_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")


def _fingerprint(der: bytes) -> bytes | None:
    at = der.find(_P256_SPKI_PREFIX)
    if at < 0:
        return None
    start = at + len(_P256_SPKI_PREFIX)
    return hashlib.sha256(der[start:start + 65]).digest()[:16]


def upgrade() -> None:
    table = op.create_table(
        "certified_keys",
        sa.Column("fingerprint", sa.LargeBinary(16), nullable=False),
        sa.Column("serial", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name="pk_certified_keys"),
    )
    conn = op.get_bind()
    latest: dict[bytes, str] = {}
    rows = conn.execute(sa.text("SELECT serial, der FROM certificates ORDER BY id"))
    for serial, der in rows:
        fingerprint = _fingerprint(bytes(der))
        if fingerprint is not None:
            latest[fingerprint] = serial
    items = [{"fingerprint": fingerprint, "serial": serial} for fingerprint, serial in latest.items()]
    for start in range(0, len(items), 10_000):
        op.bulk_insert(table, items[start:start + 10_000])


def downgrade() -> None:
    op.drop_table("certified_keys")
