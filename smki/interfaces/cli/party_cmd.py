"""``smki party``: the RA register of SEC Parties, their status evidence, Entity Identifiers and
Authorised Subscriber standing (RA staff, ``--as``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from smki.eui64 import eui64_hyphenated
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, say
from smki.interfaces.cli.output import CsvOption, JsonOption, emit_record, emit_rows
from smki.interfaces.cli.staff_cmd import StaffOption, parse_date, run_on
from smki.ra.state import PartyCategory, RegisteredUserRole

if TYPE_CHECKING:
    from smki.store.registry import PartyPeriodRecord, PartyRecord

app = typer.Typer(help="SEC Parties in the RA register.", no_args_is_help=True)


PartyId = Annotated[str, typer.Argument(help="The Party's id in the register.")]
#: Any spelling of a role ("Import Supplier"), checked by the service (``ra.bad-registered-role``).
_REGISTERED_ROLES = ", ".join(r.value for r in RegisteredUserRole)
#: The fixed choices of ``party subscriber``: a value outside them is a usage error (exit 2, the
#: choices listed) before the command runs; the service still checks for its other callers.
PolicyChoice = Literal["organisation", "org", "device"]
StandingChoice = Literal["suspended", "withdrawn", "approved"]


def _say(text: str) -> None:
    say(text)


def _iso(value: object) -> str:
    return "-" if value is None else str(value)


def _print_party(p: PartyRecord) -> None:
    _say(f"Party {p.party_id}: {p.name} ({p.category})")
    _say(f"  SREPT passed:          {_iso(p.srept_passed)}")
    _say(f"  UEPT completed:        {_iso(p.uept_completed)}")
    _say(f"  Registered User roles: {', '.join(p.registered_user_roles) or '-'}")
    _say(f"  Gateway Connections:   {', '.join(p.gateway_connections) or '-'}")
    if p.entities:
        from smki.services.registry import roles_text

        for entity, roles in sorted(p.entities.items()):
            _say(f"  Entity {eui64_hyphenated(entity)}: {roles_text(roles)}")
    else:
        _say("  Entity Identifiers:    -")
    for policy in ("organisation", "device"):
        _say(f"  {policy} subscriber: {p.subscriptions.get(policy, 'none')}")


def _period_text(period: PartyPeriodRecord) -> str:
    """``GW-1 from 2019-09-01 until 2020-01-01 (op1: new line; removed by op2: closed)``."""
    until = "in force" if period.valid_until is None else f"until {period.valid_until.isoformat()}"
    added = period.added_by + (f": {period.added_reason}" if period.added_reason else "")
    removed = "" if period.removed_by is None else f"; removed by {period.removed_by}" + (
        f": {period.removed_reason}" if period.removed_reason else "")
    return f"{period.value} from {period.valid_from.isoformat()} {until} (added by {added}{removed})"


def _print_history(history: list[PartyPeriodRecord]) -> None:
    """Every period, so a reader can say since when a connection or role held (and until when)."""
    for kind, title in (("gateway-connection", "Gateway Connection history"),
                        ("registered-role", "Registered User role history")):
        shown = [p for p in history if p.kind == kind]
        if shown:
            _say(f"  {title}:")
            for period in shown:
                _say(f"    {_period_text(period)}")


def period_json(period: PartyPeriodRecord) -> dict[str, Any]:
    """A period as ``--json`` shows it."""
    return {"kind": period.kind, "value": period.value, "valid_from": period.valid_from,
            "valid_until": period.valid_until, "added_by": period.added_by, "added_reason": period.added_reason,
            "removed_by": period.removed_by, "removed_reason": period.removed_reason}


def party_json(p: PartyRecord) -> dict[str, Any]:
    """A Party as ``--json`` shows it: every field, full values."""
    return {
        "party_id": p.party_id, "name": p.name, "category": p.category,
        "srept_passed": p.srept_passed, "uept_completed": p.uept_completed,
        "registered_user_roles": list(p.registered_user_roles), "gateway_connections": list(p.gateway_connections),
        "entities": {eui64_hyphenated(e): sorted(int(r) for r in roles) for e, roles in sorted(p.entities.items())},
        "subscriptions": {policy: p.subscriptions.get(policy, "none") for policy in ("organisation", "device")},
    }


@app.command("add")
def add(
    party_id: PartyId,
    name: Annotated[str, typer.Option("--name", help="The Party's name.")],
    category: Annotated[PartyCategory, typer.Option("--category", case_sensitive=False, help="SEC Party category.")],
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Register a SEC Party (RA operator)."""
    from smki.services.registry import add_party

    record = run_on(home, lambda h: add_party(h, party_id, name, category.value, staff_id=staff))
    _say(f"party {record.party_id} added ({record.category})")


@app.command("show")
def show(party_id: PartyId,
         as_json: JsonOption = False, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Show a Party: status evidence, Entity Identifiers with roles, subscriber standing, and since
    when (until when) each Gateway Connection and Registered User role held, who recorded it and why."""
    from smki.services.registry import party_history, show_party

    record, history = run_on(home, lambda h: (show_party(h, party_id), party_history(h, party_id)))
    shown = {**party_json(record), "history": [period_json(p) for p in history]}
    if not emit_record(shown, as_json=as_json):
        _print_party(record)
        _print_history(history)


@app.command("list")
def list_(as_json: JsonOption = False, as_csv: CsvOption = False, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """List every Party with its status evidence and standing."""
    from smki.services.registry import list_parties

    records = run_on(home, list_parties)
    rows = [party_json(p) for p in records]
    if as_json:
        emit_rows(rows, as_json=True, as_csv=as_csv)
        return
    flat = [{"party": r["party_id"], "name": r["name"], "category": r["category"], "SREPT": r["srept_passed"],
             "UEPT": r["uept_completed"], "registered roles": r["registered_user_roles"],
             "gateway": r["gateway_connections"], "organisation": r["subscriptions"]["organisation"],
             "device": r["subscriptions"]["device"]} for r in rows]
    emit_rows(flat, as_csv=as_csv, columns=("party", "name", "category", "SREPT", "UEPT", "registered roles",
                                            "gateway", "organisation", "device"))


@app.command("set-status")
def set_status(
    party_id: PartyId,
    srept: Annotated[str | None, typer.Option("--srept", help="Date SREPT was passed (YYYY-MM-DD).")] = None,
    no_srept: Annotated[bool, typer.Option("--no-srept", help="Clear the SREPT date.")] = False,
    uept: Annotated[str | None, typer.Option("--uept", help="Date UEPT was completed (YYYY-MM-DD).")] = None,
    no_uept: Annotated[bool, typer.Option("--no-uept", help="Clear the UEPT date.")] = False,
    gateway: Annotated[list[str] | None, typer.Option("--gateway", help="Add a DCC Gateway Connection.")] = None,
    drop_gateway: Annotated[list[str] | None, typer.Option("--drop-gateway",
                                                           help="Remove a DCC Gateway Connection.")] = None,
    registered_role: Annotated[list[str] | None, typer.Option(
        "--registered-role", help=f"Add a Registered User role: {_REGISTERED_ROLES}.")] = None,
    drop_registered_role: Annotated[list[str] | None, typer.Option("--drop-registered-role",
                                                                   help="Remove a Registered User role.")] = None,
    effective: Annotated[str | None, typer.Option(
        "--effective", help="Date the Gateway Connections and roles added or removed take effect "
                            "(YYYY-MM-DD; default today, never in the future).")] = None,
    reason: Annotated[str | None, typer.Option(
        "--reason", help="Why they are added or removed (kept with their history).")] = None,
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Record a Party's dated status evidence: SREPT, UEPT, Registered User roles, Gateway Connections.

    A connection or role added is in force from --effective (default today); one removed ends
    there, its history kept (smki party show)."""
    from smki.services.registry import StatusChange, set_party_status

    change = StatusChange(
        srept_passed=parse_date(srept, "--srept"), clear_srept=no_srept,
        uept_completed=parse_date(uept, "--uept"), clear_uept=no_uept,
        add_gateways=tuple(gateway or ()), drop_gateways=tuple(drop_gateway or ()),
        add_registered_roles=tuple(registered_role or ()), drop_registered_roles=tuple(drop_registered_role or ()),
        effective=parse_date(effective, "--effective"), reason=reason,
    )
    _print_party(run_on(home, lambda h: set_party_status(h, party_id, change, staff_id=staff)))


@app.command("entity")
def entity(
    party_id: PartyId,
    eui: Annotated[str, typer.Argument(help="The Entity Identifier (16 hex digits or 90-B3-D5-…).")],
    role: Annotated[list[str], typer.Option("--role", help="A Remote Party Role it may hold (2, 127, supplier…); "
                                            "repeatable.")],
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Give a Party an Entity Identifier and the Remote Party Roles it may hold under it."""
    from smki.services.registry import set_party_entity

    _print_party(run_on(home, lambda h: set_party_entity(h, party_id, eui, role, staff_id=staff)))


@app.command("subscriber")
def subscriber(
    party_id: PartyId,
    policy: Annotated[PolicyChoice, typer.Option("--policy", case_sensitive=False,
                                                 help="organisation (or org) or device.")],
    standing: Annotated[StandingChoice, typer.Option(
        "--standing", case_sensitive=False,
        help="suspended or withdrawn (at once), or approved: propose reinstating a suspended subscriber, "
             "for a different RA approver to approve ('smki ra reinstatements approve ITEM').")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded in the audit log).")] = None,
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Suspend or withdraw a Party's Authorised Subscriber status (effective on the next request), or propose
    reinstating a suspended one (dual control: an RA operator proposes, a different RA approver approves)."""
    if standing == "approved":
        from smki.interfaces.cli.ra_reinstatements_cmd import proposal_line
        from smki.services.reinstatement import propose_subscriber_reinstatement

        proposal = run_on(home, lambda h: propose_subscriber_reinstatement(h, party_id, policy, staff_id=staff,
                                                                           reason=reason))
        _say(f"{proposal_line(proposal)}: a different RA approver runs "
             f"'smki ra reinstatements approve {proposal.item}'")
        return
    from smki.services.registry import set_subscriber_standing

    record = run_on(home, lambda h: set_subscriber_standing(h, party_id, policy, standing, staff_id=staff,
                                                            reason=reason))
    shown = "organisation" if policy in ("org", "organisation") else policy
    _say(f"party {record.party_id}: {shown} subscriber {record.subscriptions.get(shown, 'none')}")
