"""``smki ra``: RA decisions on applications under dual control, and their explanations.

An RA operator records evidence and proposes; a different RA approver approves or refuses. A
refusal by the rules prints every failing rule with its SEC reference (also used by
``smki request``), then exits 1 after the usual ``error: ra.refused: …`` line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, console, err_console
from smki.interfaces.cli.staff_cmd import StaffOption, plain_row, run_on
from smki.ra import Decision, PolicyRefusal
from smki.services import applications as svc

app = typer.Typer(help="RA decisions: evidence, propose, approve, refuse, explain.", no_args_is_help=True)

AppId = Annotated[str, typer.Argument(help="The application id (from 'smki apply').")]


def say(text: str) -> None:
    """One line to stdout, shown as given (no Rich markup, no wrapping)."""
    console.print(text, highlight=False, soft_wrap=True, markup=False)


def say_err(text: str) -> None:
    """One line to stderr, shown as given (no Rich markup, no wrapping)."""
    err_console.print(text, highlight=False, soft_wrap=True, markup=False)


def print_failed_rules(decision: Decision) -> None:
    """Each failing rule: its id, why it failed, and the SEC reference it rests on (to stderr)."""
    for result in decision.failed:
        say_err(f"  FAIL {result.rule_id}: {result.reason}")
        say_err(f"       ref: {result.reference}")


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


@app.command("evidence")
def evidence(
    application: AppId,
    kind: Annotated[str, typer.Option("--kind", help="Evidence kind, e.g. installation-need (RAPP §5.5).")],
    reference: Annotated[str, typer.Option("--reference", help="Where the evidence is, e.g. a document ref.")],
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Record evidence against an open application (RA operator)."""
    record = run_on(home, lambda h: svc.add_evidence(h, application, kind, reference, staff_id=staff))
    say(f"application {record.application_id}: {len(record.evidence)} evidence record(s); status {record.status}")


@app.command("propose")
def propose(application: AppId, staff: StaffOption = None, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Run the rules on an application today and record the result as a proposal (RA operator)."""
    done = run_on(home, lambda h: svc.propose(h, application, staff_id=staff))
    decision = done.decision
    say(f"application {done.application.application_id} proposed by {done.application.proposed_by}: "
        f"the rules ({decision.ruleset}) {decision.outcome.value}")
    if not decision.approved:
        say_err(f"warning: refused by {', '.join(decision.failed_ids)}; an approver can only refuse it "
                "until the evidence changes")
        print_failed_rules(decision)


@app.command("approve")
def approve(application: AppId, staff: StaffOption = None, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Approve a proposed application (a different RA approver); the rules are run again today."""
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
    done = run_on(home, lambda h: svc.refuse(h, application, reason, staff_id=staff))
    say(f"application {done.application.application_id} refused by {done.application.decided_by}")


@app.command("explain")
def explain(
    application: AppId,
    on: Annotated[str | None, typer.Option("--on", help="What-if: decide now under the rule set in force on "
                                           "this date (YYYY-MM-DD), recording nothing.")] = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Print an application's evidence and each stored decision, rule by rule, with SEC references;
    with ``--on DATE``, what the rules in force on DATE would decide (nothing is recorded)."""
    if on is not None:
        from smki.interfaces.cli.staff_cmd import parse_date
        from smki.services.what_if import application_on

        day = parse_date(on, "--on")
        assert day is not None
        text = run_on(home, lambda h: application_on(h, application, day).render())
    else:
        text = run_on(home, lambda h: svc.explain(h, application))
    console.print(text, highlight=False, markup=False, soft_wrap=True, end="")


@app.command("queue")
def queue(home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Applications waiting for the RA: open (evidence, proposal) or proposed (a decision)."""
    records = run_on(home, svc.queue)
    table = Table()
    for column in ("id", "party", "policy", "status", "evidence", "proposed by", "rules say"):
        table.add_column(column)
    for a in records:
        says = "-" if a.proposal is None else str(a.proposal.get("outcome", "?"))
        plain_row(table, str(a.application_id), a.party_id, a.policy, a.status, str(len(a.evidence)),
                  a.proposed_by or "-", says)
    console.print(table)
    if not records:
        err_console.print("no applications waiting")
