"""A live ``smki serve`` for the browser tests, and SMKI credentials issued the way an operator does.

The browser tests must see exactly what a user sees: the real listeners (mutual TLS against the
credentials CA, both routes, the Portal mounted on each) in their own process, and credentials
from the ``smki`` command line as PKCS#12 files, which Chromium then presents per origin. Nothing
here reaches into the server: the test only shares the home directory (and its database) with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from smki.domain import Route
from smki.services.context import Home
from tests.api.serve_process import ServeProcess, write_api_config

P12_PASSWORD = "portal-p12-password"


def smki_cli(home: Home, secret: bytes, *args: str) -> str:
    """Run the ``smki`` command line (a separate process, as an operator would) and return its output."""
    env = {**os.environ, "SMKI_KEY_PASSPHRASE": secret.decode(), "SMKI_P12_PASSWORD": P12_PASSWORD,
           "SMKI_ACTOR": "operator:portal-test", "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "smki.interfaces.cli.main", *args,
                           "--home", str(home.settings.home)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def aro_credential(home: Home, secret: bytes, aro_id: str, directory: Path) -> Path:
    """``smki aro credential issue ARO --out …``: the ARO's PKCS#12 (password :data:`P12_PASSWORD`)."""
    out = directory / f"aro-{aro_id}.p12"
    smki_cli(home, secret, "aro", "credential", "issue", aro_id, "--out", str(out))
    return out


def staff_credential(home: Home, secret: bytes, staff_id: str, directory: Path) -> Path:
    """``smki credential staff ID --out …``: an RA staff member's PKCS#12 for the staff pages."""
    out = directory / f"staff-{staff_id}.p12"
    smki_cli(home, secret, "credential", "staff", staff_id, "--out", str(out))
    return out


class LiveSmki:
    """``smki serve`` on ephemeral ports of 127.0.0.1 with both listeners; ``url(route)`` is https."""

    def __init__(self, process: ServeProcess) -> None:
        self.process = process

    def url(self, route: Route) -> str:
        return self.process.url(route)


@contextmanager
def live_smki(home: Home, secret: bytes) -> Iterator[LiveSmki]:
    """Start ``smki serve`` for ``home`` (capacity limits off, in-process batch signing), stop it after.

    The ``[api]`` section is appended to the home's ``smki.toml`` once; the server is started after
    the test has prepared the register, and the test reads the same database afterwards.
    """
    config = home.settings.home / "smki.toml"
    if "[api]" not in config.read_text().splitlines():
        write_api_config(home.settings.home)
    process = ServeProcess(home.settings.home, secret, "--batch-workers", "0")
    try:
        yield LiveSmki(process)
    finally:
        process.stop()
