"""``smki aro``: Authorised Responsible Officers — nomination, identity verification, screening,
suspension (RA staff, ``--as``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from smki.errors import SmkiError
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, console
from smki.interfaces.cli.staff_cmd import StaffOption, parse_date, plain_row, run_on
from smki.ra import AroStatus
from smki.services.registry import list_aros, nominate_aro, screen_aro, set_aro_status, verify_aro
from smki.store.registry import AroRecord

app = typer.Typer(help="Authorised Responsible Officers (AROs).", no_args_is_help=True)

Reason = Annotated[str | None, typer.Option("--reason", help="Why (recorded in the audit log).")]


def _iso(value: object) -> str:
    return "-" if value is None else str(value)


def _line(a: AroRecord) -> str:
    verified = "not verified" if a.identity_verified is None else (
        f"verified {a.identity_verified} by {a.verified_by} ({a.identity_check})")
    screened = "not screened" if a.screened is None else f"screened {a.screened} ({a.screening_standard})"
    return f"ARO {a.aro_id} ({a.name}) for {a.party_id}, nominated by {a.nominated_by}: {a.status}; " \
           f"{verified}; {screened}"


@app.command("nominate")
def nominate(
    aro_id: str,
    party: Annotated[str, typer.Option("--party", help="The Party the ARO acts for.")],
    name: Annotated[str, typer.Option("--name", help="The ARO's name.")],
    sro: Annotated[str, typer.Option("--sro", help="The Party's SRO who nominated the ARO.")],
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Record an ARO nominated by the Party's SRO (it cannot act until verified)."""
    console.print(_line(run_on(home, lambda h: nominate_aro(h, aro_id, party, name, sro, staff_id=staff))),
                  highlight=False, soft_wrap=True, markup=False)


@app.command("verify")
def verify(
    aro_id: str,
    check: Annotated[str, typer.Option("--check", help="What was checked, e.g. 'passport + utility bill'.")],
    when: Annotated[str | None, typer.Option("--date", help="When it was checked (default today).")] = None,
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Record the RA's verification of the ARO's identity: what, when, and by whom (--as)."""
    on = parse_date(when, "--date")
    console.print(_line(run_on(home, lambda h: verify_aro(h, aro_id, check, staff_id=staff, on=on))),
                  highlight=False, soft_wrap=True, markup=False)


@app.command("screen")
def screen(
    aro_id: str,
    when: Annotated[str, typer.Option("--date", help="Date of the security screening (YYYY-MM-DD).")],
    standard: Annotated[str, typer.Option("--standard", help="The screening standard.")] = "BS 7858:2019",
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Record the ARO's security screening (BS 7858:2019 or equivalent; required from MP127)."""
    on = parse_date(when, "--date")
    if on is None:
        raise SmkiError("input.bad-date", "--date is required")
    console.print(_line(run_on(home, lambda h: screen_aro(h, aro_id, on, standard, staff_id=staff))),
                  highlight=False, soft_wrap=True, markup=False)


def _status(aro_id: str, status: AroStatus, reason: str | None, staff: str | None, home: Path) -> None:
    record = run_on(home, lambda h: set_aro_status(h, aro_id, status, staff_id=staff, reason=reason))
    console.print(_line(record), highlight=False, soft_wrap=True, markup=False)


@app.command("suspend")
def suspend(aro_id: str, reason: Reason = None, staff: StaffOption = None,
            home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Suspend an ARO: its very next request is refused (aro.active)."""
    _status(aro_id, AroStatus.SUSPENDED, reason, staff, home)


@app.command("reinstate")
def reinstate(aro_id: str, reason: Reason = None, staff: StaffOption = None,
              home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Reinstate a suspended ARO (RA approver)."""
    _status(aro_id, AroStatus.ACTIVE, reason, staff, home)


@app.command("revoke")
def revoke(aro_id: str, reason: Reason = None, staff: StaffOption = None,
           home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Revoke an ARO for good (a revoked ARO is never reinstated)."""
    _status(aro_id, AroStatus.REVOKED, reason, staff, home)


@app.command("list")
def list_(
    party: Annotated[str | None, typer.Option("--party", help="Only this Party's AROs.")] = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """List AROs with their status, verification and screening."""
    records = run_on(home, lambda h: list_aros(h, party))
    table = Table()
    for column in ("ARO", "name", "party", "status", "verified", "checked", "by", "screened", "standard"):
        table.add_column(column)
    for a in records:
        plain_row(table, a.aro_id, a.name, a.party_id, a.status, _iso(a.identity_verified), a.identity_check or "-",
                      a.verified_by or "-", _iso(a.screened), a.screening_standard or "-")
    console.print(table)
