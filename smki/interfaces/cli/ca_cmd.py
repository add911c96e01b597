"""``smki ca``: the key ceremony and the CA certificates."""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from smki.config import load_settings
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, actor, console, open_for_reading, read_secret
from smki.services.ca_admin import CaSummary, describe_ca, initialise_ca

app = typer.Typer(help="Create and inspect the CA hierarchy (Root, Organisation CA, Device CA).",
                  no_args_is_help=True)


class KeyStore(StrEnum):
    file = "file"
    pkcs11 = "pkcs11"


def _show(summaries: list[CaSummary]) -> None:
    table = Table(title="SMKI CA hierarchy")
    for column in ("CA", "subject", "serial", "valid from", "valid to", "key id", "file"):
        table.add_column(column)
    for s in summaries:
        table.add_row(s.kind.value, s.subject, s.serial, s.not_before.date().isoformat(),
                      s.not_after.date().isoformat(), s.key_id, str(s.path))
    console.print(table)


@app.command("init")
def init(
    home: HomeOption = DEFAULT_HOME_PATH,
    keys: Annotated[KeyStore, typer.Option(help="Key backend: encrypted files or a PKCS#11 token.")] = KeyStore.file,
    module: Annotated[str, typer.Option(help="PKCS#11 module path (with --keys pkcs11).")] = "",
    token: Annotated[str, typer.Option(help="PKCS#11 token label (with --keys pkcs11).")] = "",
    database_url: Annotated[str, typer.Option(help="SQLAlchemy URL; default SQLite in the home.")] = "",
) -> None:
    """Generate the CA keys and certificates (spec §4.3) in a new home directory."""
    settings = load_settings(home)
    settings = replace(settings, key_backend=keys.value, pkcs11_module=module or settings.pkcs11_module,
                       pkcs11_token=token or settings.pkcs11_token,
                       database_url=database_url or settings.database_url)
    if keys is KeyStore.pkcs11 and not (settings.pkcs11_module and settings.pkcs11_token):
        raise typer.BadParameter("--keys pkcs11 needs --module and --token")
    summaries = initialise_ca(settings, read_secret(settings, confirm=True), actor=actor())
    _show(summaries)
    console.print(f"Configuration: {settings.config_path}")


@app.command("show")
def show(home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Show the CA certificates of a home."""
    opened = open_for_reading(home)
    try:
        _show(describe_ca(opened))
    finally:
        opened.close()
