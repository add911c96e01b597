"""``smki staff``: register RA staff (a CA/RA administrator's console action) and list them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, actor, console, open_for_reading
from smki.services.staff import STAFF_ROLES, add_staff

app = typer.Typer(help="RA staff: RA operators, RA approvers and auditors.", no_args_is_help=True)


@app.command("add")
def add(
    staff_id: Annotated[str, typer.Argument(help="The staff id they act as (--as / SMKI_STAFF).")],
    name: Annotated[str, typer.Option("--name", help="Full name.")],
    role: Annotated[list[str], typer.Option("--role", help=f"Repeatable: {', '.join(STAFF_ROLES)}.")],
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Register an RA staff member with one or more roles."""
    opened = open_for_reading(home)
    try:
        add_staff(opened, staff_id, name, role, actor=actor())
    finally:
        opened.close()
    console.print(f"added {staff_id} ({', '.join(sorted(set(role)))})", highlight=False)


@app.command("list")
def list_staff(home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """List RA staff and their roles."""
    opened = open_for_reading(home)
    try:
        members = opened.store.registry.staff_members()
    finally:
        opened.close()
    table = Table(title=f"{len(members)} staff member(s)")
    for column in ("staff id", "name", "roles", "active"):
        table.add_column(column)
    for m in members:
        table.add_row(m.staff_id, m.name, ", ".join(m.roles), "yes" if m.active else "no")
    console.print(table)
