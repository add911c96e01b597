"""``smki db``: the database schema's status, and the one command that upgrades it.

Registration (``smki.interfaces.cli.main``)::

    app.add_typer(db_cmd.app, name="db")
"""

from __future__ import annotations

import typer

from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, actor, console

app = typer.Typer(help="The database schema: status and upgrade (Alembic).", no_args_is_help=True)


@app.command("status")
def status(home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """The database, its schema revision and the revision this smki needs. Exit 1 when out of date."""
    from smki.services.schema import schema_report

    report = schema_report(home)
    if report.status.up_to_date:
        state = "current"
    elif report.status.current is None:
        state = "not initialised"
    elif not report.status.known:  # newer than this smki, or not smki's: an upgrade cannot help
        state = "unknown to this smki (newer, or not smki's): run the smki that made it"
    else:
        state = "out of date: run 'smki db upgrade'"
    console.print(f"database: {report.database}", highlight=False, soft_wrap=True)
    console.print(f"schema: {report.status.current or '-'} (this smki: {report.status.head}) {state}",
                  highlight=False)
    if not report.status.up_to_date:
        raise typer.Exit(1)


@app.command("upgrade")
def upgrade(home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Upgrade the schema to this smki's revision (take a backup first: 'smki backup create')."""
    from smki.services.schema import upgrade_schema

    before, after = upgrade_schema(home, actor=actor())
    if before.current == after.current:
        console.print(f"schema: {after.current} already current", highlight=False)
    else:
        console.print(f"schema: upgraded {before.current or '(empty)'} -> {after.current}", highlight=False)
