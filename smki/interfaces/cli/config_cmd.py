"""``smki config``: the effective configuration (secrets redacted), and a check that names the bad key.

Registration (``smki.interfaces.cli.main``)::

    app.add_typer(config_cmd.app, name="config")
"""

from __future__ import annotations

import typer

from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, console

app = typer.Typer(help="The configuration: effective values and validation (docs/configuration.md).",
                  no_args_is_help=True)


@app.command("show")
def show(home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Every setting's effective value and where it comes from; secrets are redacted."""
    import os
    import tomllib

    from rich.markup import escape
    from rich.table import Table

    from smki.config import load_settings
    from smki.settings_model import effective

    settings = load_settings(home)  # refuses a bad file first
    path = settings.config_path
    document = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    table = Table(title=f"smki configuration ({path})")
    for column in ("key", "value", "from"):
        table.add_column(column)
    for key, value, source in effective(document, os.environ):
        table.add_row(key, escape(value), source)
    console.print(table)


@app.command("check")
def check(home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Validate smki.toml (and the [api] and [capacity] sections' meaning); exit 1 naming the bad key."""
    from smki.config import load_settings
    from smki.interfaces.api.settings import api_settings
    from smki.observability.logs import configure_logging

    settings = load_settings(home)
    api_settings(settings)
    configure_logging(settings.log_level, settings.log_format)
    configure_logging("warning", "auto")
    console.print(f"{settings.config_path}: OK", highlight=False)
