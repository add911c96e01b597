"""Migration 0014: on PostgreSQL a batch's large audit records are compressed with LZ4 (where the
server offers it), and read back and chained exactly as before."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from smki.audit import AuditEvent
from smki.store import Store


def test_a_large_audit_record_is_stored_with_lz4_and_reads_back(store: Store) -> None:
    if store.dialect != "postgresql":
        pytest.skip("column compression is PostgreSQL's; SQLite stores the text as it is")
    issued = [[f"{n:032x}", f"00db{n:012x}", "DS", n] for n in range(2000)]  # a commit's worth (~134 kB)
    with store.transaction() as tx:
        (seq,) = tx.append_audit([AuditEvent("test", "device-certificates.issued", "b-1", {"issued": issued})])
    with store.engine.connect() as conn:
        offered = conn.execute(text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                                    "WHERE name = 'default_toast_compression'")).scalar()
        method, details = conn.execute(text("SELECT pg_column_compression(details), details FROM audit_log "
                                            "WHERE seq = :seq"), {"seq": seq}).one()
    assert method == ("lz4" if offered else "pglz")
    assert json.loads(details)["issued"] == issued
