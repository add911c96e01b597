"""``smki serve`` fails fast (issue 11, point 1): before any port is bound it opens the database (at
this smki's schema revision), every CA key and the listener credential. Each fault is one line
``error: <code>: <message>``, a non-zero exit within seconds, and nothing listening."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from smki.keys.file import FileKeyBackend
from smki.services.context import Home
from tests.api.conftest import SECRET
from tests.api.serve_process import ServeProcess, write_api_config


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _nothing_listens(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _serve(home: Path, secret: bytes) -> tuple[int, str, str, int, float]:
    """Run ``smki serve`` (via the CLI entry point); (exit code, stdout, stderr, gateway port, seconds)."""
    port, spoti = _free_port(), _free_port()
    env = {**os.environ, "SMKI_KEY_PASSPHRASE": secret.decode(), "COLUMNS": "200"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "from smki.interfaces.cli.main import run; run()", "serve", "--home", str(home),
         "--gateway", f"127.0.0.1:{port}", "--spoti", f"127.0.0.1:{spoti}"],
        capture_output=True, text=True, env=env, timeout=60)
    return done.returncode, done.stdout, done.stderr, port, time.monotonic() - started


def _assert_refused(home: Path, secret: bytes, code: str) -> str:
    rc, out, err, port, seconds = _serve(home, secret)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc != 0, (out, err)
    assert "listening" not in out
    assert "Traceback" not in err
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith(f"error: {code}: "), lines[0]
    assert seconds < 30
    assert _nothing_listens(port)
    return lines[0]


def test_wrong_passphrase_is_refused_before_listening(home: Home) -> None:
    write_api_config(home.settings.home)
    line = _assert_refused(home.settings.home, b"not-the-passphrase", "key.locked")
    assert "root" in line  # the first key it opens


def test_a_key_that_does_not_match_its_certificate(home: Home, tmp_path: Path) -> None:
    write_api_config(home.settings.home)
    other = FileKeyBackend(tmp_path / "other-keys", SECRET)
    other.generate("device-ca")
    shutil.copy(tmp_path / "other-keys" / "device-ca.key.pem", home.settings.keys_dir / "device-ca.key.pem")
    line = _assert_refused(home.settings.home, SECRET, "key.mismatch")
    assert "device-ca" in line


@pytest.mark.parametrize("damage", ["empty", "truncated", "overwritten"])
def test_a_damaged_key_file_is_not_called_a_wrong_passphrase(home: Home, damage: str) -> None:
    """A truncated or overwritten key file was ``key.locked: … wrong passphrase?``: an operator would
    retry passphrases rather than restore the file."""
    write_api_config(home.settings.home)
    path = home.settings.keys_dir / "device-ca.key.pem"
    pem = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": pem[:200], "overwritten": b"garbage\n"}[damage])
    line = _assert_refused(home.settings.home, SECRET, "key.corrupt")
    assert str(path) in line and "restore it from a backup" in line


def test_a_missing_key(home: Home) -> None:
    write_api_config(home.settings.home)
    (home.settings.keys_dir / "organisation-ca.key.pem").unlink()
    _assert_refused(home.settings.home, SECRET, "key.missing")


@pytest.mark.parametrize(("revision", "code"), [("9999", "store.schema-unknown"), ("0005", "store.schema-outdated")])
def test_a_database_at_another_schema_revision(home: Home, revision: str, code: str) -> None:
    write_api_config(home.settings.home)
    with home.store.engine.begin() as conn:
        conn.execute(text(f"UPDATE alembic_version SET version_num = '{revision}'"))
    _assert_refused(home.settings.home, SECRET, code)


def test_an_unreachable_database(home: Home, tmp_path: Path) -> None:
    config = home.settings.home / "smki.toml"
    port = _free_port()
    url = (f"postgresql+psycopg://postgres@127.0.0.1:{port}/nothing" if "postgresql" in str(home.store.engine.url)
           else f"sqlite:///{tmp_path}/no/such/dir/smki.db")
    lines = [line for line in config.read_text().splitlines() if not line.startswith("database-url")]
    config.write_text(f'database-url = "{url}"\n' + "\n".join(lines) + "\n")
    write_api_config(home.settings.home)
    _assert_refused(home.settings.home, SECRET, "store.unavailable")


def test_an_unreadable_listener_key(home: Home) -> None:
    write_api_config(home.settings.home)
    server = ServeProcess(home.settings.home, SECRET)  # first start: issues the listener credential
    server.stop()
    (home.settings.home / "api" / "server-key.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n")
    _assert_refused(home.settings.home, SECRET, "listener.credential-invalid")


def test_a_port_in_use_is_one_line_too(home: Home) -> None:
    write_api_config(home.settings.home)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "SMKI_KEY_PASSPHRASE": SECRET.decode(), "COLUMNS": "200"}
        done = subprocess.run(
            [sys.executable, "-c", "from smki.interfaces.cli.main import run; run()", "serve",
             "--home", str(home.settings.home), "--gateway", f"127.0.0.1:{port}", "--no-spoti"],
            capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: listen.unavailable: "), done.stderr


def test_good_settings_still_start(home: Home) -> None:
    write_api_config(home.settings.home)
    server = ServeProcess(home.settings.home, SECRET)
    try:
        assert server.process.poll() is None
    finally:
        server.stop()
