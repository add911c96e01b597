"""The key passphrase never reaches the processes ``smki serve`` starts by ``exec`` (keys-qa).

The server's forkserver, its resource tracker and the signing workers forked from it get the
passphrase as a pickled argument through a pipe; the environment they were started with
(``/proc/PID/environ``, readable by the same user and root for the life of each process) must not
carry ``SMKI_KEY_PASSPHRASE`` too, and no command line (``ps``) may show it. Server processes made
by ``fork`` share the parent's own environment block: that one cannot be scrubbed short of ``exec``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from smki.services.context import Home
from tests.api.conftest import SECRET
from tests.api.serve_process import ServeProcess, write_api_config


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(status.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found[1:]


def _read(pid: int, name: str) -> bytes:
    try:
        return (Path("/proc") / str(pid) / name).read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs: its ``/proc`` entry exists and it is not a zombie (whose environ reads empty)."""
    stat = _read(pid, "stat")
    return bool(stat) and stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def _descendants_once(root: int, enough: Callable[[list[int]], bool]) -> list[int]:
    """``root``'s descendants once ``enough`` of them have started (or after 20 s, as they are then)."""
    deadline = time.monotonic() + 20
    pids = _descendants(root)
    while not enough(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
        pids = _descendants(root)
    return pids


def _environments(pids: Iterable[int]) -> Iterator[tuple[int, bytes]]:
    """Each process's ``/proc/PID/environ``, leaving out one that exited (or is a zombie) since it was listed."""
    for pid in pids:
        environ = _read(pid, "environ")
        if environ or _alive(pid):
            yield pid, environ


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_no_exec_started_child_of_the_server_carries_the_passphrase(home: Home) -> None:
    """Nor the database URL given as a plain variable: it may hold the database's password."""
    write_api_config(home.settings.home)
    url = home.settings.resolved_database_url
    env = {**os.environ, "SMKI_KEY_PASSPHRASE": SECRET.decode(), "SMKI_DATABASE_URL": url}
    server = ServeProcess(home.settings.home, SECRET, "--workers", "2", "--batch-workers", "1", env=env)
    try:
        def execed_of(pids: list[int]) -> list[int]:
            return [pid for pid in pids if b"multiprocessing" in _read(pid, "cmdline")]

        # a forkserver and a resource tracker per server process
        execed = execed_of(_descendants_once(server.process.pid, lambda pids: len(execed_of(pids)) >= 4))
        assert execed, "no forkserver started"
        for pid in _descendants(server.process.pid):
            assert SECRET not in _read(pid, "cmdline"), pid
        for pid, environ in _environments(execed):
            assert environ and b"SMKI_KEY_PASSPHRASE" not in environ and SECRET not in environ, pid
            assert b"SMKI_DATABASE_URL" not in environ and url.encode() not in environ, pid
    finally:
        server.stop()
    # the server's own environment still holds it: the log says so, and what to do instead
    assert server.process.stderr is not None
    log = server.process.stderr.read()
    assert "SMKI_KEY_PASSPHRASE is given in smki serve's environment" in log, log[-2000:]
    assert "SMKI_KEY_PASSPHRASE_FILE or a systemd credential" in log
    assert SECRET.decode() not in log


DB_PASSWORD = "db-file-password-4711"


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_serve_given_its_secrets_as_files_keeps_them_out_of_every_process_environment(home: Home,
                                                                                     tmp_path: Path) -> None:
    """``smki serve`` under systemd is given ``SMKI_KEY_PASSPHRASE_FILE`` (and a database URL with a
    password in ``SMKI_DATABASE_URL_FILE``): it starts (every CA key opened with the passphrase read
    from the file), and neither secret is in ``/proc/PID/environ`` of the server, its forked server
    processes, or anything they start, nor on a command line."""
    import os

    from sqlalchemy.engine import make_url

    write_api_config(home.settings.home)
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    passphrase = secrets / "key-passphrase"
    passphrase.write_bytes(SECRET + b"\n")
    passphrase.chmod(0o600)
    url = make_url(home.settings.resolved_database_url)
    if url.get_backend_name() == "postgresql":  # trust authentication: the password is carried, not checked
        url = url.set(password=DB_PASSWORD)
    database = secrets / "database-url"
    database.write_text(url.render_as_string(hide_password=False) + "\n")
    database.chmod(0o600)
    env = {name: value for name, value in os.environ.items()
           if name not in ("SMKI_KEY_PASSPHRASE", "SMKI_DATABASE_URL", "PGPASSWORD")}
    env.update(SMKI_KEY_PASSPHRASE_FILE=str(passphrase), SMKI_DATABASE_URL_FILE=str(database))
    server = ServeProcess(home.settings.home, SECRET, "--workers", "2", "--batch-workers", "1", env=env)
    try:
        # two forked server processes; a forkserver and a resource tracker each
        pids = _descendants_once(server.process.pid, lambda pids: len(pids) >= 2 + 4)
        assert len(pids) >= 2, pids
        for pid, environ in _environments([server.process.pid, *pids]):
            assert environ, pid
            assert SECRET not in environ and b"SMKI_KEY_PASSPHRASE=" not in environ, pid
            assert DB_PASSWORD.encode() not in environ and b"SMKI_DATABASE_URL=" not in environ, pid
            assert b"SMKI_KEY_PASSPHRASE_FILE=" in environ, pid  # the file's name is all they carry
            assert SECRET not in _read(pid, "cmdline") and DB_PASSWORD.encode() not in _read(pid, "cmdline"), pid
    finally:
        server.stop()
    assert server.process.stderr is not None
    assert "smki serve's environment" not in server.process.stderr.read()  # nothing to warn of
