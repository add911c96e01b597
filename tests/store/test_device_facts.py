"""The eligibility screen's read of the device register (``DeviceReads.facts_on``: driver tuples, one
query per chunk) gives the state in force on a date exactly as ``entries_on`` does, whatever dated
changes — past, today, future, several per Device — the register holds."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

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
