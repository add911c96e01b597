"""Exploratory QA of the CLI (branch qa-cli): bad input an operator really gives is one line on
stderr with a documented exit status — never an internal error — and a failed command leaves no
record behind. Run in-process through ``main.run`` (the ``run`` fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Run
from tests.cli.helpers import Result


def one_line(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    return lines[0]


def test_an_out_file_in_a_missing_directory_or_a_directory_is_an_io_error_not_internal(
        run: Run, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "x"
    root = json.loads(run("ca", "show", "--json").out)[0]["serial"]
    for args in (("cert", "export", root, "--format", "pem", "--out", str(missing)),
                 ("cert", "export", root, "--format", "der", "--out", str(tmp_path)),
                 ("cert", "show", "F" * 400)):
        result = run(*args)
        assert result.code == 1, (args, result)
        assert one_line(result).startswith("error: io: "), result.err


def test_ctrl_c_inside_a_command_says_interrupted_with_status_130(
        run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from smki.store import Store

    def interrupted(self: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "verify_audit", interrupted)
    result = run("audit", "verify")
    assert result.code == 130
    assert one_line(result) == "interrupted"
