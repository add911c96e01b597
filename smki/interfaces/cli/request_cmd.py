"""``smki request``: the subscriber path — an ARO of a Party asks for certificates under the RA rules.

This stands in for the HTTP listeners (SMKI Portal over the Gateway or SPOTI, the Device CSR web
services), which decide the route themselves; here the route is an argument only because the
console is standing in for a listener. Every request passes the RA's request rules before any key
is touched; a refusal prints each failing rule with its SEC reference and exits 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from smki.domain import Route
from smki.errors import SmkiError
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, console, open_for_signing
from smki.interfaces.cli.issue_cmd import (
    BatchWriter,
    check_out_file,
    exit_if_none_issued,
    pem,
    read_input,
    run_batch,
)
from smki.interfaces.cli.ra_cmd import refusals_explained
from smki.services.files import write_whole

if TYPE_CHECKING:
    from smki.ra import Decision
    from smki.services.batch_sources import BatchItem
    from smki.services.context import Home
    from smki.services.device_issuance import BatchSummary
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
    check_out_file(out)
    opened = open_for_signing(home)
    try:
        with refusals_explained():
            issued = request_organisation(opened, _requester(party, aro, route), data)
    finally:
        opened.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_whole(out, pem(issued.der))
    console.print(f"issued {issued.serial} → {out}")


def _run(home: Path, requester: Requester, out: Path, workers: int | None, items: Sequence[BatchItem] | None,
         source: Path | None, resume: str | None = None) -> None:
    from smki.services.requests import authorise_device_requests, request_device_batch

    decided: list[Decision] = []

    def authorise(opened: Home, batch_ref: str) -> None:
        """The RA rules, before anything is read or written; on resume also that the batch is a
        request batch of this Party (its certificates are written out only after this)."""
        decided.append(authorise_device_requests(opened, requester, resuming=resume, server_batch=False))

    def issue(opened: Home, todo: Iterable[BatchItem], batch_ref: str, writer: BatchWriter,
              digest: str) -> BatchSummary:
        return request_device_batch(opened, requester, todo, batch_ref=batch_ref, workers=workers,
                                    on_chunk=writer, decision=decided[0], resume=resume is not None,
                                    source_digest=digest)

    with refusals_explained():
        summary = run_batch(home, items, source, out, ref_prefix="req", issue=issue, resume=resume,
                            authorise=authorise)
    console.print(f"batch {summary.batch_ref} for {requester.party_id} (ARO {requester.aro_id}, "
                  f"{requester.route.value}): {summary.issued} issued, {summary.rejected} rejected → {out}",
                  highlight=False, soft_wrap=True, markup=False)
    exit_if_none_issued(summary)


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
    _run(home, _requester(party, aro, route), out, workers=0, items=items, source=None)


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
    resume: Annotated[str | None, typer.Option(
        "--resume", help="Continue batch REF over the same SOURCE (the RA rules are checked again): write out "
                         "what it committed, skip what it issued, issue the rest.")] = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """A batch of Device CSRs, authorised once before any is read; results.csv has a line per CSR."""
    from smki.interfaces.cli.what_if_cmd import dry_run_device, refuse_on_without_dry_run
    from smki.services.batch_sources import read_batch_source

    items = read_batch_source(source)
    refuse_on_without_dry_run(on, dry_run)
    if dry_run and resume is not None:  # a what-if issues nothing, so it has nothing to continue
        raise SmkiError("request.resume-with-dry-run", "--resume continues a batch; --dry-run issues nothing")
    if dry_run:
        dry_run_device(home, on, party, aro, route.value, [(item.item_id, item.data) for item in items])
        return
    _run(home, _requester(party, aro, route), out, workers=workers, items=None, source=source, resume=resume)
