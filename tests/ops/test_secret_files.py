"""Secrets from files (``<VARIABLE>_FILE``) and systemd credentials (``$CREDENTIALS_DIRECTORY/<VARIABLE>``).

Production runs smki under systemd, whose ``LoadCredential=`` hands a service its secrets as files;
a variable naming a file keeps the secret itself out of ``/proc/PID/environ``. The file is held to
what a key file is (``key.permissions``): a regular file only its owner may read. Each refusal is one
line with a dotted code; giving one secret two ways is refused rather than one silently winning.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from smki.ca.devcsr import make_organisation_csr
from smki.domain import RemotePartyRole, Usage
from smki.errors import ConfigError
from smki.settings_model import environment, file_env_names, secret_env_names
from tests.cli.helpers import PASSPHRASE, Result, openssl_verify, smki, smki_env

ENTITY = bytes.fromhex("90B3D51F30010000")


def _secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _file_env(database_url: str, **extra: str) -> dict[str, str]:
    """The CLI's environment with no secret in it: each comes from a file ``extra`` names."""
    env = smki_env(database_url, **extra)
    for name in (*secret_env_names(), "SMKI_DATABASE_URL"):
        if name not in extra:
            env.pop(name, None)
    return env


def _one_line_error(result: Result, code: str) -> None:
    assert result.code == 1, (result.out, result.err)
    assert result.err.startswith(f"error: {code}: "), result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert "Traceback" not in result.err


def test_every_secret_variable_may_come_from_a_file() -> None:
    assert set(secret_env_names()) == {"SMKI_KEY_PASSPHRASE", "SMKI_PKCS11_PIN", "SMKI_P12_PASSWORD"}
    assert set(file_env_names()) == set(secret_env_names()) | {"SMKI_DATABASE_URL"}


def test_cli_commands_take_the_passphrase_and_database_url_from_files(tmp_path: Path, database_url: str) -> None:
    """``ca init`` and ``issue org`` sign with the passphrase read from ``SMKI_KEY_PASSPHRASE_FILE``
    (trailing newline removed) and reach the database ``SMKI_DATABASE_URL_FILE`` names; the URL read
    from a file is not copied into the new ``smki.toml``, and ``config show`` names the file."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    env = _file_env("", SMKI_KEY_PASSPHRASE_FILE=str(_secret_file(secrets / "pass", PASSPHRASE + "\n")),
                    SMKI_DATABASE_URL_FILE=str(_secret_file(secrets / "db", database_url + "\n")))
    home = tmp_path / "home"
    made = smki(["ca", "init", "--home", str(home)], env)
    assert made.code == 0, made.err
    assert database_url not in (home / "smki.toml").read_text()
    (tmp_path / "org.csr").write_bytes(x509.load_der_x509_csr(
        make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.KA)).public_bytes(Encoding.PEM))
    issued = smki(["issue", "org", str(tmp_path / "org.csr"), "--out", str(tmp_path / "org.pem"),
                   "--home", str(home)], env)
    assert issued.code == 0, issued.err
    verified = openssl_verify(home / "root.pem", home / "organisation-ca.pem", tmp_path / "org.pem")
    assert verified.returncode == 0, verified.stderr
    shown = smki(["config", "show", "--json", "--home", str(home)], env)
    assert shown.code == 0, shown.err
    by_key = {row["key"]: (row["value"], row["from"]) for row in json.loads(shown.out)}
    assert by_key["key-passphrase"] == ("[redacted]", "file SMKI_KEY_PASSPHRASE_FILE")
    assert by_key["database-url"][1] == "file SMKI_DATABASE_URL_FILE"
    assert PASSPHRASE not in shown.out
    # The same passphrase with a wrong one in the file: refused as a wrong passphrase, so the file is what is used.
    _secret_file(secrets / "pass", "not-the-passphrase\n")
    _one_line_error(smki(["crl", "publish", "--home", str(home)], env), "key.locked")


def test_a_systemd_credential_named_after_the_variable_is_read(tmp_path: Path, database_url: str) -> None:
    """``LoadCredential=SMKI_KEY_PASSPHRASE:/etc/smki/key-passphrase`` puts the file in
    ``$CREDENTIALS_DIRECTORY`` (mode 0400); with nothing else set, commands sign with it."""
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o500)
    _secret_file(credentials / "SMKI_KEY_PASSPHRASE", PASSPHRASE, 0o400)
    env = _file_env(database_url, CREDENTIALS_DIRECTORY=str(credentials), SMKI_DATABASE_URL=database_url)
    home = tmp_path / "home"
    made = smki(["ca", "init", "--home", str(home)], env)
    assert made.code == 0, made.err
    published = smki(["crl", "publish", "--home", str(home)], env)
    assert published.code == 0, published.err
    shown = smki(["config", "show", "--json", "--home", str(home)], env)
    assert ("[redacted]", "credential SMKI_KEY_PASSPHRASE") in {
        (row["value"], row["from"]) for row in json.loads(shown.out) if row["key"] == "key-passphrase"}


@pytest.mark.parametrize(("setup", "code"), [
    ("missing", "secret.file-missing"),
    ("directory", "secret.file-unreadable"),
    ("empty", "secret.file-empty"),
    ("newline-only", "secret.file-empty"),
    ("group-readable", "secret.file-permissions"),
    ("others-readable", "secret.file-permissions"),
    ("group-writable", "secret.file-permissions"),
])
def test_a_bad_secret_file_is_refused_in_one_line(tmp_path: Path, setup: str, code: str) -> None:
    path = tmp_path / "secret"
    if setup == "directory":
        path.mkdir(mode=0o700)
    elif setup != "missing":
        text = {"empty": "", "newline-only": "\n"}.get(setup, PASSPHRASE)
        mode = {"group-readable": 0o640, "others-readable": 0o604, "group-writable": 0o620}.get(setup, 0o600)
        _secret_file(path, text, mode)
    environ = {"SMKI_KEY_PASSPHRASE_FILE": str(path)}
    with pytest.raises(ConfigError) as refused:
        environment("key-passphrase", environ)
    assert refused.value.code == code
    assert "SMKI_KEY_PASSPHRASE_FILE" in refused.value.message and str(path) in refused.value.message
    if setup.endswith("able") and setup != "unreadable":
        assert "chmod 600" in refused.value.message
    result = smki(["crl", "publish", "--home", str(tmp_path / "home")],
                  _file_env("sqlite:///unused.db", SMKI_KEY_PASSPHRASE_FILE=str(path)))
    _one_line_error(result, code)


def test_one_secret_given_two_ways_is_refused(tmp_path: Path) -> None:
    path = _secret_file(tmp_path / "secret", PASSPHRASE)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    _secret_file(credentials / "SMKI_P12_PASSWORD", "p12-from-credential", 0o400)
    for environ in ({"SMKI_KEY_PASSPHRASE": PASSPHRASE, "SMKI_KEY_PASSPHRASE_FILE": str(path)},
                    {"SMKI_P12_PASSWORD": "p12", "CREDENTIALS_DIRECTORY": str(credentials)},
                    {"SMKI_P12_PASSWORD_FILE": str(path), "CREDENTIALS_DIRECTORY": str(credentials)}):
        key = "key-passphrase" if "SMKI_KEY_PASSPHRASE" in environ else "p12-password"
        with pytest.raises(ConfigError) as refused:
            environment(key, environ)
        assert refused.value.code == "secret.conflict", environ
    both = _file_env("sqlite:///unused.db", SMKI_KEY_PASSPHRASE=PASSPHRASE, SMKI_KEY_PASSPHRASE_FILE=str(path))
    result = smki(["crl", "publish", "--home", str(tmp_path / "home")], both)
    _one_line_error(result, "secret.conflict")
    assert "SMKI_KEY_PASSPHRASE and SMKI_KEY_PASSPHRASE_FILE" in result.err


def test_the_plain_variable_still_works(tmp_path: Path) -> None:
    """Backwards compatible: the variable alone, or a credential directory without this secret."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    assert environment("key-passphrase", {"SMKI_KEY_PASSPHRASE": "plain"}) == "plain"
    assert environment("key-passphrase", {"SMKI_KEY_PASSPHRASE": "plain",
                                          "CREDENTIALS_DIRECTORY": str(credentials)}) == "plain"
    assert environment("key-passphrase", {"SMKI_KEY_PASSPHRASE_FILE": ""}) == ""


def test_the_value_read_is_not_put_in_the_environment(tmp_path: Path) -> None:
    path = _secret_file(tmp_path / "secret", "from-the-file\n")
    before = dict(os.environ)
    assert environment("p12-password", {"SMKI_P12_PASSWORD_FILE": str(path)}) == "from-the-file"
    assert dict(os.environ) == before


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1)
       .filter(lambda text: text.rstrip("\r\n") == text))
def test_a_secret_file_holds_the_value_exactly_but_its_trailing_newline(value: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = _secret_file(Path(directory) / "secret", "")
        for ending in ("", "\n", "\r\n"):
            path.write_bytes((value + ending).encode())
            assert environment("key-passphrase", {"SMKI_KEY_PASSPHRASE_FILE": str(path)}) == value


def test_a_systemd_credential_is_not_held_to_the_owner_only_mode(tmp_path: Path) -> None:
    """systemd restricts a credential to the unit's user itself, possibly with an ACL that shows as
    group bits (0440): that mode is accepted for a credential, and still refused for a _FILE."""
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o500)
    credential = _secret_file(credentials / "SMKI_KEY_PASSPHRASE", PASSPHRASE + "\n", 0o440)
    assert environment("key-passphrase", {"CREDENTIALS_DIRECTORY": str(credentials)}) == PASSPHRASE
    with pytest.raises(ConfigError) as refused:
        environment("key-passphrase", {"SMKI_KEY_PASSPHRASE_FILE": str(credential)})
    assert refused.value.code == "secret.file-permissions"
