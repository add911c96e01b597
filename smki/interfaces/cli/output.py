"""Output for people and for scripts: a Rich table, ``--json`` or ``--csv``, always with full values.

Every show, list, search and queue command builds its rows as dictionaries once and hands them to
``emit_rows`` (tables) or ``emit_record`` (one object). Tables never truncate a cell (identifiers
wrap rather than end in ``…``), and when stdout is not a terminal the console is as wide as the
table needs, so ``smki credential list | grep`` sees whole serials.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

from smki.interfaces.cli.common import console

if TYPE_CHECKING:  # Rich is imported when a table is printed: JSON and CSV output never need it
    from rich.table import Table

#: Piped or redirected, a table is printed as wide as its content: ``grep`` and files see every
#: identifier whole. On a terminal it fits the window, wrapping (never cutting) long cells.
_PIPE_WIDTH = 10_000

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (full values) instead of a table.")]
CsvOption = Annotated[bool, typer.Option("--csv", help="Print CSV with a header row (full values) instead of a table.")]

Row = Mapping[str, object]


def plain(value: object) -> object:
    """A value as JSON has it: dates and times in ISO 8601, enums by value, bytes in hex."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return value


def text(value: object) -> str:
    """A cell for a table or CSV: ``-`` for nothing, lists comma-joined."""
    value = plain(value)
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, list):
        return ", ".join(text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def print_json(value: object) -> None:
    sys.stdout.write(json.dumps(plain(value), indent=2, ensure_ascii=False) + "\n")


def check_formats(as_json: bool, as_csv: bool) -> None:
    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json and --csv")


def emit_rows(rows: Sequence[Row], *, as_json: bool = False, as_csv: bool = False,
              title: str | None = None, columns: Sequence[str] | None = None) -> None:
    """Rows as a table (``columns`` names the keys shown, all by default), JSON or CSV."""
    check_formats(as_json, as_csv)
    keys = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    if as_json:
        print_json([dict(r) for r in rows])
        return
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(keys)
        for r in rows:
            writer.writerow([text(r.get(k)) for k in keys])
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for key in keys:
        table.add_column(key.replace("_", " "), overflow="fold")
    for r in rows:
        table.add_row(*(Text(text(r.get(k))) for k in keys))
    print_table(table)


def print_table(table: Table) -> None:
    if console.is_terminal:
        console.print(table)
    else:
        from rich.console import Console

        Console(file=console.file, width=_PIPE_WIDTH, color_system=None).print(table)


def emit_record(record: Row, *, as_json: bool = False) -> bool:
    """``--json``: print the record as one JSON object and say so (the caller prints text otherwise)."""
    if as_json:
        print_json(dict(record))
    return as_json


def fields_table(record: Row) -> None:
    """One record as a two-column table of its fields, never truncated."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=False)
    table.add_column(overflow="fold")
    table.add_column(overflow="fold")
    for key, value in record.items():
        table.add_row(key.replace("_", " "), Text(text(value)))
    print_table(table)
