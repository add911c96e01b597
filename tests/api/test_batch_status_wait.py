"""Long polling of a batch's status (``GET /api/v1/device-batches/{id}?wait=S``): the answer comes as
soon as the status changes — on word from this process's runner or RA decision, or, for a change made
elsewhere, at the next recheck — or after ``wait`` seconds unchanged; a final status answers at once."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from smki.ca.devcsr import make_device_csr
from smki.domain import Usage
from smki.interfaces.api import json_api
from smki.services import batch_watch
from smki.services.batch_jobs import BatchRunner
from smki.services.batch_lifecycle import approve_batch
from smki.services.context import Home
from smki.store.batches import batch_writes
from tests.api.conftest import APPROVER, ClientFiles, LiveListeners, start_listeners


@pytest.fixture
def quiet(home: Home) -> Iterator[LiveListeners]:
    """Listeners without a batch runner: the tests decide when a batch moves. Batches of more than
    two CSRs wait for the RA (PENDING)."""
    settings = home.settings.configured({"batches": {"auto-approve-max": 2}})
    server = start_listeners(replace(home, settings=settings), runner=False)
    try:
        yield server
    finally:
        server.stop()
    assert batch_watch.waiting() == 0  # no request left a waiter behind


def _submit(live: LiveListeners, aro: ClientFiles, count: int, first: int) -> int:
    csrs = [{"id": f"c{n}", "csr": base64.b64encode(make_device_csr((first + n).to_bytes(8, "big"), Usage.DS)).decode()}
            for n in range(count)]
    response = live.client(aro).post("/api/v1/device-batches", json={"csrs": csrs})
    assert response.status_code == 202, response.text
    return int(response.json()["batch_id"])


def _later(seconds: float, action: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _status(live: LiveListeners, aro: ClientFiles, batch_id: int, wait: float) -> tuple[str, float]:
    started = time.monotonic()
    response = live.client(aro).get(f"/api/v1/device-batches/{batch_id}", params={"wait": wait})
    assert response.status_code == 200, response.text
    return response.json()["status"], time.monotonic() - started


def test_a_waiting_request_answers_when_the_runner_moves_the_batch(quiet: LiveListeners, home: Home, aro: ClientFiles,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_api, "STATUS_RECHECK_SECONDS", 60.0)  # only the runner's word can end the wait early
    batch_id = _submit(quiet, aro, 2, 0x00DB0E0000000000)
    assert _status(quiet, aro, batch_id, 0) == ("queued", pytest.approx(0, abs=5))
    runner = _later(0.4, lambda: BatchRunner(home, workers=0, poll=0.01).run_once())
    status, waited = _status(quiet, aro, batch_id, 20)
    assert status in ("processing", "completed") and 0.3 < waited < 10
    if status == "processing":
        status, _ = _status(quiet, aro, batch_id, 20)
    runner.join(10)
    assert status == "completed"


def test_a_waiting_request_answers_when_the_ra_approves(quiet: LiveListeners, home: Home, aro: ClientFiles,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_api, "STATUS_RECHECK_SECONDS", 60.0)
    batch_id = _submit(quiet, aro, 3, 0x00DB0E0000000100)
    approver = _later(0.4, lambda: approve_batch(home, batch_id, staff_id=APPROVER))
    status, waited = _status(quiet, aro, batch_id, 20)
    approver.join(10)
    assert status == "queued" and 0.3 < waited < 10


def test_a_change_made_by_another_process_is_seen_at_the_next_recheck(quiet: LiveListeners, home: Home,
                                                                       aro: ClientFiles,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Another node's runner changes the job without word to this process: the wait reads it again
    every ``STATUS_RECHECK_SECONDS``. Here the change is made in the store directly."""
    monkeypatch.setattr(json_api, "STATUS_RECHECK_SECONDS", 0.1)
    batch_id = _submit(quiet, aro, 3, 0x00DB0E0000000200)

    def elsewhere() -> None:
        with home.store.transaction() as tx:
            assert batch_writes(tx).change_status(batch_id, "PENDING", "QUEUED")

    changer = _later(0.4, elsewhere)
    status, waited = _status(quiet, aro, batch_id, 20)
    changer.join(10)
    assert status == "queued" and 0.3 < waited < 5


def test_an_unchanged_status_answers_after_the_wait_and_a_final_one_at_once(quiet: LiveListeners, home: Home,
                                                                             aro: ClientFiles) -> None:
    pending = _submit(quiet, aro, 3, 0x00DB0E0000000300)
    status, waited = _status(quiet, aro, pending, 0.6)
    assert status == "pending" and 0.55 < waited < 5
    done = _submit(quiet, aro, 1, 0x00DB0E0000000400)
    BatchRunner(home, workers=0, poll=0.01).run_once()
    status, waited = _status(quiet, aro, done, 30)
    assert status == "completed" and waited < 5


def test_a_wait_out_of_range_or_for_another_partys_batch_is_refused_at_once(quiet: LiveListeners, aro: ClientFiles,
                                                                            other_aro: ClientFiles) -> None:
    batch_id = _submit(quiet, aro, 3, 0x00DB0E0000000500)
    for wait in ("-1", "30.5", "soon"):
        answer = quiet.client(aro).get(f"/api/v1/device-batches/{batch_id}", params={"wait": wait})
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "request.invalid", answer.text
    started = time.monotonic()
    answer = quiet.client(other_aro).get(f"/api/v1/device-batches/{batch_id}", params={"wait": 20})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "batch.not-found"
    assert time.monotonic() - started < 5


def test_stopping_the_server_ends_a_wait_at_once(home: Home, aro: ClientFiles) -> None:
    """A status request waiting for a batch does not hold up the server's shutdown: it is answered
    with the status as it is."""
    settings = home.settings.configured({"batches": {"auto-approve-max": 2}})
    server = start_listeners(replace(home, settings=settings), runner=False)
    batch_id = _submit(server, aro, 3, 0x00DB0E0000000600)
    answers: list[tuple[str, float]] = []
    waiter = threading.Thread(target=lambda: answers.append(_status(server, aro, batch_id, 25)), daemon=True)
    waiter.start()
    time.sleep(0.5)
    started = time.monotonic()
    server.listeners.stop()
    waiter.join(15)
    answered = time.monotonic() - started
    for client in server.clients:  # the client goes: its kept-alive connection no longer holds the server
        client.close()
    server.thread.join(15)
    stopped = time.monotonic() - started
    server.stop()
    assert answers and answers[0][0] == "pending" and answered < 3 and stopped < 5, (answers, answered, stopped)
    assert batch_watch.waiting() == 0


def test_beyond_the_waiters_a_process_allows_a_request_is_answered_at_once(quiet: LiveListeners, aro: ClientFiles,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pending = _submit(quiet, aro, 3, 0x00DB0E0000000700)
    monkeypatch.setattr(json_api, "MAX_STATUS_WAITERS", 0)
    status, waited = _status(quiet, aro, pending, 20)
    assert status == "pending" and waited < 3
