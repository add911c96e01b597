"""A private, throwaway PostgreSQL cluster that checks passwords (``scram-sha-256``).

The suite's PostgreSQL lane runs against a server with *trust* authentication: there a password
is carried but never checked. A test that must show a password really reached the server (e.g.
through ``pg_dump``'s ``PGPASSFILE``) starts one of these: ``initdb`` with a superuser password,
listening only on 127.0.0.1 on a free port, its unix socket inside its own directory, stopped
with ``pg_ctl stop -m immediate``. The server binaries are found as ``scripts/with-postgres.sh``
finds Debian's cluster (the newest ``/usr/lib/postgresql/<version>/bin``), else on ``PATH``.

``initdb`` and ``postgres`` refuse to run as root: run as root (a CI container), the cluster is
run as the ``postgres`` user, in a directory of its own under the system temporary directory
(pytest's ``tmp_path`` is private to root, which that user could not enter).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

START_SECONDS = 15


class Unavailable(Exception):
    """This machine cannot run a private cluster (no server binaries, or no user to run them as)."""


@dataclass
class PrivateCluster:
    """A running cluster: its superuser and password, its port, and how to stop it."""

    bin_dir: Path
    root: Path
    superuser: str
    password: str
    port: int = 0
    run_as: dict[str, Any] = field(default_factory=dict)  # subprocess user/group when we are root
    remove_root: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str, *, password: str | None = None, user: str | None = None) -> str:
        """A SQLAlchemy URL to ``database`` with the password in it (percent-encoded where needed)."""
        return make_url(f"postgresql+psycopg://127.0.0.1:{self.port}/{database}").set(
            username=user or self.superuser, password=self.password if password is None else password,
        ).render_as_string(hide_password=False)

    def _tool(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin_dir / name), *args], capture_output=True, text=True, check=check,
                              cwd=self.root, timeout=START_SECONDS + 5, **self.run_as)

    def init(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        self._own(pwfile)
        try:
            self._tool("initdb", "--pgdata", str(self.data), "--username", self.superuser,
                       "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-sync", "--no-instructions",
                       "--encoding=UTF8", "--locale=C")
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self) -> None:
        """Start on a free port of 127.0.0.1 (another one if that port is taken before the server binds it)."""
        failure = ""
        for _ in range(3):
            self.port = _free_port()
            settings = {"listen_addresses": "'127.0.0.1'", "port": str(self.port),
                        "unix_socket_directories": f"'{self.root}'", "fsync": "off",
                        "synchronous_commit": "off", "full_page_writes": "off", "shared_buffers": "16MB",
                        "max_connections": "40"}
            options = " ".join(f"-c {name}={value}" for name, value in settings.items())
            done = self._tool("pg_ctl", "start", "--pgdata", str(self.data), "--wait",
                              f"--timeout={START_SECONDS}", "--log", str(self.root / "server.log"),
                              "-o", options, check=False)
            if done.returncode == 0:
                return
            failure = (self.root / "server.log").read_text(errors="replace")[-2000:] or done.stderr
        raise RuntimeError(f"the private PostgreSQL cluster did not start:\n{failure}")

    def stop(self) -> None:
        """Stop at once (``-m immediate``: nothing here is worth a checkpoint) and remove what we made."""
        if (self.data / "postmaster.pid").exists():
            self._tool("pg_ctl", "stop", "--pgdata", str(self.data), "-m", "immediate", "--wait", check=False)
        if self.remove_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def _own(self, path: Path) -> None:
        if self.run_as:
            shutil.chown(path, self.run_as["user"], self.run_as["group"])


def server_bin_dir() -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: the newest Debian version, else the ones on ``PATH``."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: [int(part) if part.isdigit() else 0 for part in p.parent.parent.name.split(".")])
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise Unavailable("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: "
                      "apt-get install postgresql (scripts/system-deps.sh)")


def new_cluster(tmp_path: Path, *, superuser: str, password: str) -> PrivateCluster:
    """An initialised (not yet started) cluster; raise :class:`Unavailable` when this machine has none."""
    bin_dir = server_bin_dir()
    for client in ("pg_dump", "pg_restore"):
        if shutil.which(client) is None:
            raise Unavailable(f"{client} is not installed (apt-get install postgresql-client)")
    if os.geteuid() != 0:
        cluster = PrivateCluster(bin_dir, tmp_path, superuser, password)
    else:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("running as root, and there is no 'postgres' user to run initdb as") from None
        root = Path(tempfile.mkdtemp(prefix="smki-pg-"))
        cluster = PrivateCluster(bin_dir, root, superuser, password, remove_root=True,
                                 run_as={"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []})
        cluster._own(root)
    return cluster


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
