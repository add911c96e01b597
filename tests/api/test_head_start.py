"""The batch runner's head start: a batch admitted by ``submit_batch`` has its first chunks checked
in the warm pool while it is stored, and the runner, once it claims the batch, takes those checks
rather than starting them again — only when it is idle, and only for a batch it may run now."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from smki.ca.devcsr import make_device_csr
from smki.domain import Route, Usage
from smki.services.batch_jobs import BatchRunner, submit_batch
from smki.services.capacity import capacity_settings
from smki.services.context import Home
from smki.services.requests import Requester
from smki.store.batches import batch_reads
from tests.api.conftest import ARO, PARTY
from tests.conftest import checks_started

ME = Requester(PARTY, ARO, Route.GATEWAY)
CHUNK = 4


@pytest.fixture
def runner(home: Home) -> Iterator[BatchRunner]:
    warm = BatchRunner(home, workers=1, poll=0.01, chunk_size=CHUNK)
    assert warm.signing_pool() is not None
    try:
        yield warm
    finally:
        warm.stop()


def _checks_started(runner: BatchRunner, monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """Every checking pass the runner's pool is asked to start, as its chunk."""
    pool = runner.signing_pool()
    assert pool is not None
    return checks_started(pool, monkeypatch)


def _sizes(chunks: list[list[Any]]) -> list[int]:
    return [len(chunk) for chunk in chunks]


def _submit(home: Home, runner: BatchRunner, count: int, first: int, *, head_start: bool = True) -> int:
    items = [(f"c{n}", make_device_csr((first + n).to_bytes(8, "big"), Usage.DS)) for n in range(count)]
    return submit_batch(home, ME, items, interface="xml", client_ref=f"r{first}", capacity=capacity_settings(home),
                        head_start=runner.head_start if head_start else None).id


def test_the_runner_takes_the_checks_started_while_the_batch_was_stored(home: Home, runner: BatchRunner,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    started = _checks_started(runner, monkeypatch)
    job_id = _submit(home, runner, 4 * CHUNK + 1, 0x00DB0D0000000000)
    assert _sizes(started) == [CHUNK] * 4 + [1]  # every chunk (the pool keeps 2 x 1 + 4 = 6 in flight), while stored
    assert runner.run_once() == 1
    assert _sizes(started) == [CHUNK] * 4 + [1]  # the batch started no check of its own
    job = batch_reads(home.store).job(job_id)
    assert job is not None and (job.status, job.issued, job.rejected) == ("COMPLETED", 4 * CHUNK + 1, 0)


def test_only_the_first_chunks_in_flight_are_checked_ahead(home: Home, runner: BatchRunner,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    started = _checks_started(runner, monkeypatch)
    job_id = _submit(home, runner, 8 * CHUNK, 0x00DB0D0000000100)
    assert _sizes(started) == [CHUNK] * 6  # the pool's in-flight window
    assert runner.run_once() == 1
    assert _sizes(started) == [CHUNK] * 8
    assert batch_reads(home.store).job(job_id).issued == 8 * CHUNK  # type: ignore[union-attr]


def test_no_head_start_for_a_batch_that_waits_or_while_another_runs(home: Home, runner: BatchRunner,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    started = _checks_started(runner, monkeypatch)
    waiting = replace(home, settings=home.settings.configured({"batches": {"auto-approve-max": 2}}))
    _submit(waiting, runner, 3, 0x00DB0D0000000200)  # PENDING: the RA decides first
    hour = datetime.now(UTC).hour
    night = replace(home, settings=home.settings.configured(
        {"batches": {"window": f"{(hour + 2) % 24:02d}:00-{(hour + 3) % 24:02d}:00"}}))
    closed = BatchRunner(night, workers=1, poll=0.01, chunk_size=CHUNK)
    closed._pool = runner.signing_pool()
    _submit(night, closed, 3, 0x00DB0D0000000300)  # outside the processing window
    runner._processing = True
    _submit(home, runner, 3, 0x00DB0D0000000400)  # the runner is busy with another batch
    assert started == []
