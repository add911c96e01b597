"""Throw-away SoftHSM2 tokens for the PKCS#11 backend tests.

SoftHSM reads ``SOFTHSM2_CONF`` and scans its token directory once, when the module is first
initialised in a process; tokens created later are invisible until it is re-initialised. So one
session-scoped fixture creates every token the tests need, in a temporary directory, and points
``SOFTHSM2_CONF`` at it before any test loads the module. Each xdist worker gets its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from smki.keys.pkcs11 import Pkcs11KeyBackend

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
TOKEN = "smki-test"
DOOMED_TOKEN = "smki-doomed"  # deleted from disk by the token-failure test
PIN_TOKEN = "smki-pin"  # its PIN is changed under a live backend
PIN = "7391-0462-smki"  # distinctive, so "the PIN never appears in X" is a meaningful check
SO_PIN = "so-8127-3364"


def find_module() -> str | None:
    override = os.environ.get("SMKI_TEST_PKCS11_MODULE")
    if override:
        return override if Path(override).exists() else None
    return next((path for path in MODULE_CANDIDATES if Path(path).exists()), None)


@dataclass(frozen=True)
class SoftHsm:
    """Where the throw-away tokens live and how to reach them."""

    module: str
    conf: Path
    token_dir: Path
    token: str = TOKEN
    pin: str = PIN

    def backend(self, token: str = TOKEN, pin: str = PIN) -> Pkcs11KeyBackend:
        return Pkcs11KeyBackend(self.module, token, pin.encode())

    def token_path(self, label: str) -> Path:
        """The directory SoftHSM keeps ``label``'s objects in (to delete it under a live signer)."""
        for directory in self.token_dir.iterdir():
            if label.encode() in (directory / "token.object").read_bytes():
                return directory
        raise LookupError(label)


def init_token(label: str, env: dict[str, str]) -> None:
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN],
        check=True,
        capture_output=True,
        env=env,
    )


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    module = find_module()
    if module is None or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2); PKCS#11 tests need it")
    root = tmp_path_factory.mktemp("softhsm")
    token_dir = root / "tokens"
    token_dir.mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {token_dir}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    for label in (TOKEN, DOOMED_TOKEN, PIN_TOKEN):
        init_token(label, env)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(conf))
        yield SoftHsm(module, conf, token_dir)


@pytest.fixture
def backend(softhsm: SoftHsm) -> Iterator[Pkcs11KeyBackend]:
    with softhsm.backend() as opened:
        yield opened
