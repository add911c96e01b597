"""A PKCS#11 module that cannot be used: the one line says why, so the operator fixes the right thing.

"cannot load the PKCS#11 module" alone reads the same for a wrong path, a library that is not a
PKCS#11 module, and a module that loads but will not start (its own configuration, e.g.
``SOFTHSM2_CONF``, or the vendor client's): three different fixes (keys-qa).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli.helpers import smki

pytestmark = pytest.mark.parametrize("key_backend", ["pkcs11"], indirect=True)


def _set_module(home: Path, module: str) -> None:
    config = home / "smki.toml"
    text = re.sub(r'(?m)^pkcs11-module = .*$', f'pkcs11-module = "{module}"', config.read_text())
    config.write_text(text)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(("module", "why"), [
    ("/nonexistent/libpkcs11.so", "No such file"),
    ("/etc/hostname", "not a shared library"),
])
def test_a_module_that_cannot_be_loaded_says_why(ca_home: Path, env: dict[str, str], module: str, why: str) -> None:
    _set_module(ca_home, module)
    result = smki(["ca", "show", "--home", str(ca_home)], env)  # reading needs no key: it works
    assert result.code == 0, result.err
    result = smki(["serve", "--gateway", "127.0.0.1:0", "--no-spoti", "--home", str(ca_home)], env, timeout=60)
    line = _one_line(result.err)
    assert result.code == 1 and line.startswith("error: key.module-missing: "), result.err
    assert module in line and why in line, line


def test_a_library_without_the_pkcs11_entry_point_is_named_as_such(
        ca_home: Path, env: dict[str, str]) -> None:
    libz = next((str(p) for p in Path("/usr/lib").glob("*/libz.so.1")), None) or "/lib/x86_64-linux-gnu/libz.so.1"
    if not Path(libz).exists():
        pytest.skip("no libz.so.1 to stand in for a non-PKCS#11 library")
    _set_module(ca_home, libz)
    result = smki(["serve", "--gateway", "127.0.0.1:0", "--no-spoti", "--home", str(ca_home)], env, timeout=60)
    line = _one_line(result.err)
    assert result.code == 1 and line.startswith("error: key.module-missing: "), result.err
    assert "not a PKCS#11 module" in line, line


def test_a_module_that_loads_but_will_not_start_is_module_failed(
        ca_home: Path, env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "SOFTHSM2_CONF": str(tmp_path / "no-such-softhsm2.conf")}
    result = smki(["serve", "--gateway", "127.0.0.1:0", "--no-spoti", "--home", str(ca_home)], env, timeout=60)
    line = _one_line(result.err)
    assert result.code == 1 and line.startswith("error: key.module-failed: "), result.err
    assert "its own configuration" in line, line
