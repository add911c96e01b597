"""``smki dev populate``: fill a store with N realistic Device Certificate records, fast."""

from __future__ import annotations

from typing import Annotated

import typer

from smki.eui64 import eui64_hex
from smki.interfaces.cli.common import (
    DEFAULT_HOME_PATH,
    HomeOption,
    actor,
    console,
    open_for_signing,
    rich_console,
)

#: smki.services.populate.DEFAULT_CHUNK, repeated so that help needs no services (a test keeps them equal).
DEFAULT_CHUNK = 50_000


def populate(
    devices: Annotated[int, typer.Option("--devices", min=0, help="Device Certificate records to add.")] = 0,
    revoked_organisation: Annotated[int, typer.Option(
        "--revoked-organisation", min=0, help="Also add this many revoked Organisation Certificate records.")] = 0,
    workers: Annotated[int | None, typer.Option("--workers", min=0,
                                                help="Signing processes (default: one per core; 0 = in this process).")]
    = None,
    chunk: Annotated[int, typer.Option("--chunk", min=1, help="Records per transaction.")] = DEFAULT_CHUNK,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Add realistic Device Certificate records signed by this home's Device CA (for scale tests)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from smki.services.populate import default_workers, populate_devices, populate_revoked_organisation

    if devices == 0 and revoked_organisation == 0:
        raise typer.BadParameter("give --devices N and/or --revoked-organisation N")
    opened = open_for_signing(home)
    try:
        who = actor()
        if devices:
            with Progress(TextColumn("populating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          console=rich_console(stderr=True), transient=True) as progress:
                task = progress.add_task("records", total=devices)
                summary = populate_devices(
                    opened, devices, actor=who, chunk_size=chunk,
                    workers=default_workers() if workers is None else workers,
                    on_progress=lambda n: progress.update(task, completed=n),
                )
            console.print(
                f"added {summary.records:,} Device Certificate records in {summary.seconds:.1f} s "
                f"({summary.per_second:,.0f}/s): Devices {eui64_hex(summary.first_device)}.."
                f"{eui64_hex(summary.last_device)}, batch {summary.batch_id}", highlight=False, soft_wrap=True,
            )
        if revoked_organisation:
            populate_revoked_organisation(opened, revoked_organisation, actor=who)
            console.print(f"added {revoked_organisation:,} revoked Organisation Certificate records "
                          "(run 'smki crl publish' to put them on the CRL)", highlight=False)
    finally:
        opened.close()
