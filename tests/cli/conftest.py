from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import smki, smki_env


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return smki_env(database_url)


@pytest.fixture
def ca_home(tmp_path: Path, env: dict[str, str]) -> Path:
    """A home with a freshly initialised CA hierarchy."""
    home = tmp_path / "home"
    result = smki(["ca", "init", "--home", str(home)], env)
    assert result.code == 0, result.err
    return home
