"""The credential commands (run through the ``smki`` command tree) and a PKCS#12 a stock client accepts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import typer
from cryptography.hazmat.primitives.serialization import pkcs12
from typer.testing import CliRunner

from smki.domain import Route
from smki.interfaces.cli import main
from smki.services.context import Home
from smki.store.credentials import credential_reads
from tests.api.conftest import ARO, PARTY, SECRET, LiveListeners


@pytest.fixture
def cli() -> typer.Typer:
    return main.app


def _run(cli: typer.Typer, home: Home, *args: str) -> str:
    env = {"SMKI_KEY_PASSPHRASE": SECRET.decode(), "SMKI_P12_PASSWORD": "p12-secret-pw", "SMKI_ACTOR": "operator:t"}
    result = CliRunner().invoke(cli, [*args, "--home", str(home.settings.home)], env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_issue_list_and_revoke_from_the_command_line(cli: typer.Typer, home: Home, tmp_path: Path,
                                                     live: LiveListeners) -> None:
    assert "credentials CA" in _run(cli, home, "credential", "init")
    out = tmp_path / "aro1.p12"
    assert "issued aro credential" in _run(cli, home, "aro", "credential", "issue", ARO, "--out", str(out))
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    key, cert, extra = pkcs12.load_key_and_certificates(out.read_bytes(), b"p12-secret-pw")
    assert key is not None and cert is not None and len(extra) == 1
    serial = f"{cert.serial_number:032x}"
    system = tmp_path / "sys.p12"
    _run(cli, home, "system", "credential", "issue", "ops-1", "--party", PARTY, "--aro", ARO, "--out", str(system))
    listing = _run(cli, home, "credential", "list")
    assert serial in listing and "ops-1" in listing  # whole serials: 'credential revoke' takes them
    listed = json.loads(_run(cli, home, "credential", "list", "--kind", "system", "--json"))
    assert [(c["name"], c["kind"], c["status"]) for c in listed] == [("ops-1", "system", "active")]
    # curl (OpenSSL) takes the PKCS#12 as it is.
    url = live.url(Route.GATEWAY) + "/api/v1/whoami"
    done = subprocess.run(["curl", "-s", "--cert-type", "P12", "--cert", f"{out}:p12-secret-pw", "--cacert",
                           str(home.settings.home / "credentials-ca.pem"), url], capture_output=True, text=True)
    assert done.returncode == 0 and f'"aro_id":"{ARO}"' in done.stdout, done.stderr
    _run(cli, home, "credential", "revoke", serial, "--reason", "rotated")
    record = credential_reads(home.store).credential(serial)
    assert record is not None and record.status == "revoked"
    refused = subprocess.run(["curl", "-s", "--cert-type", "P12", "--cert", f"{out}:p12-secret-pw", "--cacert",
                              str(home.settings.home / "credentials-ca.pem"), url], capture_output=True, text=True)
    assert '"credential.revoked"' in refused.stdout


def test_the_p12_password_and_the_passphrase_may_come_from_files(cli: typer.Typer, home: Home,
                                                                  tmp_path: Path) -> None:
    """``SMKI_P12_PASSWORD_FILE`` and ``SMKI_KEY_PASSPHRASE_FILE`` (a trailing newline removed): the
    credentials CA is made and the ARO's credential issued with them, and the PKCS#12 opens with the
    file's password."""
    files = {}
    for name, value in (("SMKI_KEY_PASSPHRASE_FILE", SECRET.decode()), ("SMKI_P12_PASSWORD_FILE", "p12-from-file")):
        files[name] = tmp_path / name.lower()
        files[name].write_text(value + "\n")
        files[name].chmod(0o600)
    env: dict[str, str | None] = {"SMKI_KEY_PASSPHRASE": None, "SMKI_P12_PASSWORD": None, "SMKI_ACTOR": "operator:t",
                                  **{name: str(path) for name, path in files.items()}}
    out = tmp_path / "aro1.p12"
    for args in (["credential", "init"], ["aro", "credential", "issue", ARO, "--out", str(out)]):
        result = CliRunner().invoke(cli, [*args, "--home", str(home.settings.home)], env=env)
        assert result.exit_code == 0, (result.output, result.exception)
    key, cert, _ = pkcs12.load_key_and_certificates(out.read_bytes(), b"p12-from-file")
    assert key is not None and cert is not None
