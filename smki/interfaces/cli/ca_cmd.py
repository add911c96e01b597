"""``smki ca``: the key ceremony and the CA certificates."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from smki.config import load_settings
from smki.interfaces.cli import revoke_cmd
from smki.interfaces.cli.common import (
    DEFAULT_HOME_PATH,
    HomeOption,
    actor,
    console,
    database_url_flag,
    open_for_reading,
    read_secret,
)
from smki.interfaces.cli.output import CsvOption, JsonOption, emit_rows

if TYPE_CHECKING:
    from smki.services.ca_admin import CaSummary

app = typer.Typer(help="Create and inspect the CA hierarchy (Root, Organisation CA, Device CA).",
                  no_args_is_help=True)


class KeyStore(StrEnum):
    file = "file"
    pkcs11 = "pkcs11"


def _show(summaries: list[CaSummary], *, as_json: bool = False, as_csv: bool = False) -> None:
    rows = [{"ca": s.kind, "subject": s.subject, "serial": s.serial, "not_before": s.not_before,
             "not_after": s.not_after, "key_id": s.key_id, "file": str(s.path)} for s in summaries]
    emit_rows(rows, as_json=as_json, as_csv=as_csv, title=None if as_json or as_csv else "SMKI CA hierarchy")


@app.command("init")
def init(
    home: HomeOption = DEFAULT_HOME_PATH,
    keys: Annotated[KeyStore, typer.Option(help="Key backend: encrypted files or a PKCS#11 token.")] = KeyStore.file,
    module: Annotated[str, typer.Option(help="PKCS#11 module path (with --keys pkcs11).")] = "",
    token: Annotated[str, typer.Option(help="PKCS#11 token label (with --keys pkcs11).")] = "",
    database_url: Annotated[str, typer.Option(help=(
        "SQLAlchemy URL (or SMKI_DATABASE_URL); default SQLite in the home. A password goes in "
        "~/.pgpass or SMKI_DATABASE_URL_FILE, never here."))] = "",
) -> None:
    """Generate the CA keys and certificates (spec §4.3) in a new home directory.

    Atomic: the home is built in a temporary directory and moved into place only on success.
    """
    from smki.services.ca_admin import initialise_ca

    settings = load_settings(home, flags={"key-backend": keys.value, "pkcs11-module": module or None,
                                          "pkcs11-token": token or None,
                                          "database-url": database_url_flag(database_url) or None})
    if keys is KeyStore.pkcs11 and not (settings.pkcs11_module and settings.pkcs11_token):
        raise typer.BadParameter("--keys pkcs11 needs --module and --token")
    summaries = initialise_ca(settings, read_secret(settings, confirm=True), actor=actor())
    _show(summaries)
    console.print("Revocation lists: CRL 1 (Organisation CA) and ARL 1 (Root) published, empty (smki crl show)")
    console.print(f"Configuration: {settings.config_path}")


@app.command("show")
def show(as_json: JsonOption = False, as_csv: CsvOption = False, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Show the CA certificates of a home."""
    from smki.services.ca_admin import describe_ca

    opened = open_for_reading(home)
    try:
        _show(describe_ca(opened), as_json=as_json, as_csv=as_csv)
    finally:
        opened.close()


# CA certificate revocation under dual control (issue 5).
app.add_typer(revoke_cmd.ca_revoke_app, name="revoke")
