"""``smki ra reinstatements``: reinstating suspended subscribers and AROs under dual control.

An RA operator proposes a reinstatement (``smki party subscriber --standing approved``, ``smki aro
reinstate``); a *different* RA approver approves or refuses it here (rule ``ra.dual-control``). See
:mod:`smki.services.reinstatement`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from smki.domain import MAX_ROW_ID
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, console, err_console
from smki.interfaces.cli.output import CsvOption, JsonOption, emit_rows
from smki.interfaces.cli.staff_cmd import StaffOption, run_on

if TYPE_CHECKING:
    from smki.services.reinstatement import Reinstatement

app = typer.Typer(help="Reinstatements of suspended subscribers and AROs awaiting a second RA approver: "
                  "list, approve, refuse.", no_args_is_help=True)

Item = Annotated[int, typer.Argument(min=1, max=MAX_ROW_ID, help="The proposal number (from 'list').")]


def proposal_line(r: Reinstatement) -> str:
    """One reinstatement proposal as a line: what, whose, and where it stands."""
    what = f"{r.policy} subscriber {r.subject}" if r.kind == "subscriber" else f"ARO {r.subject}"
    decided = f", decided by {r.decided_by}" if r.decided_by else ""
    return f"reinstatement {r.item} of {what}: {r.status} (proposed by {r.proposed_by}{decided})"


@app.command("list")
def list_(
    all_items: Annotated[bool, typer.Option("--all", help="Decided proposals too.")] = False,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Reinstatement proposals (those awaiting an RA approver unless --all)."""
    from smki.services.reinstatement import reinstatements

    items = run_on(home, lambda h: reinstatements(h, pending_only=not all_items))
    emit_rows([{"item": r.item, "kind": r.kind, "subject": r.subject, "policy": r.policy, "reason": r.reason,
                "status": r.status, "proposed_by": r.proposed_by, "decided_by": r.decided_by} for r in items],
              as_json=as_json, as_csv=as_csv,
              columns=("item", "kind", "subject", "policy", "reason", "status", "proposed_by", "decided_by"))
    if not items and not (as_json or as_csv):
        err_console.print("no reinstatements awaiting an approver" if not all_items else "no reinstatements")


@app.command("approve")
def approve(item: Item, staff: StaffOption = None, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Approve a reinstatement (RA approver, not the proposer): the subscriber or ARO is reinstated at once."""
    from smki.services.reinstatement import decide_reinstatement

    done = run_on(home, lambda h: decide_reinstatement(h, item, staff_id=staff, approve=True))
    console.print(proposal_line(done), highlight=False, markup=False, soft_wrap=True)


@app.command("refuse")
def refuse(
    item: Item,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded in the audit log).")] = None,
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Refuse a reinstatement (RA approver, not the proposer): the subscriber or ARO stays suspended."""
    from smki.services.reinstatement import decide_reinstatement

    done = run_on(home, lambda h: decide_reinstatement(h, item, staff_id=staff, approve=False, reason=reason))
    console.print(proposal_line(done), highlight=False, markup=False, soft_wrap=True)
