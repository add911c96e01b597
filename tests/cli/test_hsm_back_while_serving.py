"""The HSM goes away under a running ``smki serve`` and comes back: the server must notice both.

SoftHSM (like an HSM client that lost its connection) only sees its tokens again after the module
is started afresh (``C_Finalize``/``C_Initialize``); logging in again in the same process finds no
token, or an empty one, for ever. Before keys-qa, ``/readyz`` stayed 503 until the server was
restarted by hand — the opposite of what key_health promises (keys-qa).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from smki.bench.cluster import stop_group

pytestmark = pytest.mark.parametrize("key_backend", ["pkcs11"], indirect=True)


def _ready(admin: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"{admin}/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait(admin: str, status: int, seconds: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while True:
        code, body = _ready(admin)
        if code == status or time.monotonic() > deadline:
            assert code == status, body
            return body
        time.sleep(0.5)


def test_readyz_follows_the_token_away_and_back(ca_home: Path, env: dict[str, str], tmp_path: Path) -> None:
    tokens = tmp_path / "softhsm-tokens"
    process = subprocess.Popen(
        [sys.executable, "-m", "smki.interfaces.cli.serve_cmd", "--home", str(ca_home), "--gateway",
         "127.0.0.1:0", "--no-spoti", "--admin", "127.0.0.1:0", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True, text=True)
    try:
        assert process.stdout is not None
        admin = ""
        deadline = time.monotonic() + 60
        while not admin and time.monotonic() < deadline:
            found = re.search(r"smki: admin (http://\S+)", process.stdout.readline())
            admin = found.group(1) if found else ""
        assert admin, "no admin listener announced"
        _wait(admin, 200)
        tokens.rename(tmp_path / "tokens-away")  # the HSM goes away
        body = _wait(admin, 503)
        checks = body["checks"]
        assert isinstance(checks, dict) and not checks["ca_keys"]["ok"]
        assert str(checks["ca_keys"]["detail"]).startswith("key."), checks
        (tmp_path / "tokens-away").rename(tokens)  # ... and comes back
        _wait(admin, 200)
    finally:
        if (tmp_path / "tokens-away").exists():
            (tmp_path / "tokens-away").rename(tokens)
        stop_group(process, 20)
    assert process.returncode is not None
    assert "Traceback" not in (process.stderr.read() if process.stderr else "")
    assert os.path.isdir(tokens)
