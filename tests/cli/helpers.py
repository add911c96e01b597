"""Running the real ``smki`` command in a subprocess, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PASSPHRASE = "test-passphrase-123"


@dataclass
class Result:
    code: int
    out: str
    err: str


def smki_env(database_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "SMKI_KEY_PASSPHRASE": PASSPHRASE,
        "SMKI_DATABASE_URL": database_url,
        "SMKI_ACTOR": "operator:test",
        "COLUMNS": "200",
    })
    env.pop("SMKI_DEBUG", None)
    env.update(extra)
    return env


def smki(args: list[str], env: dict[str, str], timeout: float = 120) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "smki.interfaces.cli.main", *args],
        capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def openssl_verify(root: Path, intermediate: Path, *certs: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(intermediate), *map(str, certs)],
        capture_output=True, text=True,
    )
