"""``smki serve``: the Gateway and SPOTI listeners (mutual TLS), one configuration.

Settings come from ``[api]`` in ``smki.toml``; the flags are the settings model's (each names its
key: docs/configuration.md) and override the file and the environment. The key secret (needed to issue) comes from the
environment (better: a file it names, or a systemd credential; a secret given as a plain variable is
warned of) or a prompt.

Registration: ``COMMANDS.add("serve", …serve_cmd:serve, …)`` in ``smki.interfaces.cli.main``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from smki.config import load_settings
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, read_secret

if TYPE_CHECKING:
    from pathlib import Path


#: The choices of settings_model's log-level and log-format (a test keeps them equal).
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["auto", "json", "text"]

def serve(
    gateway: Annotated[str | None, typer.Option("--gateway", help="Gateway listener host:port.")] = None,
    spoti: Annotated[str | None, typer.Option("--spoti", help="SPOTI listener host:port.")] = None,
    no_spoti: Annotated[bool, typer.Option("--no-spoti", help="Run without the SPOTI listener.")] = False,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Server processes.")] = None,
    batch_workers: Annotated[int | None, typer.Option("--batch-workers", min=0,
                                                      help="Signing processes per batch (0: in-process).")] = None,
    admin: Annotated[str | None, typer.Option("--admin", help="Admin listener host:port (/healthz, /readyz, "
                                              "/metrics; plain HTTP, keep it on loopback).")] = None,
    log_level: Annotated[LogLevel | None, typer.Option("--log-level", case_sensitive=False,
                                                       help="The log level.")] = None,
    log_format: Annotated[LogFormat | None, typer.Option("--log-format", case_sensitive=False,
                                                         help="json, text or auto.")] = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Serve the JSON API, the DCC XML services and the Portal on the Gateway and SPOTI listeners."""
    from smki.interfaces.api.server import serve as run_server
    from smki.interfaces.api.settings import api_settings
    from smki.observability.logs import configure_logging, register_secret

    settings = load_settings(home, flags={
        "api.gateway": gateway, "api.spoti": spoti, "api.spoti-enabled": False if no_spoti else None,
        "api.workers": workers, "api.batch-workers": batch_workers, "api.admin": admin,
        "log-level": log_level, "log-format": log_format,
    })
    configure_logging(settings.log_level, settings.log_format)
    api = api_settings(settings)
    register_secret(api.repository_apikey)
    secret = read_secret(settings)
    register_secret(secret)
    run_server(home, secret, api, listening=lambda: _warn_of_secrets_in_the_environment(
        os.environ, settings.config_path))


def _warn_of_secrets_in_the_environment(environ: Mapping[str, str], config: Path | None = None) -> None:
    """One warning per secret given to ``smki serve`` as a plain variable (the database URL only when
    it carries a password). The processes it starts never inherit them, but its own initial
    environment, ``/proc/PID/environ``, keeps them readable by root and the service's user for as
    long as it runs; the ``_FILE`` form or a systemd credential leaves only a file's name there.
    And one when ``config`` (smki.toml, written before smki kept passwords out of it) names the
    database with a password: backups and copies of the file carry it."""
    import logging

    from sqlalchemy.exc import ArgumentError

    from smki.config import database_url_password, password_bearing_url_in
    from smki.settings_model import env_name, secret_env_names

    log = logging.getLogger("smki.serve")
    names = [name for name in secret_env_names() if environ.get(name)]
    database = env_name("database-url")
    try:
        if environ.get(database) and database_url_password(environ[database]):
            names.append(database)
    except ArgumentError:  # not a URL: the settings refused it before this could run
        pass
    for name in names:
        log.warning("%s is given in smki serve's environment, where /proc/<pid>/environ keeps it readable while "
                    "the server runs: give it as %s_FILE or a systemd credential instead (docs/configuration.md)",
                    name, name)
    if config is not None and password_bearing_url_in(config):
        log.warning("database-url in %s holds a password, which backups and copies of the file carry: move it "
                    "to ~/.pgpass, or the whole URL to %s_FILE (docs/configuration.md)", config, database)


def main() -> None:
    """``python -m smki.interfaces.cli.serve_cmd``: the same command, with the CLI's error boundary."""
    from smki.errors import SmkiError
    from smki.interfaces.cli.common import err_console

    try:
        typer.run(serve)
    except SmkiError as exc:
        err_console.print(f"[bold red]error:[/] {exc.code}: {exc.message}", highlight=False)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
