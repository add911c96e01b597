"""The README's shell examples run as written: the MP074 worked example, then "Run the service"
(a live ``smki serve`` on free ports of 127.0.0.1, batches sent with curl in JSON and in DCC XML).

Each logical line of a block runs in one bash session with ``smki`` on the PATH; a line whose
comment announces an error (``# error: …``, ``# ra.refused: …``) must fail, every other must succeed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
pytestmark = pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")


def block_after(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(heading)
    match = re.search(r"```\n(.*?)```", text[start:], re.DOTALL)
    assert match, heading
    return match.group(1)


def logical_lines(block: str) -> list[str]:
    lines = block.replace("\\\n", " ").splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def script_for(block: str) -> str:
    parts = []
    for line in logical_lines(block):
        comment = line.split(" # ", 1)[1] if " # " in line else ""
        shown = line.replace("'", "'\\''")
        if "error:" in comment or "ra.refused" in comment:
            parts.append(f"if {{\n{line}\n}}; then echo 'UNEXPECTED SUCCESS: {shown}' >&2; exit 98; fi")
        else:
            parts.append(f"{{\n{line}\n}} || {{ echo 'FAILED: {shown}' >&2; exit 97; }}")
    return "\n".join(parts) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_readme_blocks_run_as_written(tmp_path: Path) -> None:
    gateway, spoti = free_port(), free_port()
    service = block_after("## Run the service").replace("8443", str(gateway)).replace("8444", str(spoti))
    script = ("set -u\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n"
              + script_for(block_after("### Worked example: MP074")) + "echo '== service'\n" + script_for(service))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMKI_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    env["COLUMNS"] = "200"
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    story, service_out = done.stdout.split("== service\n")
    assert "P1 is an approved device subscriber" in story
    assert "audit log OK" in story
    assert '"kind":"system"' in service_out and '"route":"gateway"' in service_out
    assert re.search(r"^\s*100 issued $", service_out, re.MULTILINE), service_out
    assert "<BatchStatus>PENDING</BatchStatus><BatchId>" in service_out
    assert "<CSRBatchResult><BatchStatus>" in service_out
    assert "channel.device-via-gateway" in service_out and "channel.spoti-organisation-only" in service_out
    for p12 in ("a1.p12", "op1.p12", "meter-ops.p12"):
        assert (tmp_path / p12).stat().st_size > 0
