"""``smki backup``: create, verify and restore backups of a home (docs/operations.md).

Registration (``smki.interfaces.cli.main``)::

    app.add_typer(backup_cmd.app, name="backup")
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, actor, console, database_url_flag

Archive = Annotated[Path, typer.Argument(help="The backup archive (.tar.gz) made by 'smki backup create'.")]

app = typer.Typer(help="Backups: a consistent snapshot of the database, certificates, CRLs and encrypted keys.",
                  no_args_is_help=True)


@app.command("create")
def create(out: Annotated[Path, typer.Option("--out", help="The archive to write (.tar.gz).")],
           home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Back up the home while it runs: SQLite online backup or pg_dump, files, sha256 manifest."""
    from smki.services.backup import create_backup

    report = create_backup(home, out)
    excluded = report.manifest["excluded"]
    console.print(f"backup {out}: {report.files} files, schema {report.manifest['schema']}, "
                  f"database {report.manifest['database']}", highlight=False)
    for item in excluded:
        console.print(f"  not included: {item['path']} ({item['why']})", highlight=False)


@app.command("verify")
def verify(archive: Archive) -> None:
    """Check every file of a backup against its manifest; exit 1 naming the first that does not match."""
    from smki.services.backup import verify_backup

    report = verify_backup(archive)
    console.print(f"backup {archive}: OK, {report.files} files match their sha256 "
                  f"(created {report.manifest['created']}, smki {report.manifest['smki_version']})", highlight=False)


@app.command("restore")
def restore(archive: Archive,
            home: Annotated[Path, typer.Option("--home", help="A new, empty home to restore into.")],
            database_url: Annotated[str, typer.Option(help=(
                "An empty PostgreSQL database (PostgreSQL backups), or SMKI_DATABASE_URL; a password "
                "goes in ~/.pgpass or SMKI_DATABASE_URL_FILE, never here."))] = "",
            ) -> None:
    """Restore a verified backup into a new, empty home."""
    from smki.services.backup import restore_backup

    report = restore_backup(archive, home, database_url=database_url_flag(database_url), actor=actor())
    console.print(f"restored {archive} into {home}: {report.files} files, schema {report.manifest['schema']}",
                  highlight=False)


