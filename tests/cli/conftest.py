"""CLI fixtures: an environment for the ``smki`` subprocess and a home with a CA hierarchy.

``ca_home`` uses the file key backend unless a test module parametrizes ``key_backend`` with
``"pkcs11"``: then the key ceremony runs on a throw-away SoftHSM2 token made for that test (a new
process sees tokens created before it starts, so each test gets its own token directory).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smki.config import Settings
from smki.interfaces.cli import main
from smki.services.ca_admin import initialise_ca
from tests.cli.helpers import PASSPHRASE, Result, smki, smki_env

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN_PIN = "5501-smki-cli"


@pytest.fixture
def key_backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "file"))


@pytest.fixture
def env(database_url: str, key_backend: str, tmp_path: Path) -> dict[str, str]:
    extra: dict[str, str] = {}
    if key_backend == "pkcs11":
        if not (Path(SOFTHSM_MODULE).exists() and shutil.which("softhsm2-util")):
            pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
        tokens = tmp_path / "softhsm-tokens"
        tokens.mkdir()
        conf = tmp_path / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
        extra = {"SOFTHSM2_CONF": str(conf), "SMKI_PKCS11_PIN": TOKEN_PIN}
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", "smki-ca", "--pin", TOKEN_PIN,
             "--so-pin", "so-" + TOKEN_PIN],
            check=True, capture_output=True, env={**os.environ, **extra},
        )
    return smki_env(database_url, **extra)


@pytest.fixture
def ca_home(tmp_path: Path, env: dict[str, str], key_backend: str) -> Path:
    """A home with a freshly initialised CA hierarchy (file keys, or a SoftHSM2 token)."""
    home = tmp_path / "home"
    args = ["ca", "init", "--home", str(home)]
    if key_backend == "pkcs11":
        args += ["--keys", "pkcs11", "--module", SOFTHSM_MODULE, "--token", "smki-ca"]
    result = smki(args, env)
    assert result.code == 0, result.err
    return home


class Run:
    """``run("party", "show", "P1")`` → Result: ``smki`` in this process against ``home``."""

    def __init__(self, home: Path, invoke: Callable[..., Result]) -> None:
        self.home = home
        self._invoke = invoke

    def __call__(self, *args: str) -> Result:
        return self._invoke(*args)


@pytest.fixture
def run(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Iterator[Run]:
    """``run("party", "show", "P1")`` → Result, against a fresh home with a CA."""
    home = tmp_path / "home"
    monkeypatch.setenv("SMKI_KEY_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("SMKI_DATABASE_URL", database_url)
    monkeypatch.setenv("SMKI_ACTOR", "admin:test")
    monkeypatch.delenv("SMKI_STAFF", raising=False)
    monkeypatch.delenv("SMKI_DEBUG", raising=False)
    initialise_ca(Settings(home=home, database_url=database_url), PASSPHRASE.encode(), actor="admin:test")

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        home_args = [] if "--home" in args else ["--home", str(home)]
        monkeypatch.setattr(sys, "argv", ["smki", *args, *home_args])
        code = 0
        try:
            main.run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    yield Run(home, invoke)
