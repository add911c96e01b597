"""docs/operations.md and deploy/ (issue 12, point 7): the curl examples run, the files are valid.

Every ``curl`` line of the document's ``sh`` blocks runs against a live ``smki serve --admin``, with
the document's addresses and file names replaced by the test's; each must succeed (``curl -f``
fails on an HTTP error, and a ``grep`` at the end of a pipe must match). Every ``smki_*`` metric
the document or the alert rules name must be one the admin listener exports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from smki.domain import Route
from smki.services.context import Home
from tests.api.conftest import SECRET, ClientFiles
from tests.api.serve_process import ServeProcess, write_api_config

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operations.md"


def curl_examples() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith("curl ")]


def test_the_curl_examples_of_operations_md_run(home: Home, aro: ClientFiles) -> None:
    examples = curl_examples()
    assert len(examples) >= 5
    write_api_config(home.settings.home)
    server = ServeProcess(home.settings.home, SECRET, "--batch-workers", "0", "--admin", "127.0.0.1:0")
    try:
        assert server.process.stdout is not None
        admin = server.process.stdout.readline().split()[-1].removeprefix("http://")
        deadline = time.monotonic() + 30
        while httpx.get(f"http://{admin}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.2)
        replacements = {
            "127.0.0.1:9100": admin,
            "https://127.0.0.1:8443": server.url(Route.GATEWAY),
            "aro1.pem": str(aro.cert),
            "aro1.key": str(aro.key),
            "smki-data/credentials-ca.pem": str(aro.ca),
        }
        # Requests on the listener first, so the metrics example has something to find.
        ordered = sorted(examples, key=lambda line: "9100" in line)
        outputs = {}
        for line in ordered:
            command = line
            for old, new in replacements.items():
                command = command.replace(old, new)
            done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True,
                                  timeout=60)
            assert done.returncode == 0, (line, done.stderr)
            outputs[line] = done.stdout
        by_path = {re.search(r"https?://[^/ ]+(/[^ '|]*)", line).group(1): out  # type: ignore[union-attr]
                   for line, out in outputs.items()}
        assert '"status":"alive"' in by_path["/healthz"].replace(" ", "")
        assert '"ready":true' in by_path["/readyz"].replace(" ", "")
        assert 'listener="gateway"' in by_path["/metrics"]
        assert by_path["/api/v1/docs"].strip() == "200"
        exported = set(re.findall(r"^(smki_[a-z_]+?)(?:_total|_bucket|_count|_sum|_created)?[{ ]",
                                  httpx.get(f"http://{admin}/metrics").text, re.M))
    finally:
        server.stop()
    named = set(re.findall(r"\b(smki_[a-z_]+)", DOC.read_text() + (ROOT / "deploy" / "smki-alerts.yml").read_text()))
    named = {re.sub(r"_(total|bucket)$", "", name) for name in named}
    # Families with no sample yet (no refusal, no key error, no capacity row, no audited action: the
    # key ceremony published the lists, so the scheduler has nothing to do) are absent from a fresh node.
    may_be_empty = {"smki_key_backend_errors", "smki_capacity_bucket_level", "smki_csrs",
                    "smki_certificates_issued", "smki_revocation_list_age_seconds",
                    "smki_revocation_list_next_update_seconds", "smki_connections_dropped", "smki_audit_records"}
    assert named - exported - may_be_empty == set()


def test_deploy_files_are_valid() -> None:
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9100"]
    rules = yaml.safe_load((ROOT / "deploy" / "smki-alerts.yml").read_text())
    assert all(rule["alert"] and rule["expr"] for rule in rules["groups"][0]["rules"])
    unit = (ROOT / "deploy" / "smki.service").read_text()
    for needed in ("User=smki", "ProtectSystem=strict", "NoNewPrivileges=yes",
                   "LoadCredential=SMKI_KEY_PASSPHRASE:", "--admin 127.0.0.1:9100"):
        assert needed in unit
    # Every credential the unit loads (commented examples too) is one smki reads itself, and no
    # secret is copied into an environment variable on the way.
    from smki.settings_model import file_env_names, secret_env_names

    loaded = re.findall(r"(?m)^#?LoadCredential=([^:]+):", unit)
    assert loaded and set(loaded) <= set(file_env_names()), loaded
    assert not any(f"{name}=" in unit for name in (*secret_env_names(), "SMKI_DATABASE_URL"))
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    smki = shutil.which("smki") or str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "smki")
    local = Path("/tmp") / f"smki-verify-{time.time_ns()}.service"
    local.write_text(unit.replace("/usr/local/bin/smki", smki))
    try:
        done = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60)
    finally:
        local.unlink()
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
