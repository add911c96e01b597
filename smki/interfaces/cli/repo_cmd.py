"""``smki repo``: the Repository's extracts (weekly full, daily increments; spec §3.1)."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from smki.errors import SmkiError
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, err_console, open_for_reading

app = typer.Typer(help="The Repository: extracts of every certificate and status.", no_args_is_help=True)


@app.command("extract")
def extract(
    home: HomeOption = DEFAULT_HOME_PATH,
    full: Annotated[bool, typer.Option("--full", help="Every certificate.")] = False,
    since: Annotated[datetime | None, typer.Option("--since", help="Only what changed at or after this date (UTC).")]
    = None,
    out: Annotated[Path | None, typer.Option("--out", help="CSV file to write (default: standard output).")] = None,
) -> None:
    """Stream the full extract or an increment as CSV, a page at a time (flat memory)."""
    from smki.repository.extract import write_extract
    from smki.services.files import replaced_on_success

    if full == (since is not None):
        raise SmkiError("extract.invalid", "give exactly one of --full or --since DATE")
    moment = None if since is None else (since.replace(tzinfo=UTC) if since.tzinfo is None else since)
    opened = open_for_reading(home)
    try:
        if out is None:
            count = write_extract(opened.store, sys.stdout, since=moment)
        else:
            if out.is_dir():
                raise SmkiError("extract.out-is-directory", f"{out} is a directory: name the CSV file to write")
            # A reader never sees half an extract; Ctrl-C or a full disk leaves none beside it either.
            with replaced_on_success(out) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
                count = write_extract(opened.store, handle, since=moment,
                                      on_progress=lambda n: err_console.print(f"{n:,} records…", highlight=False))
                handle.flush()
                os.fsync(handle.fileno())
    finally:
        opened.close()
    err_console.print(f"{count:,} certificate(s) extracted", highlight=False)
