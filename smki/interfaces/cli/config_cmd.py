"""``smki config``: the effective configuration (secrets redacted), and a check that names the bad key.

Registration (``smki.interfaces.cli.main``)::

    app.add_typer(config_cmd.app, name="config")
"""

from __future__ import annotations

import typer

from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, console
from smki.interfaces.cli.output import CsvOption, JsonOption, emit_rows

app = typer.Typer(help="The configuration: effective values and validation (docs/configuration.md).",
                  no_args_is_help=True)


@app.command("show")
def show(as_json: JsonOption = False, as_csv: CsvOption = False, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Every setting's effective value and where it comes from; secrets are redacted."""
    import os

    from smki.config import CONFIG_FILE, read_document
    from smki.settings_model import effective, resolve

    path = home / CONFIG_FILE
    resolved = resolve(read_document(path), os.environ, where=str(path))  # refuses a bad file or variable
    rows = [{"key": key, "value": value, "from": source} for key, value, source in effective(resolved)]
    emit_rows(rows, as_json=as_json, as_csv=as_csv, title=f"smki configuration ({path})")


@app.command("check")
def check(home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Validate smki.toml and the SMKI_* variables against the settings model; exit 1 naming the bad key.

    A database password in smki.toml (a home made before smki stopped writing one there) is
    allowed, with a warning: the file is backed up and copied between nodes."""
    from smki.config import load_settings, password_bearing_url_in
    from smki.interfaces.cli.common import err_console

    settings = load_settings(home)
    if password_bearing_url_in(settings.config_path):
        err_console.print("warning: database-url in smki.toml holds a password, which backups and copies of "
                          "the file carry: move it to ~/.pgpass, or the whole URL to SMKI_DATABASE_URL_FILE",
                          highlight=False, soft_wrap=True)
    console.print(f"{settings.config_path}: OK", highlight=False)
