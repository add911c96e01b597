"""What every CLI command shares: the ``--home`` option, the key secret, the console, the actor."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from smki.config import DEFAULT_HOME, Settings, load_settings
from smki.errors import ConfigError
from smki.settings_model import env_name, environment

if TYPE_CHECKING:
    from rich.console import Console

    from smki.ra.rules import RuleResult
    from smki.services.context import Home


class _LazyConsole:
    """A Rich console made on first use: importing Rich's console costs a simple command ~0.03 s
    (issue 14), and one that prints plain lines (``say``) or JSON never needs it."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def real(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


console = cast("Console", _LazyConsole())
err_console = cast("Console", _LazyConsole(stderr=True))


def rich_console(*, stderr: bool = False) -> Console:
    """The Rich console itself, for Rich objects that are handed one (a ``Progress``)."""
    return cast(_LazyConsole, err_console if stderr else console).real()


def say(text: str) -> None:
    """One line to stdout exactly as given: no Rich markup, highlighting or emoji codes (register
    text is never read as markup), and no Rich to import."""
    sys.stdout.write(text + "\n")


def say_err(text: str) -> None:
    """One line to stderr exactly as given (see ``say``)."""
    sys.stderr.write(text + "\n")


def say_failed_rules(results: Iterable[RuleResult]) -> None:
    """Each failing RA rule under a refusal's error line: its id and why, then the SEC reference it
    rests on (to stderr). One format for a refused decision (``ra propose``) and for a refusal by a
    single rule (``ra.dual-control``, ``ra.staff-role``…), so a reader finds the clause the same way."""
    for result in results:
        say_err(f"  FAIL {result.rule_id}: {result.reason}")
        say_err(f"       ref: {result.reference}")

HomeOption = Annotated[
    Path,
    typer.Option("--home", envvar=env_name("home"), help="The smki home directory (config, database, keys)."),
]
#: What the "interrupted" (or "terminated") line adds when a command is stopped: set by a command
#: whose work can be continued (a batch: the reference ``--resume`` needs, which its summary line,
#: never printed when stopped, would have given).
stop_notes: list[str] = []


DEFAULT_HOME_PATH = DEFAULT_HOME

PASSPHRASE_ENV = env_name("key-passphrase")
PIN_ENV = env_name("pkcs11-pin")


def actor() -> str:
    """Who is acting, for the audit log: ``SMKI_ACTOR`` or the operating-system user."""
    return str(environment("actor")) or f"operator:{getpass.getuser()}"


def database_url_flag(value: str) -> str:
    """A ``--database-url`` as given, refused (exit 2, one line) when it carries a password.

    A command line is kept in shell history and shown to every user of the machine by ``ps``, and
    smki writes the URL into ``smki.toml`` without its password (``database_url_without_password``):
    the password belongs in the environment (``SMKI_DATABASE_URL`` or ``SMKI_DATABASE_URL_FILE``,
    which every command reads) or in libpq's own ``~/.pgpass`` / ``PGPASSFILE``.
    """
    from smki.config import database_url_password

    if value and database_url_password(value):
        raise typer.BadParameter(
            "holds a password, which a command line shows to 'ps' and keeps in shell history: give the "
            "URL without it, and the password in ~/.pgpass (or PGPASSFILE), or the whole URL as "
            f"{env_name('database-url')}_FILE", param_hint="'--database-url'")
    return value


def read_secret(settings: Settings, *, confirm: bool = False) -> bytes:
    """The key passphrase (file backend) or token PIN (PKCS#11), from the environment, the file
    ``<variable>_FILE`` names, a systemd credential, or a prompt.

    Never from an argument or ``smki.toml``: those end up in shell history, process listings and
    backups. A value read from a file stays out of ``os.environ``.
    """
    key = "pkcs11-pin" if settings.key_backend == "pkcs11" else "key-passphrase"
    env = env_name(key)
    from smki.observability.logs import register_secret

    value = str(environment(key))
    if value:
        register_secret(value)
        return value.encode("utf-8", "surrogateescape")  # the variable's own bytes, UTF-8 or not
    if not os.isatty(0):
        raise ConfigError("key.secret-missing", f"set {env} or {env}_FILE (no terminal to prompt on)")
    label = "Token PIN" if settings.key_backend == "pkcs11" else "CA key passphrase"
    text: str = typer.prompt(label, hide_input=True, confirmation_prompt=confirm)
    register_secret(text)
    return text.encode()


def open_for_reading(home: Path) -> Home:
    from smki.services.context import open_home

    return open_home(home)


def open_for_signing(home: Path) -> Home:
    from smki.services.context import open_home

    settings = load_settings(home)
    return open_home(home, read_secret(settings))


def write_output(data: bytes, out: Path | None) -> None:
    """Write an exported object to ``out`` (whole or not at all: ``write_whole``), or to standard
    output (binary-safe) when none is given."""
    if out is None:
        sys.stdout.buffer.write(data)
    else:
        from smki.services.files import write_whole

        write_whole(out, data)
