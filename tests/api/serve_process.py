"""Run ``smki serve`` as a subprocess on ephemeral ports (test helper)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from smki.bench.cluster import kill_group, stop_group
from smki.domain import Route

ANNOUNCE = re.compile(r"smki: listening (.*) workers=(\d+) pid=(\d+)")


def write_api_config(home: Path, extra: str = "") -> None:
    config = home / "smki.toml"
    text = config.read_text()
    text += ('\n[api]\ngateway = "127.0.0.1:0"\nspoti = "127.0.0.1:0"\nbatch-poll = 0.05\n'
             '\n[capacity]\nenabled = false\n' + extra)
    config.write_text(text)


class ServeProcess:
    def __init__(self, home: Path, secret: bytes, *args: str, env: dict[str, str] | None = None) -> None:
        """``env``: the whole environment instead of this one with ``SMKI_KEY_PASSPHRASE`` = ``secret``."""
        env = {**os.environ, "SMKI_KEY_PASSPHRASE": secret.decode()} if env is None else env
        self.process = subprocess.Popen(
            [sys.executable, "-m", "smki.interfaces.cli.serve_cmd", "--home", str(home), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = ANNOUNCE.search(line)
        if not match:
            self.process.kill()
            errors = self.process.stderr.read() if self.process.stderr else ""
            raise RuntimeError(f"smki serve did not start: {line!r} {errors}")
        self.urls = dict(part.split("=", 1) for part in match.group(1).split())
        self.wait_ready()

    def url(self, route: Route) -> str:
        return self.urls[route.value]

    def wait_ready(self, timeout: float = 20) -> None:
        import socket

        host, port = self.url(Route.GATEWAY).removeprefix("https://").rsplit(":", 1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((host, int(port)), timeout=1):
                    time.sleep(0.3)  # accepting: the listener is up (the app may still be importing)
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smki serve is not accepting connections")

    def kill(self) -> None:
        """SIGKILL the whole process group: no clean shutdown, as in a crash."""
        kill_group(self.process)

    def stop(self) -> None:
        stop_group(self.process, 20)
