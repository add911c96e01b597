"""``smki device``: the device register (issue 13), smki's stand-in for the Smart Metering Inventory.

RA staff record Devices one at a time (``set``) or in bulk (``import`` of CSV or JSON Lines, streamed);
anyone may read (``show``, ``list``). The RA reads the register for SEC L3.16 (docs/policy.md).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

from smki.domain import DeviceType, SmiStatus
from smki.eui64 import eui64_hyphenated
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, console
from smki.interfaces.cli.output import CsvOption, JsonOption, emit_record, emit_rows
from smki.interfaces.cli.staff_cmd import StaffOption, run_on


def _register() -> ModuleType:
    """The device register's services, imported when a command runs (``--help`` stays light)."""
    from smki.services import device_register

    return device_register

app = typer.Typer(help="The device register: Device IDs, SMI status, responsible Parties.", no_args_is_help=True)

Eui = Annotated[str, typer.Argument(help="The Device ID (EUI-64, e.g. 00-DB-12-34-56-78-90-01).")]


@app.command("set")
def set_(
    device_id: Eui,
    device_type: Annotated[DeviceType, typer.Option("--type", case_sensitive=False, help="The device type.")],
    status: Annotated[SmiStatus, typer.Option("--status", case_sensitive=False, help="The SMI status.")],
    import_supplier: Annotated[str | None, typer.Option("--import-supplier", help="Responsible Party.")] = None,
    gas_supplier: Annotated[str | None, typer.Option("--gas-supplier", help="Responsible Party.")] = None,
    network_operator: Annotated[str | None, typer.Option("--network-operator", help="Responsible Party.")] = None,
    effective: Annotated[str | None, typer.Option("--effective", help="Date the change takes effect.")] = None,
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Add a Device or record a change of its state (RA operator); the change is kept with its date."""
    values = {"device_id": device_id, "device_type": device_type.value, "smi_status": status.value,
              "import_supplier": import_supplier, "gas_supplier": gas_supplier,
              "network_operator": network_operator, "effective": effective}
    row = run_on(home, lambda h: _register().set_device(h, values, staff_id=staff))
    console.print(f"device {eui64_hyphenated(row.device_id)}: {row.device_type} {row.smi_status} "
                  f"from {row.effective.isoformat()}", highlight=False, markup=False)


@app.command("show")
def show(device_id: Eui, as_json: JsonOption = False, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """A Device's register entry in force today and every dated change (one dated later: scheduled)."""
    register = _register()
    view = run_on(home, lambda h: register.view_device(h, device_id))
    entry = view.in_force
    changes = [{**register.device_dict(change.row), "recorded_by": change.recorded_by,
                "state": "scheduled" if view.scheduled(change) else "in force" if view.current(change) else "past"}
               for change in view.changes]
    shown = entry or min(view.changes, key=lambda c: c.row.effective).row  # before its first change: that change
    record = {**register.device_dict(shown), "in_force": entry is not None, "on": view.on.isoformat(),
              "history": changes}
    if emit_record(record, as_json=as_json):
        return
    if entry is None:
        console.print(f"Device {eui64_hyphenated(view.device_id)}: nothing in force on {view.on.isoformat()} "
                      "(its first change is still to come)", highlight=False, markup=False, soft_wrap=True)
    else:
        console.print(f"Device {eui64_hyphenated(entry.device_id)}: {entry.device_type}, {entry.smi_status} since "
                      f"{entry.effective.isoformat()}; import supplier {entry.import_supplier or '-'}, gas supplier "
                      f"{entry.gas_supplier or '-'}, network operator {entry.network_operator or '-'}",
                      highlight=False, markup=False, soft_wrap=True)
    emit_rows(changes, columns=("effective", "device_type", "smi_status", "import_supplier", "gas_supplier",
                                "network_operator", "recorded_by", "state"))


@app.command("list")
def list_(
    status: Annotated[SmiStatus | None, typer.Option("--status", case_sensitive=False,
                                                     help="Only Devices in this SMI status.")] = None,
    after: Annotated[str | None, typer.Option("--after", help="Continue after this Device ID.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many.")] = 100,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Devices in Device ID order, a page at a time."""
    register = _register()
    rows = run_on(home, lambda h: register.list_devices(h, after=after, status=status and status.value, limit=limit))
    people = not (as_json or as_csv)  # a table shows Device IDs as people write them, scripts get 16 hex digits
    emit_rows([{**register.device_dict(r), **({"device_id": eui64_hyphenated(r.device_id)} if people else {})}
               for r in rows], as_json=as_json, as_csv=as_csv,
              columns=None if as_json else ("device_id", "device_type", "smi_status", "effective", "import_supplier",
                                            "gas_supplier", "network_operator"))


@app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(help="A .csv (header: device_id,device_type,smi_status,import_supplier,"
                                                "gas_supplier,network_operator,effective) or JSON Lines file.")],
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Bulk import or update, streamed in chunks of 10,000 rows (RA operator); the last row for a Device wins."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from smki.interfaces.cli.common import err_console, rich_console, stop_notes

    register = _register()
    total = register.count_import_rows(source) if source.is_file() else None  # a missing file: the service says so
    progress = Progress(TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=rich_console(stderr=True), transient=False, disable=not err_console.is_terminal)
    imported = [0]

    def committed(rows: int) -> None:
        imported[0] += rows
        progress.advance(task, rows)

    with progress:
        task = progress.add_task("import", total=total)
        try:
            summary = run_on(home, lambda h: register.import_file(h, source, staff_id=staff, on_chunk=committed))
        except KeyboardInterrupt:  # as a bad row's error says: what is in the register, and that a rerun is safe
            stop_notes.append(f"{imported[0]:,} rows were imported before it (each chunk commits on its own; "
                              "importing the file again is harmless)")
            raise
        progress.update(task, total=summary.rows, completed=summary.rows)
    console.print(f"imported {summary.rows} rows in {summary.chunks} chunks, {summary.seconds:.1f} s "
                  f"({summary.rows / max(summary.seconds, 1e-9):,.0f} rows/s)", highlight=False, markup=False)
