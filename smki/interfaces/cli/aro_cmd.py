"""``smki aro``: Authorised Responsible Officers — nomination, identity verification, screening,
suspension (RA staff, ``--as``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from smki.errors import SmkiError
from smki.interfaces.cli import credential_cmd
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, console
from smki.interfaces.cli.output import CsvOption, JsonOption, emit_rows
from smki.interfaces.cli.staff_cmd import StaffOption, parse_date, run_on
from smki.ra.state import AroStatus

if TYPE_CHECKING:
    from smki.store.registry import AroRecord

app = typer.Typer(help="Authorised Responsible Officers (AROs).", no_args_is_help=True)

AroId = Annotated[str, typer.Argument(help="The ARO's id in the register.")]
Reason = Annotated[str | None, typer.Option("--reason", help="Why (recorded in the audit log).")]


def _line(a: AroRecord) -> str:
    verified = "not verified" if a.identity_verified is None else (
        f"verified {a.identity_verified} by {a.verified_by} ({a.identity_check})")
    screened = "not screened" if a.screened is None else f"screened {a.screened} ({a.screening_standard})"
    return f"ARO {a.aro_id} ({a.name}) for {a.party_id}, nominated by {a.nominated_by}: {a.status}; " \
           f"{verified}; {screened}"


@app.command("nominate")
def nominate(
    aro_id: AroId,
    party: Annotated[str, typer.Option("--party", help="The Party the ARO acts for.")],
    name: Annotated[str, typer.Option("--name", help="The ARO's name.")],
    sro: Annotated[str, typer.Option("--sro", help="The Party's SRO who nominated the ARO.")],
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Record an ARO nominated by the Party's SRO (it cannot act until verified)."""
    from smki.services.registry import nominate_aro

    console.print(_line(run_on(home, lambda h: nominate_aro(h, aro_id, party, name, sro, staff_id=staff))),
                  highlight=False, soft_wrap=True, markup=False)


@app.command("verify")
def verify(
    aro_id: AroId,
    check: Annotated[str, typer.Option("--check", help="What was checked, e.g. 'passport + utility bill'.")],
    when: Annotated[str | None, typer.Option("--date", help="When it was checked (default today).")] = None,
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Record the RA's verification of the ARO's identity: what, when, and by whom (--as)."""
    from smki.services.registry import verify_aro

    on = parse_date(when, "--date")
    console.print(_line(run_on(home, lambda h: verify_aro(h, aro_id, check, staff_id=staff, on=on))),
                  highlight=False, soft_wrap=True, markup=False)


@app.command("screen")
def screen(
    aro_id: AroId,
    when: Annotated[str, typer.Option("--date", help="Date of the security screening (YYYY-MM-DD).")],
    standard: Annotated[str, typer.Option("--standard", help="The screening standard.")] = "BS 7858:2019",
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Record the ARO's security screening (BS 7858:2019 or equivalent; required from MP127)."""
    from smki.services.registry import screen_aro

    on = parse_date(when, "--date")
    if on is None:
        raise SmkiError("input.bad-date", "--date is required")
    console.print(_line(run_on(home, lambda h: screen_aro(h, aro_id, on, standard, staff_id=staff))),
                  highlight=False, soft_wrap=True, markup=False)


def _status(aro_id: str, status: AroStatus, reason: str | None, staff: str | None, home: Path) -> None:
    from smki.services.registry import set_aro_status

    record = run_on(home, lambda h: set_aro_status(h, aro_id, status, staff_id=staff, reason=reason))
    console.print(_line(record), highlight=False, soft_wrap=True, markup=False)


@app.command("suspend")
def suspend(aro_id: AroId, reason: Reason = None, staff: StaffOption = None,
            home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Suspend an ARO: its very next request is refused (aro.active)."""
    _status(aro_id, AroStatus.SUSPENDED, reason, staff, home)


@app.command("reinstate")
def reinstate(aro_id: AroId, reason: Reason = None, staff: StaffOption = None,
              home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Propose reinstating a suspended ARO (RA operator); a different RA approver approves it with
    'smki ra reinstatements approve ITEM' (dual control)."""
    from smki.interfaces.cli.ra_reinstatements_cmd import proposal_line
    from smki.services.reinstatement import propose_aro_reinstatement

    proposal = run_on(home, lambda h: propose_aro_reinstatement(h, aro_id, staff_id=staff, reason=reason))
    console.print(f"{proposal_line(proposal)}: a different RA approver runs "
                  f"'smki ra reinstatements approve {proposal.item}'", highlight=False, soft_wrap=True, markup=False)


@app.command("revoke")
def revoke(aro_id: AroId, reason: Reason = None, staff: StaffOption = None,
           home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Revoke an ARO for good (a revoked ARO is never reinstated)."""
    _status(aro_id, AroStatus.REVOKED, reason, staff, home)


@app.command("list")
def list_(
    party: Annotated[str | None, typer.Option("--party", help="Only this Party's AROs.")] = None,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """List AROs with their status, verification and screening."""
    from smki.services.registry import list_aros

    records = run_on(home, lambda h: list_aros(h, party))
    emit_rows([{"aro_id": a.aro_id, "name": a.name, "party_id": a.party_id, "status": a.status,
                "nominated_by": a.nominated_by, "identity_verified": a.identity_verified,
                "identity_check": a.identity_check, "verified_by": a.verified_by, "screened": a.screened,
                "screening_standard": a.screening_standard} for a in records],
              as_json=as_json, as_csv=as_csv)


# ``smki aro credential issue``: the ARO's TLS client certificate (issue 4).
app.add_typer(credential_cmd.aro_app, name="credential")
