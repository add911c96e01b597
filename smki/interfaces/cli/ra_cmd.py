"""``smki ra``: RA decisions on applications under dual control, and their explanations.

An RA operator records evidence and proposes; a different RA approver approves or refuses. A
refusal by the rules prints every failing rule with its SEC reference (also used by
``smki request``), then exits 1 after the usual ``error: ra.refused: …`` line. ``ra propose``
exits 3 when the proposal it records is a refusal (README, "Exit statuses").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, console, err_console, say_failed_rules
from smki.interfaces.cli.output import CsvOption, JsonOption, emit_rows, print_json
from smki.interfaces.cli.staff_cmd import StaffOption, parse_date, run_on
from smki.ra.engine import PolicyRefusal

if TYPE_CHECKING:
    from smki.ra import Decision
    from smki.store.registry import ApplicationRecord

app = typer.Typer(help="RA decisions: evidence, propose, approve, refuse, explain, queue, batches, reinstatements.",
                  no_args_is_help=True)

#: ``ra propose`` recorded a proposal, and the rules refuse (smki.interfaces.cli.main.EXIT_PROPOSAL_REFUSED).
EXIT_PROPOSAL_REFUSED = 3

AppId = Annotated[str, typer.Argument(help="The application id (from 'smki apply').")]


def say(text: str) -> None:
    """One line to stdout, shown as given (no Rich markup, no wrapping)."""
    console.print(text, highlight=False, soft_wrap=True, markup=False)


def say_err(text: str) -> None:
    """One line to stderr, shown as given (no Rich markup, no wrapping)."""
    err_console.print(text, highlight=False, soft_wrap=True, markup=False)


def print_failed_rules(decision: Decision) -> None:
    """Each failing rule: its id, why it failed, and the SEC reference it rests on (to stderr)."""
    say_failed_rules(decision.failed)


@contextmanager
def refusals_explained() -> Iterator[None]:
    """Turn a ``ra.refused`` into the error line plus one line per failing rule, and exit 1."""
    try:
        yield
    except PolicyRefusal as refusal:
        err_console.print(f"[bold red]error:[/] {escape(refusal.code)}: {escape(refusal.message)}", highlight=False,
                          soft_wrap=True)
        print_failed_rules(refusal.decision)
        raise typer.Exit(1) from None


def application_json(a: ApplicationRecord) -> dict[str, Any]:
    """An application as ``--json`` shows it: evidence, and the stored proposal and decision in full."""
    return {
        "application_id": a.application_id, "party_id": a.party_id, "policy": a.policy, "status": a.status,
        "created_at": a.created_at, "proposed_by": a.proposed_by, "proposed_at": a.proposed_at,
        "proposal": a.proposal, "decided_by": a.decided_by, "decided_at": a.decided_at, "decision": a.decision,
        "evidence": [{"kind": e.kind, "reference": e.reference, "recorded_by": e.recorded_by,
                      "recorded_on": e.recorded_on} for e in a.evidence],
    }


@app.command("evidence")
def evidence(
    application: AppId,
    kind: Annotated[str, typer.Option("--kind", help="Evidence kind, e.g. installation-need (RAPP §5.5).")],
    reference: Annotated[str, typer.Option("--reference", help="Where the evidence is, e.g. a document ref.")],
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Record evidence against an open application (RA operator)."""
    from smki.services import applications as svc

    record = run_on(home, lambda h: svc.add_evidence(h, application, kind, reference, staff_id=staff))
    say(f"application {record.application_id}: {len(record.evidence)} evidence record(s); status {record.status}")


@app.command("propose")
def propose(application: AppId, staff: StaffOption = None, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Run the rules on an application today and record the result as a proposal (RA operator).

    Exit status 0 when the rules approve, 3 when the recorded proposal is a refusal.
    """
    from smki.services import applications as svc

    done = run_on(home, lambda h: svc.propose(h, application, staff_id=staff))
    decision = done.decision
    say(f"application {done.application.application_id} proposed by {done.application.proposed_by}: "
        f"the rules ({decision.ruleset}) {decision.outcome.value}")
    if not decision.approved:
        say_err(f"warning: refused by {', '.join(decision.failed_ids)}; an approver can only refuse it "
                "until the evidence changes")
        print_failed_rules(decision)
        raise typer.Exit(EXIT_PROPOSAL_REFUSED)


@app.command("approve")
def approve(application: AppId, staff: StaffOption = None, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Approve a proposed application (a different RA approver); the rules are run again today."""
    from smki.services import applications as svc

    with refusals_explained():
        done = run_on(home, lambda h: svc.approve(h, application, staff_id=staff))
    say(f"application {done.application.application_id} approved by {done.application.decided_by} "
        f"under {done.decision.ruleset}: {done.application.party_id} is an approved {done.application.policy} "
        "subscriber")


@app.command("refuse")
def refuse(
    application: AppId,
    reason: Annotated[str, typer.Option("--reason", help="Why the application is refused.")],
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Refuse a proposed application (a different RA approver), giving the reason."""
    from smki.services import applications as svc

    done = run_on(home, lambda h: svc.refuse(h, application, reason, staff_id=staff))
    say(f"application {done.application.application_id} refused by {done.application.decided_by}")


@app.command("explain")
def explain(
    application: AppId,
    on: Annotated[str | None, typer.Option("--on", help="What-if: decide now under the rule set in force on "
                                           "this date (YYYY-MM-DD), recording nothing.")] = None,
    as_json: JsonOption = False,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Print an application's evidence and each stored decision, rule by rule, with SEC references;
    with --on DATE, what the rules in force on DATE would decide (nothing is recorded)."""
    from smki.services import applications as svc

    if as_json:
        if on is not None:
            raise typer.BadParameter("--json shows the stored application; --on is a what-if in text")
        from smki.services.ra_state import load_application

        record = run_on(home, lambda h: load_application(h, application))
        print_json(application_json(record))
        return
    if on is not None:
        from smki.services.what_if import application_on

        day = parse_date(on, "--on")
        assert day is not None
        text = run_on(home, lambda h: application_on(h, application, day).render())
    else:
        text = run_on(home, lambda h: svc.explain(h, application))
    console.print(text, highlight=False, markup=False, soft_wrap=True, end="")


@app.command("queue")
def queue(as_json: JsonOption = False, as_csv: CsvOption = False, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Applications waiting for the RA: open (evidence, proposal) or proposed (a decision)."""
    from smki.services import applications as svc

    records = run_on(home, svc.queue)
    if as_json:
        emit_rows([application_json(a) for a in records], as_json=True, as_csv=as_csv)
        return
    emit_rows([{"id": a.application_id, "party": a.party_id, "policy": a.policy, "status": a.status,
                "evidence": len(a.evidence), "proposed_by": a.proposed_by,
                "rules_say": None if a.proposal is None else a.proposal.get("outcome", "?")} for a in records],
              as_csv=as_csv, columns=("id", "party", "policy", "status", "evidence", "proposed_by", "rules_say"))
    if not records and not as_csv:
        err_console.print("no applications waiting")


def _add_batches() -> None:
    """``smki ra batches …`` (issue 13): the batch approval queue, a group of its own module."""
    from smki.interfaces.cli import ra_batches_cmd

    app.add_typer(ra_batches_cmd.app, name="batches")


def _add_reinstatements() -> None:
    """``smki ra reinstatements …``: the dual-control queue of reinstatements, a group of its own module."""
    from smki.interfaces.cli import ra_reinstatements_cmd

    app.add_typer(ra_reinstatements_cmd.app, name="reinstatements")


_add_batches()
_add_reinstatements()
