"""A CA key that becomes unusable while the server runs (issue 11, point 1; keys-qa).

The server started with every key (the preflight checked them); then the Device CA key goes away
(a token pulled: here its key file is moved aside). The running batch stops where it met the fault
and waits — no CSR is failed for the CA's fault, the capacity stays charged — and new batches are
refused with the key's code (JSON 503, DCC ``WORKFLOW_ERROR``/``WF:AA1``) rather than accepted and
failed; once the key is back, the waiting batch is resumed and issued in full, and new batches are
accepted again.
"""

from __future__ import annotations

import base64
import time

import httpx

from smki.ca.devcsr import device_csr_stream
from smki.domain import Route
from smki.interfaces.dcc import codec as dx
from smki.services.context import Home
from smki.store.batches import batch_reads
from tests.api.conftest import PARTY, SECRET, ClientFiles
from tests.api.serve_process import ServeProcess, write_api_config
from tests.api.test_serve import SUBMIT, _batch

LIMIT = 1000


def _json_batch(count: int, first: int) -> dict[str, object]:
    return {"reference": "key-lost", "csrs": [
        {"id": f"C{i}", "csr": base64.b64encode(der).decode()}
        for i, (_d, _u, der) in enumerate(device_csr_stream(count, first_device=first))]}


def _wait_completed(client: httpx.Client, batch_id: int) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        body = client.get(f"/api/v1/device-batches/{batch_id}").json()
        if body["status"] == "completed":
            return body  # type: ignore[no-any-return]
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_key_lost_while_running(home: Home, aro: ClientFiles) -> None:
    write_api_config(home.settings.home)
    config = home.settings.home / "smki.toml"
    config.write_text(config.read_text().replace(
        "[capacity]\nenabled = false\n", f"[capacity]\nenabled = true\n[capacity.batch-csrs]\ncapacity = {LIMIT}\n"))
    key = home.settings.keys_dir / "device-ca.key.pem"
    aside = key.with_name("device-ca.key.pem.removed")
    server = ServeProcess(home.settings.home, SECRET, "--batch-workers", "0")
    try:
        with httpx.Client(base_url=server.url(Route.GATEWAY), verify=aro.context(), timeout=60) as client:
            key.rename(aside)  # the token is pulled

            accepted = client.post("/api/v1/device-batches", json=_json_batch(300, 0x00DBB00000000000))
            assert accepted.status_code == 202, accepted.text  # not known yet: this batch meets the fault
            deadline = time.monotonic() + 30
            while client.post("/api/v1/device-batches", json=_json_batch(1, 0x00DBB40000000000)).status_code != 503:
                assert time.monotonic() < deadline, "the runner never met the fault"
                time.sleep(0.2)
            waiting = client.get(f"/api/v1/device-batches/{accepted.json()['batch_id']}").json()
            assert waiting["status"] != "completed" and waiting["rejected"] == 0, waiting
            job = batch_reads(home.store).job(accepted.json()["batch_id"])
            assert job is not None
            assert home.store.audit_rows_for(PARTY, "capacity.returned") == []  # it will still be attempted

            refused = client.post("/api/v1/device-batches", json=_json_batch(5, 0x00DBB10000000000))
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "key.missing"
            body, _csrs = _batch(5, 0x00DBB20000000000)
            status = dx.parse_submit_csr_batch_status(client.post(SUBMIT, content=body).content)
            assert status.status is dx.SubmitStatus.WORKFLOW_ERROR and status.batch_id is None
            assert status.error is not None and status.error.code == "WF:AA1" and "key.missing" in status.error.text
            assert home.store.audit_rows_for(PARTY, "capacity.returned") == []  # refused: nothing charged

            aside.rename(key)  # the token is back
            deadline = time.monotonic() + 60
            while (again := client.post("/api/v1/device-batches",
                                        json=_json_batch(50, 0x00DBB30000000000))).status_code == 503:
                assert time.monotonic() < deadline, "batches stayed refused after the key came back"
                time.sleep(0.5)
            assert again.status_code == 202, again.text
            resumed = _wait_completed(client, accepted.json()["batch_id"])
            assert resumed["issued"] == 300 and resumed["rejected"] == 0, resumed
            done = _wait_completed(client, again.json()["batch_id"])
            assert done["issued"] == 50
    finally:
        if aside.exists():
            aside.rename(key)
        server.stop()
    assert home.store.verify_audit().ok
