"""``smki device``: the device register through the console (issue 13 point 1)."""

from __future__ import annotations

import json
from pathlib import Path

from smki.store import Store
from smki.store.devices import device_reads
from tests.cli.conftest import Run
from tests.cli.test_ra_console import fails, ok


def _staff_and_parties(run: Run) -> None:
    ok(run, "staff", "add", "op1", "--name", "Olive", "--role", "ra-operator")
    ok(run, "staff", "add", "aud", "--name", "Audrey", "--role", "auditor")
    for party in ("SUPP1", "GAS1", "DNO1"):
        ok(run, "party", "add", party, "--name", party, "--category", "large-supplier", "--as", "op1")


def test_single_records_with_dated_changes(run: Run) -> None:
    _staff_and_parties(run)
    ok(run, "device", "set", "00-DB-12-34-56-78-90-01", "--type", "ESME", "--status", "pending",
       "--effective", "2026-01-05", "--as", "op1")
    ok(run, "device", "set", "00DB123456789001", "--type", "esme", "--status", "commissioned",
       "--import-supplier", "SUPP1", "--network-operator", "DNO1", "--effective", "2026-02-01", "--as", "op1")
    shown = ok(run, "device", "show", "00-DB-12-34-56-78-90-01")
    assert "ESME, commissioned since 2026-02-01; import supplier SUPP1" in shown
    assert "2026-01-05" in shown and "pending" in shown and "op1" in shown  # the earlier change is kept
    listed = ok(run, "device", "list", "--status", "commissioned")
    assert "00-DB-12-34" in listed and "DNO1" in listed
    assert "00-DB" not in ok(run, "device", "list", "--status", "pending")
    toaster = run("device", "set", "00DB123456789002", "--type", "TOASTER", "--status", "pending", "--as", "op1")
    assert toaster.code == 2 and "'TOASTER' is not one of 'esme', 'gsme'" in toaster.err  # the choices, listed
    as_json = json.loads(ok(run, "device", "show", "00DB123456789001", "--json"))
    assert (as_json["device_id"], as_json["smi_status"], as_json["import_supplier"]) == (
        "00db123456789001", "commissioned", "SUPP1")
    assert [(c["effective"], c["smi_status"], c["recorded_by"]) for c in as_json["history"]] == [
        ("2026-01-05", "pending", "op1"), ("2026-02-01", "commissioned", "op1")]
    assert [d["device_id"] for d in json.loads(ok(run, "device", "list", "--json"))] == ["00db123456789001"]
    assert ok(run, "device", "list", "--csv").splitlines()[1].startswith("00db123456789001,ESME,commissioned,")
    fails(run, "device.bad-row", "device", "set", "00DB123456789002", "--type", "ESME", "--status", "pending",
          "--import-supplier", "NOBODY", "--as", "op1")
    fails(run, "ra.staff-role", "device", "set", "00DB123456789002", "--type", "ESME", "--status", "pending",
          "--as", "aud")
    fails(run, "device.not-registered", "device", "show", "00DB123456789009")
    ok(run, "device", "set", "00DB123456789001", "--type", "ESME", "--status", "decommissioned",
       "--import-supplier", "SUPP1", "--effective", "2999-01-01", "--as", "op1")
    shown = ok(run, "device", "show", "00DB123456789001")
    assert "ESME, commissioned since 2026-02-01" in shown  # a change dated later is not in force yet
    assert "scheduled" in shown and "in force" in shown and "past" in shown


def test_bulk_import_and_update_from_csv_and_json_lines(run: Run, tmp_path: Path, database_url: str) -> None:
    _staff_and_parties(run)
    csv_file = tmp_path / "devices.csv"
    lines = ["device_id,device_type,smi_status,import_supplier,gas_supplier,network_operator,effective"]
    lines += [f"00DB0000000{n:05X},ESME,commissioned,SUPP1,,DNO1,2026-03-01" for n in range(25_000)]
    csv_file.write_text("\n".join(lines) + "\n")
    assert "imported 25000 rows in 3 chunks" in ok(run, "device", "import", str(csv_file), "--as", "op1")
    update = tmp_path / "update.jsonl"
    update.write_text("".join(json.dumps({"device_id": f"00DB0000000{n:05X}", "device_type": "GSME",
                                          "smi_status": "withdrawn", "gas_supplier": "GAS1",
                                          "effective": "2026-04-01"}) + "\n" for n in range(10)))
    assert "imported 10 rows" in ok(run, "device", "import", str(update), "--as", "op1")
    bad = tmp_path / "bad.csv"
    bad.write_text(lines[0] + "\n00DB000000000001,ESME,commissioned,,,,\n00DB00000000000Z,ESME,pending,,,,\n")
    assert "row 3: device_id: '00DB00000000000Z' is not an EUI-64" in fails(  # the code every bad EUI-64 has
        run, "eui64.invalid", "device", "import", str(bad), "--as", "op1")
    bad.write_text(lines[0] + "\n00DB000000000001,ESME,commissioned,,,,\n00DB000000000002,TOASTER,pending,,,,\n")
    assert "row 3: device_type 'TOASTER'" in fails(run, "device.bad-row", "device", "import", str(bad), "--as", "op1")
    bad_lines = tmp_path / "bad.jsonl"
    bad_lines.write_text('{"device_id": "00DB0000000000", "device_type": "ESME", "smi_status": "pending"}\n')
    assert "row 1: device_id: " in fails(run, "eui64.invalid", "device", "import", str(bad_lines), "--as", "op1")
    store = Store.open(database_url)
    try:
        reads = device_reads(store)
        entries = reads.entries([bytes.fromhex("00DB000000000000"), bytes.fromhex("00DB000000000010")])
        assert entries[bytes.fromhex("00DB000000000000")].smi_status == "withdrawn"
        assert entries[bytes.fromhex("00DB000000000000")].gas_supplier == "GAS1"
        assert entries[bytes.fromhex("00DB000000000010")].smi_status == "commissioned"
        assert reads.count() == 25_000
        history = reads.history(bytes.fromhex("00DB000000000000"))
        assert [(c.row.smi_status, c.row.effective.isoformat()) for c in history] == [
            ("commissioned", "2026-03-01"), ("withdrawn", "2026-04-01")]
    finally:
        store.close()


def test_an_import_that_stops_part_way_says_what_it_imported_and_a_spreadsheets_bom_is_read(
        run: Run, tmp_path: Path) -> None:
    _staff_and_parties(run)
    header = "device_id,device_type,smi_status,import_supplier,gas_supplier,network_operator,effective"
    bom = tmp_path / "excel.csv"
    bom.write_bytes(("\ufeff" + header + "\n00DB000000000001,ESME,pending,,,,\n").encode())
    assert "imported 1 rows" in ok(run, "device", "import", str(bom), "--as", "op1")
    stops = tmp_path / "stops.csv"
    rows = [f"00DB0000000{n:05X},ESME,commissioned,SUPP1,,,2026-03-01" for n in range(10_001)]
    stops.write_text("\n".join([header, *rows, "00DB00000000000Z,ESME,pending,,,,"]) + "\n")
    err = fails(run, "eui64.invalid", "device", "import", str(stops), "--as", "op1")
    assert "row 10003: device_id: " in err and "the 10,000 rows before it are imported" in err


def test_a_binary_csv_manifest_is_a_malformed_batch_not_an_internal_error(run: Run, tmp_path: Path) -> None:
    manifest = tmp_path / "csrs.csv"
    manifest.write_bytes(bytes(range(128, 256)) * 4)
    result = run("issue", "batch", str(manifest), "--out", str(tmp_path / "out"), "--workers", "0")
    assert result.code == 1 and result.err.startswith("error: batch.malformed: "), result.err
