"""Issue 14, Portal: every batch of a Party is listed from the store, whichever interface it came
through (Portal, JSON or XML), with its status, and each batch's page names every file that got no
certificate with its status and DCC code; all of it still there after the server restarts."""

from __future__ import annotations

import base64
import re
import time

import httpx

from smki.ca.devcsr import make_device_csr
from smki.domain import Usage
from smki.services.context import Home
from smki.services.portal_batches import write_portal_zip
from tests.api.conftest import OTHER_ARO, ClientFiles, credential, start_listeners


def _csr(n: int) -> str:
    return base64.b64encode(make_device_csr((0x00DB000000000700 + n).to_bytes(8, "big"), Usage.DS)).decode()


def _finished(client: httpx.Client, path: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while (status := client.get(path).json())["status"] not in ("COMPLETED", "completed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    return dict(status)


def _failed_files(page: str) -> list[tuple[str, str, str]]:
    return re.findall(r'<td data-label="File" class="wrap">([^<]+)</td><td data-label="Status">([^<]+)</td>\s*'
                      r'<td data-label="Code"><code class="rule">([^<]+)</code>', page)


def test_batches_sent_over_the_json_api_and_the_portal_are_listed_after_a_restart(
        home: Home, aro: ClientFiles, tmp_path: object) -> None:
    live = start_listeners(home)
    try:
        client = live.client(aro)
        sent = client.post("/api/v1/device-batches", json={"reference": "nightly run", "csrs": [
            {"id": "a", "csr": _csr(1)}, {"id": "not-a-csr", "csr": "bm90IGEgQ1NS"}]})
        assert sent.status_code == 202, sent.text
        json_id = sent.json()["batch_id"]
        _finished(client, f"/api/v1/device-batches/{json_id}")
        form = client.get("/portal/aro/batches")
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text)
        assert token is not None
        upload = write_portal_zip([("m1.csr", _csr(2).encode()), ("broken.csr", b"not a csr")])
        reply = client.post("/portal/aro/batches", data={"csrf": token.group(1)},
                            files={"batch": ("week 9.zip", upload, "application/zip")})
        assert reply.status_code == 303, reply.text
        portal_id = int(reply.headers["location"].rsplit("/", 1)[-1])
        assert _finished(client, f"/portal/aro/batches/{portal_id}/status")["counts"] == {
            "success": 1, "error": 1, "anomaly": 0, "ineligible": 0}
    finally:
        live.stop()

    restarted = start_listeners(home)  # a new process's state: nothing carried over but the store
    try:
        client = restarted.client(aro)
        listing = client.get("/portal/aro/batches").text
        rows = re.findall(r'<tr data-interface="(\w+)">\s*<td data-label="Batch"><a href="([^"]+)">([^<]+)</a></td>'
                          r'\s*<td data-label="Sent through">\w+</td><td data-label="Status">([^<]+)<', listing)
        assert rows == [("Portal", f"/portal/aro/batches/{portal_id}", "week-9", "Completed"),
                        ("JSON", f"/portal/aro/batches/{json_id}", f"{json_id} (nightly run)", "Completed")]
        assert client.get(f"/portal/aro/batches/{json_id}/status").json()["interface"] == "JSON"
        # each batch's page lists its failed files with the record's status word and the DCC code
        assert _failed_files(client.get(f"/portal/aro/batches/{json_id}").text) == [("not-a-csr", "error", "CR:CC3")]
        assert _failed_files(client.get(f"/portal/aro/batches/{portal_id}").text) == [
            ("broken.csr", "error", "CR:CC3")]
        # the JSON batch's response ZIP can be downloaded from the Portal too
        response = client.get(f"/portal/aro/batches/{json_id}/response.zip")
        assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
        # another Party's ARO sees neither
        other = restarted.client(credential(home, tmp_path, "aro", OTHER_ARO))  # type: ignore[arg-type]
        assert "nightly" not in other.get("/portal/aro/batches").text
        assert other.get(f"/portal/aro/batches/{portal_id}").status_code == 404
    finally:
        restarted.stop()
