"""``smki staff``: RA staff (console bootstrap), plus what every RA staff command shares.

``staff add`` needs no staff role: it is how an administrator at the console creates the first RA
operators and approvers. Every other RA command names the staff member acting with ``--as``
(or ``SMKI_STAFF``), and the service checks that a role they hold permits the action.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from smki.errors import SmkiError
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, actor, console, open_for_reading
from smki.interfaces.cli.output import CsvOption, JsonOption, emit_rows
from smki.ra.state import StaffRole
from smki.settings_model import env_name

if TYPE_CHECKING:

    from smki.services.context import Home

app = typer.Typer(help="RA staff: operators, approvers and auditors.", no_args_is_help=True)

StaffOption = Annotated[
    str | None,
    typer.Option("--as", envvar=env_name("staff"), help="The RA staff member acting (or SMKI_STAFF).",
                 show_envvar=True),
]

T = TypeVar("T")


@contextmanager
def opened(home: Path) -> Iterator[Home]:
    """The home, opened for register work (no CA key needed) and closed afterwards."""
    handle = open_for_reading(home)
    try:
        yield handle
    finally:
        handle.close()


def run_on(home: Path, action: Callable[[Home], T]) -> T:
    """Open the home, run ``action`` on it, close it."""
    with opened(home) as handle:
        return action(handle)


def parse_date(value: str | None, option: str) -> date | None:
    """An ISO date (``2019-11-07``) given to ``option``, or ``input.bad-date``."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise SmkiError("input.bad-date", f"{option} takes a date as YYYY-MM-DD, not {value[:40]!r}") from None


@app.command("add")
def add(
    staff_id: Annotated[str, typer.Argument(help="The staff id (what --as names).")],
    name: Annotated[str, typer.Option("--name", help="The person's name.")],
    role: Annotated[list[StaffRole], typer.Option("--role", case_sensitive=False, help="A role; repeatable.")],
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Register an RA staff member (administrator at the console; no staff role needed)."""
    from smki.services.staff import add_staff

    record = run_on(home, lambda h: add_staff(h, staff_id, name, role, actor=actor()))
    console.print(f"staff {record.staff_id} ({record.name}): {', '.join(record.roles)}", highlight=False,
                  soft_wrap=True, markup=False)


@app.command("deactivate")
def deactivate(
    staff_id: Annotated[str, typer.Argument(help="The staff id of someone who has left or must not act.")],
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Deactivate a staff member (administrator at the console): they can no longer act, here or on the Portal."""
    _set_active(home, staff_id, active=False)


@app.command("reactivate")
def reactivate(
    staff_id: Annotated[str, typer.Argument(help="The staff id of a deactivated staff member.")],
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Let a deactivated staff member act again (administrator at the console)."""
    _set_active(home, staff_id, active=True)


def _set_active(home: Path, staff_id: str, *, active: bool) -> None:
    from smki.services.staff import set_staff_active

    record = run_on(home, lambda h: set_staff_active(h, staff_id, active, actor=actor()))
    done = f"reactivated: {', '.join(record.roles)}" if active else "deactivated"
    console.print(f"staff {record.staff_id} ({record.name}) {done}", highlight=False, soft_wrap=True, markup=False)


@app.command("set-roles")
def set_roles(
    staff_id: Annotated[str, typer.Argument(help="The staff id.")],
    role: Annotated[list[StaffRole], typer.Option("--role", case_sensitive=False,
                                                  help="A role the staff member is to hold; repeatable.")],
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Replace a staff member's roles (administrator at the console)."""
    from smki.services.staff import set_staff_roles

    record = run_on(home, lambda h: set_staff_roles(h, staff_id, role, actor=actor()))
    console.print(f"staff {record.staff_id} ({record.name}): {', '.join(record.roles)}", highlight=False,
                  soft_wrap=True, markup=False)


@app.command("list")
def list_(as_json: JsonOption = False, as_csv: CsvOption = False, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """List RA staff and their roles."""
    from smki.services.staff import list_staff

    records = run_on(home, list_staff)
    emit_rows([{"staff_id": r.staff_id, "name": r.name, "roles": list(r.roles), "active": r.active}
               for r in records], as_json=as_json, as_csv=as_csv, columns=("staff_id", "name", "roles", "active"))
