"""A CA key that becomes unusable while the server runs (issue 11, point 1).

The server started with every key (the preflight checked them); then the Device CA key goes away
(a token pulled: here its key file is moved aside). The running batch fails with the key's own
code, audited as ``batch.failed``; the capacity its never-attempted CSRs were charged is given back;
new batches are refused with the key's code (JSON 503, DCC ``WORKFLOW_ERROR``/``WF:AA1``) rather than
accepted and failed; and once the key is back, batches are accepted and issued again.
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
from smki.store.capacity import capacity_ledger
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
            failed = _wait_completed(client, accepted.json()["batch_id"])
            assert failed["issued"] == 0 and failed["rejected"] == 300
            job = batch_reads(home.store).job(accepted.json()["batch_id"])
            assert job is not None and job.error_code == "key.missing"
            audited = home.store.audit_rows_for(job.ref, "batch.failed")
            assert [r.details_dict["code"] for r in audited] == ["key.missing"]
            returned = home.store.audit_rows_for(PARTY, "capacity.returned")
            assert [r.details_dict["returned"] for r in returned] == [300]
            level = {name: tokens for _p, name, tokens, _u in capacity_ledger(home.store).bucket_levels(PARTY)}
            assert level["batch-csrs"] >= LIMIT - 1  # all given back (the bucket refills too)

            refused = client.post("/api/v1/device-batches", json=_json_batch(5, 0x00DBB10000000000))
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "key.missing"
            body, _csrs = _batch(5, 0x00DBB20000000000)
            status = dx.parse_submit_csr_batch_status(client.post(SUBMIT, content=body).content)
            assert status.status is dx.SubmitStatus.WORKFLOW_ERROR and status.batch_id is None
            assert status.error is not None and status.error.code == "WF:AA1" and "key.missing" in status.error.text
            assert len(home.store.audit_rows_for(PARTY, "capacity.returned")) == 1  # refused: nothing charged

            aside.rename(key)  # the token is back
            deadline = time.monotonic() + 60
            while (again := client.post("/api/v1/device-batches",
                                        json=_json_batch(50, 0x00DBB30000000000))).status_code == 503:
                assert time.monotonic() < deadline, "batches stayed refused after the key came back"
                time.sleep(0.5)
            assert again.status_code == 202, again.text
            done = _wait_completed(client, again.json()["batch_id"])
            assert done["issued"] == 50
    finally:
        if aside.exists():
            aside.rename(key)
        server.stop()
    assert home.store.verify_audit().ok
