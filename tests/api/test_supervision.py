"""Supervision of ``smki serve`` (issue 11, point 2), as real processes.

* ``--workers 2``: ``kill -9`` of one worker → the other keeps answering, the parent logs the exit
  and starts a replacement; a batch the dead worker owned is taken over and completes, every CSR
  issued exactly once.
* A batch owned by a process elsewhere (another node) that stopped sending heartbeats is taken over
  once its lease lapses.
* SIGTERM drains: the running batch is handed back at a chunk boundary (audited), the server exits,
  and the next start finishes it.
* ``kill -9`` of the parent leaves no smki process behind: workers, forkservers, signing processes.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from smki.domain import Route
from smki.interfaces.dcc import codec as dx
from smki.services.context import Home
from smki.store import CertificateQuery
from smki.store.batches import batch_reads
from tests.api.conftest import ARO, PARTY, SECRET, ClientFiles
from tests.api.serve_process import ServeProcess, write_api_config
from tests.api.test_serve import RESULT, SUBMIT, _batch, _check_results, _client

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _descendants(pid: int) -> list[int]:
    result, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            result.append(child)
            todo.append(child)
    return result


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait(what: str, check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _submit(server: ServeProcess, who: ClientFiles, body: bytes) -> int:
    with _client(server, who) as client:
        status = dx.parse_submit_csr_batch_status(client.post(SUBMIT, content=body).content)
    assert status.batch_id is not None
    return status.batch_id


def _completed(server: ServeProcess, who: ClientFiles, batch_id: int, timeout: float = 180) -> dx.CSRBatchResult:
    deadline = time.monotonic() + timeout
    with _client(server, who) as client:
        while True:
            result = dx.parse_csr_batch_result(client.get(RESULT, params={"BatchId": batch_id}).content)
            if result.status is dx.BatchStatus.COMPLETED:
                return result
            assert time.monotonic() < deadline, "the batch did not complete"
            time.sleep(0.1)


def _issued_once(home: Home, ref: str, count: int) -> None:
    stored = list(home.store.iter_certificates(CertificateQuery(batch_id=ref, limit=1000)))
    assert len(stored) == count
    assert len({c.serial for c in stored}) == count
    assert Counter((c.device_id, c.usage) for c in stored).most_common(1)[0][1] == 1


def _owner_pid(home: Home, batch_id: int) -> int | None:
    job = batch_reads(home.store).job(batch_id)
    if job is None or job.owner is None or job.processed == 0:
        return None
    return int(job.owner.split(":")[1])


def test_a_killed_worker_is_restarted_and_its_batch_taken_over(home: Home, aro: ClientFiles) -> None:
    write_api_config(home.settings.home)
    server = ServeProcess(home.settings.home, SECRET, "--workers", "2", "--batch-workers", "0")
    try:
        workers = _children(server.process.pid)
        assert len(workers) == 2
        count = 3000
        body, csrs = _batch(count, 0x00DB910000000000)
        batch_id = _submit(server, aro, body)
        _wait("the batch to start", lambda: _owner_pid(home, batch_id) is not None)
        victim = _owner_pid(home, batch_id)
        assert victim in workers
        os.kill(victim, signal.SIGKILL)
        # The other worker answers at once, on fresh connections (whichever process accepts them).
        for _ in range(5):
            with httpx.Client(base_url=server.url(Route.GATEWAY), verify=aro.context(), timeout=10) as client:
                assert client.get("/api/v1/certificates", params={"limit": 1}).status_code == 200
        _wait("a replacement worker", lambda: len([p for p in _children(server.process.pid) if p != victim]) == 2)
        assert victim not in _children(server.process.pid)
        result = _completed(server, aro, batch_id)
    finally:
        server.stop()
    _check_results(home, result, csrs)
    job = batch_reads(home.store).job(batch_id)
    assert job is not None
    _issued_once(home, job.ref, count)
    assert home.store.verify_audit().ok
    errors = server.process.stderr.read() if server.process.stderr else ""
    assert f"(pid {victim}) exited with code -9" in errors and "restarted (pid" in errors
    assert "stopping: draining 2 server process(es)" in errors and errors.rstrip().endswith("smki: stopped")


def test_a_batch_whose_owner_stopped_heartbeating_is_taken_over_after_the_lease(home: Home, aro: ClientFiles) -> None:
    """A batch claimed by a process on another node that then went silent: once its heartbeat is
    older than ``batch-lease``, this node's runner takes it over and finishes it."""
    from sqlalchemy import update

    from smki.services.batch_jobs import submit_batch
    from smki.services.capacity import CapacitySettings
    from smki.services.requests import Requester
    from smki.store.models import batch_jobs

    write_api_config(home.settings.home)
    config = home.settings.home / "smki.toml"
    config.write_text(config.read_text().replace("batch-poll = 0.05", "batch-poll = 0.05\nbatch-lease = 10"))
    count = 200
    _body, csrs = _batch(count, 0x00DB920000000000)
    job = submit_batch(home, Requester(PARTY, ARO, Route.GATEWAY), list(csrs.items()), interface="json",
                       client_ref="lease", capacity=CapacitySettings(enabled=False))
    beat = datetime.now(UTC)
    with home.store.engine.begin() as conn:  # claimed by a process on another host, which then went silent
        conn.execute(update(batch_jobs).where(batch_jobs.c.id == job.id).values(
            owner="other-node:4242:silent", heartbeat_at=beat, status="PROCESSING", started_at=beat))
    server = ServeProcess(home.settings.home, SECRET, "--batch-workers", "0")
    try:
        still = batch_reads(home.store).job(job.id)
        assert still is not None and still.owner == "other-node:4242:silent" and still.processed == 0
        result = _completed(server, aro, job.id, timeout=60)
    finally:
        server.stop()
    done = batch_reads(home.store).job(job.id)
    assert done is not None and done.finished_at is not None
    assert done.finished_at - beat >= timedelta(seconds=10)  # not before the lease lapsed
    _check_results(home, result, csrs)
    _issued_once(home, job.ref, count)


def test_sigterm_hands_the_running_batch_back_and_the_next_start_finishes_it(home: Home, aro: ClientFiles) -> None:
    write_api_config(home.settings.home)
    server = ServeProcess(home.settings.home, SECRET, "--batch-workers", "0")
    count = 6000
    body, csrs = _batch(count, 0x00DB930000000000)
    try:
        batch_id = _submit(server, aro, body)
        _wait("the batch to start", lambda: _owner_pid(home, batch_id) is not None)
        started = time.monotonic()
        os.kill(server.process.pid, signal.SIGTERM)
        server.process.wait(30)
        assert time.monotonic() - started < 20
        assert server.process.returncode == 0
    finally:
        server.stop()
    job = batch_reads(home.store).job(batch_id)
    assert job is not None and job.owner is None and job.status == "PROCESSING"
    assert 0 < job.processed < count, "handed back part-way"
    failed = home.store.audit_rows_for(job.ref, "batch.failed")
    assert [r.details_dict["code"] for r in failed] == ["batch.handed-back"]
    restarted = ServeProcess(home.settings.home, SECRET, "--batch-workers", "0")
    try:
        result = _completed(restarted, aro, batch_id)
    finally:
        restarted.stop()
    _check_results(home, result, csrs)
    _issued_once(home, job.ref, count)
    assert home.store.verify_audit().ok


def test_no_smki_process_outlives_a_killed_parent(home: Home) -> None:
    write_api_config(home.settings.home)
    server = ServeProcess(home.settings.home, SECRET, "--workers", "2", "--batch-workers", "2")
    try:
        # Two workers, each with a forkserver and two warm signing processes.
        _wait("the signing processes", lambda: len(_descendants(server.process.pid)) >= 2 + 2 * (1 + 2), 60)
        family = _descendants(server.process.pid)
        os.kill(server.process.pid, signal.SIGKILL)  # the parent only, not its process group
        server.process.wait(10)
        _wait("every descendant to exit", lambda: not any(_alive(pid) for pid in family), 30)
    finally:
        server.kill()


def test_sigterm_does_not_wait_for_idle_keep_alive_clients(home: Home, aro: ClientFiles) -> None:
    """A client holding an idle kept-alive connection (as httpx's pool does) must not hold up the
    stop: closing a TLS connection waits for the client's close_notify, which an idle client only
    sends when it next reads the socket — Python's 30 s SSL shutdown timeout per connection."""
    write_api_config(home.settings.home)
    server = ServeProcess(home.settings.home, SECRET, "--workers", "1", "--batch-workers", "0")
    clients = [_client(server, aro) for _ in range(3)]
    try:
        for client in clients:
            assert client.get("/api/v1/whoami").status_code == 200  # the connection stays open, idle
        started = time.monotonic()
        os.killpg(server.process.pid, signal.SIGTERM)
        assert server.process.wait(60) == 0
        assert time.monotonic() - started < 10
    finally:
        for client in clients:
            client.close()
        server.stop()
