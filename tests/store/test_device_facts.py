"""The eligibility screen's read of the device register (``DeviceReads.facts_on``: driver tuples, one
query per chunk) gives the state in force on a date exactly as ``entries_on`` does, whatever dated
changes — past, today, future, several per Device — the register holds."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.store import Store
from smki.store.devices import DeviceRow, device_reads, device_writes

TODAY = date(2026, 12, 6)
_runs = itertools.count()
_change = st.tuples(st.integers(0, 3), st.sampled_from(["pending", "commissioned", "suspended"]),
                    st.sampled_from([None, "SUPP1", "SUPP2"]), st.integers(-3, 3))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(_change, max_size=8), on=st.integers(-2, 2))
def test_facts_on_is_entries_on(store: Store, changes: list[tuple[int, str, str | None, int]], on: int) -> None:
    store.migrate()
    base = 0x00DBFAC700000000 + next(_runs) * 8
    devices = [(base + n).to_bytes(8, "big") for n in range(5)]  # the fifth is never registered
    for device, status, supplier, days in changes:
        with store.transaction() as tx:
            device_writes(tx).put([DeviceRow(devices[device], "ESME", status, supplier, None, None,
                                             TODAY + timedelta(days=days))], "test")
    day = TODAY + timedelta(days=on)
    reads = device_reads(store)
    expected = {d: (r.smi_status, r.import_supplier, r.gas_supplier, r.network_operator)
                for d, r in reads.entries_on(devices, day).items()}
    assert reads.facts_on(devices, day) == expected


def test_the_packed_look_ups_use_the_primary_keys(store: Store) -> None:
    """PostgreSQL: the one-``bytea`` ``ANY`` of the register and key look-ups is an index scan,
    also on tables large enough for a scan to be a choice."""
    import os

    from sqlalchemy import text

    from smki.store.driver import pg_fixed_width_any

    if store.dialect != "postgresql":
        pytest.skip("the packed ANY is PostgreSQL's")
    store.migrate()
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO certified_keys (fingerprint, serial) SELECT decode(md5(i::text), 'hex'), "
                          "lpad(i::text, 32, '0') FROM generate_series(1, 20000) AS i"))
        conn.execute(text("INSERT INTO devices (device_id, device_type, smi_status, changed_on) SELECT "
                          "decode(lpad(to_hex(i), 16, '0'), 'hex'), 'ESME', 'pending', current_date "
                          "FROM generate_series(1, 20000) AS i"))
        conn.execute(text("ANALYZE certified_keys"))
        conn.execute(text("ANALYZE devices"))
        for table, column, width in (("certified_keys", "fingerprint", 16), ("devices", "device_id", 8)):
            packed = pg_fixed_width_any([os.urandom(width) for _ in range(500)], width)
            assert packed is not None
            plan = "\n".join(row[0] for row in conn.exec_driver_sql(
                f"EXPLAIN SELECT * FROM {table} WHERE {column} = {packed[0]}", packed[1]))
            assert "Index" in plan and "Seq Scan" not in plan, plan
    assert pg_fixed_width_any([b"short"], 16) is None
