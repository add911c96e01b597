"""``smki apply``: record a Party's application for Authorised Subscriber status (RA operator).

Prints the new application's id alone on stdout, so scripts can capture it
(``APP=$(smki apply device --party P1 --as op1)``); the human summary goes to stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smki.domain import CertificatePolicy
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, console, err_console
from smki.interfaces.cli.staff_cmd import StaffOption, run_on

app = typer.Typer(help="Applications for Authorised Subscriber status.", no_args_is_help=True)

Party = Annotated[str, typer.Option("--party", help="The applying Party.")]


def _apply(home: Path, party: str, policy: CertificatePolicy, staff: str | None) -> None:
    from smki.services.applications import apply

    record = run_on(home, lambda h: apply(h, party, policy, staff_id=staff))
    console.print(str(record.application_id))
    err_console.print(f"application {record.application_id} opened: {record.policy} Authorised Subscriber "
                      f"status for {record.party_id}", highlight=False, soft_wrap=True, markup=False)


@app.command("org")
def org(party: Party, staff: StaffOption = None, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Apply for Organisation Certificate Authorised Subscriber status."""
    _apply(home, party, CertificatePolicy.ORGANISATION, staff)


@app.command("device")
def device(party: Party, staff: StaffOption = None, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Apply for Device Certificate Authorised Subscriber status (needs evidence of need, RAPP §5.5)."""
    _apply(home, party, CertificatePolicy.DEVICE, staff)
