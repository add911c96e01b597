"""``smki audit``: verify the hash-chained audit log, and read its tail."""

from __future__ import annotations

from typing import Annotated

import typer

from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, console, err_console, open_for_reading
from smki.interfaces.cli.output import CsvOption, JsonOption, emit_rows

app = typer.Typer(help="The audit log.", no_args_is_help=True)


@app.command("verify")
def verify(home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Check every audit record's hash chain; name the first bad record. Exit 1 if any is bad."""
    opened = open_for_reading(home)
    try:
        report = opened.store.verify_audit()
    finally:
        opened.close()
    if report.ok:
        console.print(f"audit log OK: {report.checked} records, hash chain intact")
        return
    err_console.print(f"[bold red]audit log BROKEN[/] at record {report.first_bad_seq}: {report.reason} "
                      f"({report.checked} records checked)", highlight=False)
    raise typer.Exit(1)


@app.command("tail")
def tail(home: HomeOption = DEFAULT_HOME_PATH,
         count: Annotated[int, typer.Option("-n", min=1, max=10000, help="How many records.")] = 20,
         as_json: JsonOption = False, as_csv: CsvOption = False) -> None:
    """Show the last records of the audit log."""
    opened = open_for_reading(home)
    try:
        rows = opened.store.audit_tail(count)
    finally:
        opened.close()
    if as_json:
        emit_rows([{"seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action, "subject": r.subject,
                    "details": r.details_dict, "prev_hash": r.prev_hash, "hash": r.hash} for r in rows],
                  as_json=True, as_csv=as_csv)
        return
    emit_rows([{"seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action, "subject": r.subject}
               for r in rows], as_csv=as_csv)
