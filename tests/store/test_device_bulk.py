"""The device register's fast bulk import (``import_path``: ``csv.reader`` and look-up checks into
tuples, then on PostgreSQL a binary ``COPY`` through a temporary table) leaves the same register as
the general path (``import_rows``: a dict and :func:`device_row` per row, then the row-by-row
upsert), on SQLite and on PostgreSQL: the same entries, the same dated history in the same order,
the same chunk count, and for a bad row the same error with the same chunks committed before it.

Rows repeat Device IDs within and across chunks, with dates earlier, equal and later, in every
spelling :func:`device_row` accepts (so some take the fast check and some fall back to it)."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import smki.store.devices as store_devices
from smki.audit import AuditEvent
from smki.config import Settings, write_default_config
from smki.errors import SmkiError
from smki.services.context import Home, open_home
from smki.services.device_register import COLUMNS, ImportSummary, import_path, import_rows, read_rows

PARTIES = ("SUPP1", "SUPP2", "GAS1", "DNO1")
_bases = itertools.count(0x00DBB00000000000, 0x100)


@pytest.fixture
def home(tmp_path: Path, database_url: str) -> Iterator[Home]:
    settings_ = Settings(home=tmp_path / "home", database_url=database_url)
    write_default_config(settings_)
    opened = open_home(settings_.home, None, migrate=True, create=True)
    with opened.store.transaction() as tx:
        for party in PARTIES:
            tx.registry.add_party(party, party, "large-supplier")
        tx.append_audit([AuditEvent("test", "test.setup", "devices")])
    try:
        yield opened
    finally:
        opened.close()


def _spell(device_id: int, how: int) -> str:
    text = f"{device_id:016x}"
    return [text, text.upper(), "-".join(text[i:i + 2] for i in range(0, 16, 2)), f" {text} "][how]


_row = st.tuples(
    st.integers(0, 4),  # which Device
    st.sampled_from([0, 0, 0, 1, 2, 3]),  # its spelling
    st.sampled_from(["ESME", "ESME", "esme", "Gsme", "PPMID"]),
    st.sampled_from(["commissioned", "commissioned", "PENDING", "Suspended", "installed-not-commissioned"]),
    st.sampled_from(["", "", "SUPP1", " SUPP2 ", "GAS1"]),
    st.sampled_from(["", "GAS1"]),
    st.sampled_from(["", "DNO1"]),
    st.sampled_from(["", "2026-01-01", "2026-01-01", "2026-12-06", " 2027-03-01"]),
)


def _write(path: Path, base: int, rows: list[tuple[object, ...]], bad: int | None, short: set[int]) -> None:
    """The rows as CSV or JSON Lines, Device IDs offset by ``base``; row ``bad`` gets a bad Device ID,
    a Party that is not registered, or an unknown status."""
    texts: list[list[str]] = []
    for n, (device, how, *rest) in enumerate(rows):
        values = [_spell(base + int(str(device)), int(str(how))), *map(str, rest)]
        if n == bad:
            spoil = n % 3
            if spoil == 0:
                values[0] = "00DB00000000000Z"  # the same text whatever the base: the same message
            else:
                values[3 if spoil == 1 else 2] = "NOPE"
        texts.append(values)
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for n, values in enumerate(texts):
                writer.writerow(values[:-1] if n in short else values)  # short: DictReader gives None
        return
    path.write_text("".join(json.dumps({k: v for k, v in zip(COLUMNS, values, strict=True) if v or n % 2})
                            + "\n" for n, values in enumerate(texts)), encoding="utf-8")


def _state(home: Home, base: int) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Entries and history of the Devices from ``base``, their IDs as offsets (history in record order)."""
    with home.store.engine.connect() as conn:
        low, high = base.to_bytes(8, "big"), (base + 0xFF).to_bytes(8, "big")
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        entries = conn.exec_driver_sql(
            "SELECT device_id, device_type, smi_status, import_supplier, gas_supplier, network_operator, "
            f"changed_on FROM devices WHERE device_id BETWEEN {mark} AND {mark} ORDER BY device_id",
            (low, high)).all()
        history = conn.exec_driver_sql(
            "SELECT device_id, effective, device_type, smi_status, import_supplier, gas_supplier, network_operator, "
            f"recorded_by FROM device_changes WHERE device_id BETWEEN {mark} AND {mark} ORDER BY id",
            (low, high)).all()
    offset = [(int.from_bytes(bytes(r[0]), "big") - base, *(str(v) for v in r[1:])) for r in entries]
    return offset, [(int.from_bytes(bytes(r[0]), "big") - base, *(str(v) for v in r[1:])) for r in history]


def _run(call: object) -> ImportSummary | tuple[str, str]:
    try:
        return call()  # type: ignore[operator,no-any-return]
    except SmkiError as exc:
        return exc.code, exc.message


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_row, min_size=1, max_size=12), suffix=st.sampled_from([".csv", ".jsonl"]),
       chunk=st.integers(1, 5), bad=st.one_of(st.none(), st.integers(0, 11)), short=st.sets(st.integers(0, 11)))
def test_fast_import_leaves_the_register_the_general_path_does(
        home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: list[tuple[object, ...]], suffix: str,
        chunk: int, bad: int | None, short: set[int]) -> None:
    general, fast = next(_bases), next(_bases)
    general_file, fast_file = tmp_path / f"general{suffix}", tmp_path / f"fast{suffix}"
    _write(general_file, general, rows, bad, short)
    _write(fast_file, fast, rows, bad, short)
    with monkeypatch.context() as patch:
        patch.setattr(store_devices, "COPY_FROM", 10**9)  # the row-by-row upsert on both stores
        expected = _run(lambda: import_rows(home, read_rows(general_file), actor="op", chunk=chunk))
        patch.setattr(store_devices, "COPY_FROM", 1)  # PostgreSQL: COPY for every chunk, even of one row
        found = _run(lambda: import_path(home, fast_file, actor="op", chunk=chunk))
    if isinstance(expected, ImportSummary):
        assert isinstance(found, ImportSummary) and (found.rows, found.chunks) == (expected.rows, expected.chunks)
    else:
        assert found == expected
    assert _state(home, fast) == _state(home, general)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_the_progress_total_is_the_rows_imported_and_chunks_are_reported_after_commit(
        home: Home, tmp_path: Path, suffix: str) -> None:
    """``smki device import``'s bar: its total (counted before) is what the import then reports chunk by
    chunk, and each chunk is in the register when it is reported."""
    from smki.services.device_register import count_import_rows
    from smki.store.devices import device_reads

    ids = [0x00DBC00000000000 + n for n in range(25)]
    path = tmp_path / f"devices{suffix}"
    if suffix == ".csv":
        path.write_text(",".join(COLUMNS) + "\n" + "".join(f"{d:016x},ESME,commissioned,SUPP1,,DNO1,2026-03-01\n"
                                                           for d in ids) + "\n")
    else:
        path.write_text("".join(json.dumps({"device_id": f"{d:016x}", "device_type": "ESME",
                                            "smi_status": "pending", "effective": "2026-03-01"}) + "\n" for d in ids))
    heard: list[tuple[int, int]] = []

    def on_chunk(rows: int) -> None:
        registered = device_reads(home.store).entries([d.to_bytes(8, "big") for d in ids])
        heard.append((rows, len(registered)))

    summary = import_path(home, path, actor="op1", chunk=10, on_chunk=on_chunk)
    assert count_import_rows(path) == summary.rows == 25
    assert heard == [(10, 10), (10, 20), (5, 25)]
