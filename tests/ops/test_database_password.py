"""A database password is never written into ``smki.toml`` and never taken from a command line.

``smki.toml`` is backed up, copied to a second node and read by whoever administers the home; a
command line stays in shell history and ``ps`` shows it to every user of the machine. So
``smki ca init --database-url`` and ``smki backup restore --database-url`` refuse a URL that holds a
password (one line, exit 2, the password not repeated), and what smki writes into ``smki.toml``
(``ca init`` from a URL it was handed programmatically, a restore into a PostgreSQL database) names
the database without it: the password comes from ``SMKI_DATABASE_URL`` / ``SMKI_DATABASE_URL_FILE``
or libpq's ``~/.pgpass``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from smki.config import (
    Settings,
    database_url_password,
    database_url_without_password,
    load_settings,
    write_default_config,
)
from tests.cli.helpers import smki, smki_env

SECRET = "s3cret-Pw:@/%"
WITH_PASSWORD = f"postgresql+psycopg://smki:{quote(SECRET, safe='')}@db.example:5433/smki?sslmode=require"
IN_QUERY = f"postgresql+psycopg://smki@db.example/smki?password={quote(SECRET, safe='')}&sslmode=require"


def _usage_error_without_the_password(result_code: int, out: str, err: str) -> None:
    assert result_code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert "--database-url" in err and "password" in err and "Traceback" not in err
    assert SECRET not in out + err and quote(SECRET, safe="") not in out + err


@pytest.mark.parametrize("url", [WITH_PASSWORD, IN_QUERY], ids=["userinfo", "query"])
def test_ca_init_refuses_a_password_on_the_command_line(tmp_path: Path, url: str) -> None:
    home = tmp_path / "home"
    result = smki(["ca", "init", "--home", str(home), "--database-url", url], smki_env(""))
    _usage_error_without_the_password(result.code, result.out, result.err)
    assert not home.exists()


def test_backup_restore_refuses_a_password_on_the_command_line(tmp_path: Path) -> None:
    home = tmp_path / "restored"
    result = smki(["backup", "restore", str(tmp_path / "any.tar.gz"), "--home", str(home),
                   "--database-url", WITH_PASSWORD], smki_env(""))
    _usage_error_without_the_password(result.code, result.out, result.err)
    assert not home.exists()


@pytest.mark.parametrize("url", [WITH_PASSWORD, IN_QUERY], ids=["userinfo", "query"])
def test_the_written_smki_toml_names_the_database_without_its_password(tmp_path: Path, url: str) -> None:
    """A URL handed to the service (not from the environment) is written without its password; the
    rest of it — user, host, port, database, other parameters — as given."""
    path = write_default_config(Settings(home=tmp_path, database_url=url))
    text = path.read_text(encoding="utf-8")
    assert SECRET not in text and quote(SECRET, safe="") not in text
    written = tomllib.loads(text)["database-url"]
    assert written == database_url_without_password(url)
    parsed = make_url(written)
    assert (parsed.username, parsed.host, parsed.database, parsed.query.get("sslmode")) == (
        "smki", "db.example", "smki", "require")
    assert load_settings(tmp_path).database_url == written


def test_a_url_from_the_environment_is_still_not_written(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={"SMKI_DATABASE_URL": WITH_PASSWORD})
    text = write_default_config(settings).read_text(encoding="utf-8")
    assert "db.example" not in text and SECRET not in text


_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=20)


@given(password=_TEXT, user=st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
       database=st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), in_query=st.booleans(),
       port=st.none() | st.integers(1, 65535))
def test_without_password_removes_the_password_and_keeps_the_rest(password: str, user: str, database: str,
                                                                  in_query: bool, port: int | None) -> None:
    where = "" if port is None else f":{port}"
    url = (f"postgresql+psycopg://{user}@h{where}/{database}?password={quote(password, safe='')}&application_name=x"
           if in_query else
           f"postgresql+psycopg://{user}:{quote(password, safe='')}@h{where}/{database}?application_name=x")
    assert database_url_password(url) == password
    stripped = database_url_without_password(url)
    assert database_url_password(stripped) == ""
    before, after = make_url(url), make_url(stripped)
    assert (after.drivername, after.username, after.host, after.port, after.database) == (
        before.drivername, before.username, before.host, before.port, before.database)
    assert dict(after.query) == {"application_name": "x"}


def test_a_url_without_a_password_is_written_as_given() -> None:
    for url in ("sqlite:////tmp/x.db", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"):
        assert database_url_password(url) == ""
        assert database_url_without_password(url) == url


def test_config_check_warns_of_a_password_left_in_smki_toml(tmp_path: Path) -> None:
    """A home written before smki kept passwords out of smki.toml still checks OK, with one warning."""
    (tmp_path / "smki.toml").write_text(f'database-url = "{WITH_PASSWORD}"\n', encoding="utf-8")
    result = smki(["config", "check", "--home", str(tmp_path)], smki_env(""))
    assert result.code == 0, result.err
    assert result.err.startswith("warning: database-url in smki.toml holds a password")
    assert len(result.err.strip().splitlines()) == 1 and SECRET not in result.err
    (tmp_path / "smki.toml").write_text(f'database-url = "{database_url_without_password(WITH_PASSWORD)}"\n',
                                        encoding="utf-8")
    quiet = smki(["config", "check", "--home", str(tmp_path)], smki_env(""))
    assert quiet.code == 0 and quiet.err == "", quiet.err


def test_a_backup_never_carries_a_password_left_in_smki_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An older home's smki.toml with a password in database-url is archived without it (the rest of
    the file as it lies), the manifest says so, and the archive verifies."""
    import json
    import tarfile

    from smki.services import backup
    from smki.services.ca_admin import initialise_ca

    home = tmp_path / "home"
    initialise_ca(Settings(home=home), b"backup-passphrase", actor="admin")
    config = home / "smki.toml"
    original = config.read_text(encoding="utf-8")
    config.write_text(f'database-url = "{WITH_PASSWORD}"\n' + original.replace('database-url = ""\n', ""),
                      encoding="utf-8")
    # the environment's URL wins over smki.toml's: the home's own SQLite database is backed up
    monkeypatch.setenv("SMKI_DATABASE_URL", f"sqlite:///{(home / 'smki.db').resolve()}")
    archive = tmp_path / "b.tar.gz"
    report = backup.create_backup(home, archive)
    with tarfile.open(archive) as tar:
        archived = tar.extractfile("smki.toml").read().decode()  # type: ignore[union-attr]
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert SECRET not in archived and quote(SECRET, safe="") not in archived
    assert tomllib.loads(archived)["database-url"] == database_url_without_password(WITH_PASSWORD)
    assert archived.replace(f'database-url = "{database_url_without_password(WITH_PASSWORD)}"\n', "") == (
        original.replace('database-url = ""\n', ""))
    assert {"path": "smki.toml: the password in database-url", "why": "a database password (never backed up)"} in (
        manifest["excluded"])
    assert report.manifest == manifest
    backup.verify_backup(archive)
    assert WITH_PASSWORD in config.read_text(encoding="utf-8")  # the home itself is left as it is


def test_serve_warns_of_a_password_in_smki_toml_or_the_environment(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """At start-up ``smki serve`` logs one warning for a password in smki.toml's database-url and one
    for a URL with a password (in either form) in its environment; never the password itself."""
    import logging

    from smki.interfaces.cli.serve_cmd import _warn_of_secrets_in_the_environment

    config = tmp_path / "smki.toml"
    config.write_text(f'database-url = "{WITH_PASSWORD}"\n', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="smki.serve"):
        _warn_of_secrets_in_the_environment({"SMKI_DATABASE_URL": IN_QUERY}, config)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("SMKI_DATABASE_URL is given in smki serve's environment")
    assert messages[1].startswith(f"database-url in {config} holds a password")
    assert not any(SECRET in m or quote(SECRET, safe="") in m for m in messages)
    caplog.clear()
    config.write_text(f'database-url = "{database_url_without_password(WITH_PASSWORD)}"\n', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="smki.serve"):
        _warn_of_secrets_in_the_environment({}, config)
        _warn_of_secrets_in_the_environment({}, tmp_path / "none.toml")
    assert caplog.records == []
