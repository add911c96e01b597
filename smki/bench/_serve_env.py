"""The environment a benchmark's ``smki serve`` is started with."""

from __future__ import annotations

import os
from pathlib import Path


def passphrase_file_env(directory: Path, passphrase: str) -> dict[str, str]:
    """This process's environment for a bench's ``smki serve``, the passphrase given as production
    gives it (``SMKI_KEY_PASSPHRASE_FILE``, a 0600 file in ``directory``) rather than as a plain
    variable, which the server warns of."""
    path = directory / "bench-key-passphrase"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(passphrase)
    env = {name: value for name, value in os.environ.items() if name != "SMKI_KEY_PASSPHRASE"}
    return {**env, "SMKI_KEY_PASSPHRASE_FILE": str(path)}
