"""SMKI credentials on the command line: ``smki credential …``, ``smki aro credential issue``,
``smki system credential issue``.

Credentials are issued by the CA operator at the console (they need the key secret: the
credentials CA key lives in the same key backend as the CA keys). The PKCS#12 password comes from
``SMKI_P12_PASSWORD`` (or the file ``SMKI_P12_PASSWORD_FILE`` names, or a systemd credential) or a
prompt, never from an argument.

Registration: ``credential`` and ``system`` are groups of ``smki.interfaces.cli.main``;
``aro credential`` is added by ``aro_cmd``.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from smki.errors import ConfigError, SmkiError
from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, actor, console, open_for_reading, open_for_signing
from smki.interfaces.cli.output import CsvOption, JsonOption, emit_rows
from smki.settings_model import env_name, environment

P12_PASSWORD_ENV = env_name("p12-password")

app = typer.Typer(help="SMKI credentials: the TLS client certificates of AROs, systems and RA staff.",
                  no_args_is_help=True)
aro_app = typer.Typer(help="An ARO's SMKI credential.", no_args_is_help=True)
system_app = typer.Typer(help="Authorised Systems that use the web services.", no_args_is_help=True)
system_credential_app = typer.Typer(help="An Authorised System's SMKI credential.", no_args_is_help=True)
system_app.add_typer(system_credential_app, name="credential")

OutOption = Annotated[Path, typer.Option("--out", help="Where to write the PKCS#12 file.")]


class Kind(StrEnum):
    """The kinds of credential ``credential list --kind`` filters on."""

    ca = "ca"
    server = "server"
    aro = "aro"
    system = "system"
    staff = "staff"


def _password() -> bytes:
    from smki.observability.logs import register_secret

    value = str(environment("p12-password"))
    if value:
        register_secret(value)
        return value.encode()
    if not os.isatty(0):
        raise ConfigError("credential.password-missing", f"set {P12_PASSWORD_ENV} or {P12_PASSWORD_ENV}_FILE "
                          "(no terminal to prompt on)")
    text: str = typer.prompt("PKCS#12 password", hide_input=True, confirmation_prompt=True)
    register_secret(text)
    return text.encode()


def _reserve(out: Path) -> int:
    """Create ``out`` (mode 0600, never over an existing file) before anything is issued, so that a
    file that cannot be written refuses the command rather than leave a credential recorded and
    audited whose key went nowhere."""
    try:
        return os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SmkiError("credential.exists", f"{out} exists; not overwriting a credential file") from None


def _issue(home: Path, kind: str, name: str, out: Path, party: str | None = None, aro: str | None = None,
           days: int | None = None) -> None:
    from datetime import timedelta

    from smki.services.credentials import issue_credential

    password = _password()
    fd = _reserve(out)
    try:
        with os.fdopen(fd, "wb") as handle:
            opened = open_for_signing(home)
            try:
                issued = issue_credential(opened, kind, name, password=password, actor=actor(), party_id=party,
                                          aro_id=aro, lifetime=None if days is None else timedelta(days=days))
            finally:
                opened.close()
            handle.write(issued.pkcs12)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    console.print(f"issued {kind} credential {issued.serial} for {issued.certificate.subject.rfc4514_string()}, "
                  f"valid until {issued.certificate.not_valid_after_utc:%Y-%m-%d}: {out}",
                  highlight=False, soft_wrap=True)


Days = Annotated[int | None, typer.Option("--days", min=1, max=3660, help="Validity in days (default 366).")]


@aro_app.command("issue")
def aro_issue(aro_id: Annotated[str, typer.Argument(help="The ARO's id in the register.")], out: OutOption,
               days: Days = None, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Issue an ARO's credential (CN = ARO id, O = its Party) as PKCS#12."""
    _issue(home, "aro", aro_id, out, days=days)


@system_credential_app.command("issue")
def system_issue(
    name: Annotated[str, typer.Argument(help="The Authorised System's name (its credential's subject).")],
    party: Annotated[str, typer.Option("--party", help="The Party the system acts for.")],
    aro: Annotated[str, typer.Option("--aro", help="The Party's ARO answerable for the system.")],
    out: OutOption,
    days: Days = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Issue an Authorised System's credential (CN = system, O = Party) as PKCS#12.

    The system acts under the named ARO's authority: suspending that ARO stops the system too.
    """
    _issue(home, "system", name, out, party=party, aro=aro, days=days)


@app.command("staff")
def staff_issue(staff_id: Annotated[str, typer.Argument(help="The RA staff member's id.")], out: OutOption,
                 days: Days = None, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Issue an RA staff member's credential (for the Portal's staff pages) as PKCS#12."""
    _issue(home, "staff", staff_id, out, days=days)


@app.command("init")
def init(home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Create the credentials CA (its key is named credentials-ca) if it does not exist; print its certificate."""
    from smki.services.credentials import ensure_credentials_ca

    opened = open_for_signing(home)
    try:
        cert = ensure_credentials_ca(opened, actor=actor())
    finally:
        opened.close()
    console.print(f"credentials CA {cert.subject.rfc4514_string()} serial {cert.serial_number:032x}: "
                  f"{home / 'credentials-ca.pem'}", highlight=False, soft_wrap=True)


@app.command("revoke")
def revoke(serial: Annotated[str, typer.Argument(help="The credential's serial, in full (from 'credential list').")],
           reason: Annotated[str, typer.Option("--reason", help="Why (audited).")] = "",
           home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Revoke a credential: every listener refuses it from the next request on."""
    from smki.services.credentials import revoke_credential

    opened = open_for_reading(home)
    try:
        record = revoke_credential(opened, serial, actor=actor(), reason=reason)
    finally:
        opened.close()
    console.print(f"revoked {record.kind} credential {record.serial} ({record.name})", highlight=False)


@app.command("list")
def list_(kind: Annotated[Kind | None, typer.Option("--kind", help="Only credentials of this kind.")] = None,
          as_json: JsonOption = False, as_csv: CsvOption = False, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """The credentials issued, with their status (serials in full: 'credential revoke' takes them)."""
    from smki.services.credentials import list_credentials

    opened = open_for_reading(home)
    try:
        rows = list_credentials(opened, kind.value if kind else None)
    finally:
        opened.close()
    emit_rows([{"serial": r.serial, "kind": r.kind, "name": r.name, "party": r.party_id, "status": r.status,
                "valid_until": r.not_after} for r in rows], as_json=as_json, as_csv=as_csv,
              columns=("serial", "kind", "name", "party", "status", "valid_until"))
