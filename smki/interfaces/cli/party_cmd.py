"""``smki party``: the RA register of SEC Parties, their status evidence, Entity Identifiers and
Authorised Subscriber standing (RA staff, ``--as``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from smki.eui64 import eui64_hyphenated
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, console
from smki.interfaces.cli.staff_cmd import StaffOption, parse_date, plain_row, run_on
from smki.ra import PartyCategory
from smki.services.registry import (
    StatusChange,
    add_party,
    list_parties,
    roles_text,
    set_party_entity,
    set_party_status,
    set_subscriber_standing,
    show_party,
)
from smki.store.registry import PartyRecord

app = typer.Typer(help="SEC Parties in the RA register.", no_args_is_help=True)

_CATEGORIES = ", ".join(c.value for c in PartyCategory)


def _say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True, markup=False)


def _iso(value: object) -> str:
    return "-" if value is None else str(value)


def _print_party(p: PartyRecord) -> None:
    _say(f"Party {p.party_id}: {p.name} ({p.category})")
    _say(f"  SREPT passed:          {_iso(p.srept_passed)}")
    _say(f"  UEPT completed:        {_iso(p.uept_completed)}")
    _say(f"  Registered User roles: {', '.join(p.registered_user_roles) or '-'}")
    _say(f"  Gateway Connections:   {', '.join(p.gateway_connections) or '-'}")
    if p.entities:
        for entity, roles in sorted(p.entities.items()):
            _say(f"  Entity {eui64_hyphenated(entity)}: {roles_text(roles)}")
    else:
        _say("  Entity Identifiers:    -")
    for policy in ("organisation", "device"):
        _say(f"  {policy} subscriber: {p.subscriptions.get(policy, 'none')}")


@app.command("add")
def add(
    party_id: Annotated[str, typer.Argument(help="The Party's id in the register.")],
    name: Annotated[str, typer.Option("--name", help="The Party's name.")],
    category: Annotated[str, typer.Option("--category", help=f"SEC Party category: {_CATEGORIES}.")],
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Register a SEC Party (RA operator)."""
    record = run_on(home, lambda h: add_party(h, party_id, name, category, staff_id=staff))
    _say(f"party {record.party_id} added ({record.category})")


@app.command("show")
def show(party_id: str, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Show a Party: status evidence, Entity Identifiers with roles, subscriber standing."""
    _print_party(run_on(home, lambda h: show_party(h, party_id)))


@app.command("list")
def list_(home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """List every Party with its status evidence and standing."""
    records = run_on(home, list_parties)
    table = Table()
    for column in ("party", "name", "category", "SREPT", "UEPT", "gateway", "organisation", "device"):
        table.add_column(column)
    for p in records:
        plain_row(table, p.party_id, p.name, p.category, _iso(p.srept_passed), _iso(p.uept_completed),
                      ", ".join(p.gateway_connections) or "-", p.subscriptions.get("organisation", "none"),
                      p.subscriptions.get("device", "none"))
    console.print(table)


@app.command("set-status")
def set_status(
    party_id: str,
    srept: Annotated[str | None, typer.Option("--srept", help="Date SREPT was passed (YYYY-MM-DD).")] = None,
    no_srept: Annotated[bool, typer.Option("--no-srept", help="Clear the SREPT date.")] = False,
    uept: Annotated[str | None, typer.Option("--uept", help="Date UEPT was completed (YYYY-MM-DD).")] = None,
    no_uept: Annotated[bool, typer.Option("--no-uept", help="Clear the UEPT date.")] = False,
    gateway: Annotated[list[str] | None, typer.Option("--gateway", help="Add a DCC Gateway Connection.")] = None,
    drop_gateway: Annotated[list[str] | None, typer.Option("--drop-gateway",
                                                           help="Remove a DCC Gateway Connection.")] = None,
    registered_role: Annotated[list[str] | None, typer.Option("--registered-role",
                                                              help="Add a Registered User role.")] = None,
    drop_registered_role: Annotated[list[str] | None, typer.Option("--drop-registered-role",
                                                                   help="Remove a Registered User role.")] = None,
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Record a Party's dated status evidence: SREPT, UEPT, Registered User roles, Gateway Connections."""
    change = StatusChange(
        srept_passed=parse_date(srept, "--srept"), clear_srept=no_srept,
        uept_completed=parse_date(uept, "--uept"), clear_uept=no_uept,
        add_gateways=tuple(gateway or ()), drop_gateways=tuple(drop_gateway or ()),
        add_registered_roles=tuple(registered_role or ()), drop_registered_roles=tuple(drop_registered_role or ()),
    )
    _print_party(run_on(home, lambda h: set_party_status(h, party_id, change, staff_id=staff)))


@app.command("entity")
def entity(
    party_id: str,
    eui: Annotated[str, typer.Argument(help="The Entity Identifier (16 hex digits or 90-B3-D5-…).")],
    role: Annotated[list[str], typer.Option("--role", help="A Remote Party Role it may hold (2, 127, supplier…); "
                                            "repeatable.")],
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Give a Party an Entity Identifier and the Remote Party Roles it may hold under it."""
    _print_party(run_on(home, lambda h: set_party_entity(h, party_id, eui, role, staff_id=staff)))


@app.command("subscriber")
def subscriber(
    party_id: str,
    policy: Annotated[str, typer.Option("--policy", help="organisation or device.")],
    standing: Annotated[str, typer.Option("--standing", help="suspended, withdrawn, or approved (reinstate).")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded in the audit log).")] = None,
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Suspend, withdraw or reinstate a Party's Authorised Subscriber status (effective on the next request)."""
    record = run_on(home, lambda h: set_subscriber_standing(h, party_id, policy, standing, staff_id=staff,
                                                            reason=reason))
    shown = "organisation" if policy.strip().lower() in ("org", "organisation") else policy.strip().lower()
    _say(f"party {record.party_id}: {shown} subscriber {record.subscriptions.get(shown, 'none')}")
