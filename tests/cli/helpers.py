"""Running the real ``smki`` command in a subprocess, as an operator would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smki.services.device_issuance import DeviceOutcome

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


def ctrl_c_answered() -> None:
    """``preexec_fn`` for a ``smki`` that a test will Ctrl-C: SIGINT back to its default.

    A process started in the background by a non-interactive shell (``cmd &``, ``nohup``, as a CI
    runner may start the suite) inherits SIGINT *ignored*, and Python then installs no
    ``KeyboardInterrupt`` handler: the command would never see the test's Ctrl-C.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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


@contextmanager
def ctrl_c_on_chunk(number: int) -> Iterator[None]:
    """Within: Ctrl-C as a batch's CLI writer is handed committed chunk ``number`` (1-based), so that
    chunk is committed and audited but its certificates are never written out."""
    from smki.interfaces.cli.issue_cmd import BatchWriter

    real_call = BatchWriter.__call__
    calls: list[int] = []

    def interrupted(self: BatchWriter, outcomes: Sequence[DeviceOutcome]) -> None:
        calls.append(len(outcomes))
        if len(calls) == number:
            raise KeyboardInterrupt
        real_call(self, outcomes)

    BatchWriter.__call__ = interrupted  # type: ignore[method-assign]
    try:
        yield
    finally:
        BatchWriter.__call__ = real_call  # type: ignore[method-assign]
