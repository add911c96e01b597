"""``smki request``: the subscriber path — an ARO of a Party asks for certificates under the RA rules.

This stands in for the HTTP listeners (SMKI Portal over the Gateway or SPOTI, the Device CSR web
services), which decide the route themselves; here the route is an argument only because the
console is standing in for a listener. Every request passes the RA's request rules before any key
is touched; a refusal prints each failing rule with its SEC reference and exits 1.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from smki.domain import Route
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, console, err_console, open_for_signing
from smki.interfaces.cli.issue_cmd import BatchWriter, batch_progress, pem, read_input, write_atomic
from smki.interfaces.cli.ra_cmd import refusals_explained

if TYPE_CHECKING:
    from smki.services.batch_sources import BatchItem
    from smki.services.device_issuance import DeviceOutcome
    from smki.services.requests import Requester

app = typer.Typer(help="Request certificates as a Party's ARO, under the RA rules.", no_args_is_help=True)


class RouteChoice(StrEnum):
    gateway = "gateway"
    spoti = "spoti"


PartyOpt = Annotated[str, typer.Option("--party", help="The requesting Party.")]
AroOpt = Annotated[str, typer.Option("--aro", help="The ARO acting for the Party.")]
RouteOpt = Annotated[RouteChoice, typer.Option("--route", help="The listener's route: gateway or spoti.")]
OutDir = Annotated[Path, typer.Option("--out", help="Directory for the certificates (created if missing).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Only show what the RA and CA would decide; "
                                         "record and issue nothing.")]
OnOpt = Annotated[str | None, typer.Option("--on", help="With --dry-run: decide under the rule set in force "
                                           "on this date (YYYY-MM-DD).")]


def _requester(party: str, aro: str, route: RouteChoice) -> Requester:
    from smki.services.requests import Requester

    return Requester(party_id=party, aro_id=aro, route=Route(route.value))


@app.command("org")
def org(
    csr: Annotated[Path, typer.Argument(help="An Organisation CSR (PEM, DER or base64).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the certificate (PEM).")],
    party: PartyOpt,
    aro: AroOpt,
    route: RouteOpt,
    dry_run: DryRunOpt = False,
    on: OnOpt = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """One Organisation Certificate for the Party's own Entity Identifier and a role it may hold."""
    from smki.interfaces.cli.what_if_cmd import dry_run_organisation, refuse_on_without_dry_run
    from smki.services.requests import request_organisation

    data = read_input(csr)
    refuse_on_without_dry_run(on, dry_run)
    if dry_run:
        dry_run_organisation(home, on, party, aro, route.value, data)
        return
    opened = open_for_signing(home)
    try:
        with refusals_explained():
            issued = request_organisation(opened, _requester(party, aro, route), data)
    finally:
        opened.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, pem(issued.der))
    console.print(f"issued {issued.serial} → {out}")


def _run(home: Path, requester: Requester, items: Iterable[BatchItem], out: Path, workers: int | None,
         given: Sequence[BatchItem] | None, source: Path | None) -> None:
    from smki.services.requests import request_device_batch

    opened = open_for_signing(home)
    batch_ref = f"req-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
    progress, total = batch_progress("issuing", given, source)
    writer: BatchWriter | None = None
    try:
        with refusals_explained(), progress:
            task = progress.add_task("issue", total=total)

            def on_chunk(outcomes: Sequence[DeviceOutcome]) -> None:
                nonlocal writer
                if writer is None:  # created on the first committed chunk: a refusal leaves no files
                    writer = BatchWriter(out, progress, task)
                writer(outcomes)

            summary = request_device_batch(opened, requester, items, batch_ref=batch_ref,
                                           workers=workers, on_chunk=on_chunk)
    finally:
        if writer is not None:
            writer.close()
        opened.close()
    errors = [] if writer is None else writer.errors
    for outcome in errors[:20]:
        err_console.print(f"rejected {outcome.item_id}: {outcome.error_code}: {outcome.error_message}",
                          highlight=False, soft_wrap=True, markup=False)
    if len(errors) > 20:
        err_console.print(f"… and {len(errors) - 20} more (see {out / 'results.csv'})")
    console.print(f"batch {summary.batch_ref} for {requester.party_id} (ARO {requester.aro_id}, "
                  f"{requester.route.value}): {summary.issued} issued, {summary.rejected} rejected → {out}",
                  highlight=False, soft_wrap=True, markup=False)
    if summary.issued == 0 and summary.rejected:
        raise typer.Exit(1)


@app.command("device")
def device(
    csrs: Annotated[list[Path], typer.Argument(help="Device CSR files (PEM, DER or base64).")],
    out: OutDir,
    party: PartyOpt,
    aro: AroOpt,
    route: RouteOpt,
    dry_run: DryRunOpt = False,
    on: OnOpt = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Device Certificates for single CSRs (as the Ad Hoc service), one PEM each: <eui>-<ds|ka>.pem."""
    from smki.interfaces.cli.what_if_cmd import dry_run_device, refuse_on_without_dry_run
    from smki.services.batch_sources import BatchItem

    items = [BatchItem(i, str(path), read_input(path)) for i, path in enumerate(csrs)]
    refuse_on_without_dry_run(on, dry_run)
    if dry_run:
        dry_run_device(home, on, party, aro, route.value, [(item.item_id, item.data) for item in items])
        return
    _run(home, _requester(party, aro, route), items, out, workers=0, given=items, source=None)


@app.command("batch")
def batch(
    source: Annotated[
        Path, typer.Argument(help="A directory of CSR files, a multi-PEM file, or a .json/.csv manifest.")
    ],
    out: OutDir,
    party: PartyOpt,
    aro: AroOpt,
    route: RouteOpt,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: one per core; 0: none).")] = None,
    dry_run: DryRunOpt = False,
    on: OnOpt = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """A batch of Device CSRs, authorised once before any is read; results.csv has a line per CSR."""
    from smki.interfaces.cli.what_if_cmd import dry_run_device, refuse_on_without_dry_run
    from smki.services.batch_sources import read_batch_source

    items = read_batch_source(source)
    refuse_on_without_dry_run(on, dry_run)
    if dry_run:
        dry_run_device(home, on, party, aro, route.value, [(item.item_id, item.data) for item in items])
        return
    _run(home, _requester(party, aro, route), items, out, workers=workers, given=None, source=source)
