"""The batch lifecycle of Appendix M App. D (issue 13 point 3): PENDING until the RA approves (or the
auto-approval policy does), REJECTED with a reason, PAUSED outside the processing window."""

from __future__ import annotations

import time as time_module
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from smki.ca.devcsr import make_device_csr
from smki.domain import Route, Usage
from smki.errors import SmkiError
from smki.interfaces.dcc import codec as dx
from smki.services.batch_jobs import BatchRunner, submit_batch
from smki.services.batch_lifecycle import BatchPolicy, approve_batch, batch_policy, batches_waiting, reject_batch
from smki.services.capacity import capacity_settings
from smki.services.context import Home
from smki.services.requests import Requester
from smki.store.batches import batch_reads
from tests.api.conftest import APPROVER, ARO, OPERATOR, PARTY, ClientFiles, LiveListeners

ME = Requester(PARTY, ARO, Route.GATEWAY)


def _with(home: Home, **batches: object) -> Home:
    return replace(home, settings=home.settings.configured({"batches": batches}))


def _submit(home: Home, count: int, first: int) -> int:
    items = [(f"c{n}", make_device_csr((first + n).to_bytes(8, "big"), Usage.DS)) for n in range(count)]
    return submit_batch(home, ME, items, interface="json", client_ref=f"r{first}", capacity=capacity_settings(home)).id


def _status(home: Home, job_id: int) -> str:
    job = batch_reads(home.store).job(job_id)
    assert job is not None
    return job.status


def test_small_batches_are_auto_approved_and_large_ones_wait_for_the_ra(home: Home) -> None:
    policy_home = _with(home, **{"auto-approve-max": 5})
    small = _submit(policy_home, 3, 0x00DB0F0000000000)
    large = _submit(policy_home, 6, 0x00DB0F0000000100)
    refused = _submit(policy_home, 6, 0x00DB0F0000000200)
    assert (_status(home, small), _status(home, large), _status(home, refused)) == ("QUEUED", "PENDING", "PENDING")
    assert [job.id for job in batches_waiting(home)] == [large, refused]
    runner = BatchRunner(policy_home, workers=0, poll=0.01)
    assert runner.run_once() == 1  # only the approved one runs
    assert (_status(home, small), _status(home, large)) == ("COMPLETED", "PENDING")
    with pytest.raises(SmkiError) as caught:
        approve_batch(home, large, staff_id=OPERATOR)  # an operator does not decide
    assert caught.value.code == "ra.staff-role"
    assert approve_batch(home, large, staff_id=APPROVER).status == "QUEUED"
    # A reason the store cannot hold (PostgreSQL refuses a NUL; a lone surrogate neither) or the
    # DCC's XML cannot carry was a database error (500); it is refused, naming what is wrong.
    for bad in (" ", "dup\x00licate", "dup\ud800", "bell\x07", "x" * 501):
        with pytest.raises(SmkiError) as caught:
            reject_batch(home, refused, bad, staff_id=APPROVER)
        assert caught.value.code == "ra.reason-required"
    assert _status(home, refused) == "PENDING"
    rejected = reject_batch(home, refused, "CSRs for devices not yet contracted", staff_id=APPROVER)
    assert (rejected.status, rejected.error_text) == ("REJECTED", "CSRs for devices not yet contracted")
    with pytest.raises(SmkiError) as caught:
        approve_batch(home, refused, staff_id=APPROVER)
    assert caught.value.code == "batch.not-pending"
    assert runner.run_once() == 1
    assert (_status(home, large), _status(home, refused)) == ("COMPLETED", "REJECTED")
    assert batch_reads(home.store).job(refused).issued == 0  # type: ignore[union-attr]
    actions = [r.action for r in home.store.audit_tail(20)]
    assert "batch.approved" in actions and "batch.rejected" in actions


def test_outside_the_window_batches_are_paused_and_resume_inside_it(home: Home) -> None:
    now = datetime.now(UTC).time()
    closed = f"{(now.hour + 2) % 24:02d}:00-{(now.hour + 3) % 24:02d}:00"
    night = _with(home, window=closed)
    job = _submit(night, 2, 0x00DB0F0000000300)
    assert _status(home, job) == "QUEUED"
    assert BatchRunner(night, workers=0, poll=0.01).run_once() == 0
    assert _status(home, job) == "PAUSED"
    assert BatchRunner(home, workers=0, poll=0.01).run_once() == 1  # no window: it resumes
    assert _status(home, job) == "COMPLETED"


@pytest.mark.parametrize(("window", "moment", "open_"), [
    ((time(20), time(8)), time(21, 30), True), ((time(20), time(8)), time(7, 59), True),
    ((time(20), time(8)), time(8, 0), False), ((time(20), time(8)), time(12), False),
    ((time(9), time(17)), time(12), True), ((time(9), time(17)), time(18), False),
])
def test_the_processing_window(window: tuple[time, time], moment: time, open_: bool) -> None:
    at = datetime(2026, 12, 6, moment.hour, moment.minute, tzinfo=UTC)
    assert BatchPolicy(window=window).open_at(at) is open_
    assert BatchPolicy().open_at(at)


@pytest.mark.parametrize(("utc", "open_"), [
    (datetime(2026, 7, 1, 19, 30, tzinfo=UTC), True),    # 20:30 BST: open, though 19:30 UTC is before 20:00
    (datetime(2026, 7, 1, 6, 30, tzinfo=UTC), True),     # 07:30 BST
    (datetime(2026, 7, 1, 7, 30, tzinfo=UTC), False),    # 08:30 BST: closed, though 07:30 UTC is before 08:00
    (datetime(2026, 1, 15, 19, 30, tzinfo=UTC), False),  # 19:30 GMT
    (datetime(2026, 3, 29, 0, 30, tzinfo=UTC), True),    # the night the clocks go forward
    (datetime(2026, 10, 25, 6, 30, tzinfo=UTC), True),   # they went back at 01:00 UTC: 06:30 GMT
    (datetime(2026, 10, 24, 7, 30, tzinfo=UTC), False),  # the day before, 08:30 BST
])
def test_the_window_is_read_on_uk_time(utc: datetime, open_: bool) -> None:
    """The DCC's 20:00-08:00 (spec §3.3) is UK local time, as capacity's core hours are: in summer the
    window opens at 19:00 UTC and closes at 07:00 UTC."""
    assert BatchPolicy(window=(time(20), time(8))).open_at(utc) is open_


def test_the_policy_is_read_from_the_configuration(home: Home) -> None:
    assert batch_policy(_with(home, window="20:00-08:00").settings).window == (time(20), time(8))
    assert batch_policy(home.settings).auto_approve_max == 50_000
    for bad in ({"window": "8pm"}, {"auto-approve-max": -1}):
        with pytest.raises(SmkiError):
            batch_policy(_with(home, **bad).settings)


def test_statuses_on_json_and_xml(live: LiveListeners, home: Home, aro: ClientFiles, tmp_path: Path) -> None:
    waiting = _submit(_with(home, **{"auto-approve-max": 0}), 2, 0x00DB0F0000000400)
    client = live.client(aro, Route.GATEWAY)
    assert client.get(f"/api/v1/device-batches/{waiting}").json()["status"] == "pending"
    reject_batch(home, waiting, "duplicate submission", staff_id=APPROVER)
    assert client.get(f"/api/v1/device-batches/{waiting}").json()["status"] == "rejected"
    xml = client.get("/1.0/PortalCSRBatch/CSRBatchResult", params={"BatchId": str(waiting)})
    result = dx.parse_csr_batch_result(xml.content)
    assert result.status is dx.BatchStatus.REJECTED
    assert result.error is not None and result.error.code == "WF:RJ1" and result.error.text == "duplicate submission"


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "signing-pool"])
def test_a_batch_running_when_the_window_closes_pauses_at_a_chunk_boundary_and_resumes_in_the_next(
        home: Home, workers: int) -> None:
    """The window (20:00-08:00) closes after the first chunk is committed: the batch stops at the next
    chunk boundary, PAUSED, and the next window finishes it — every CSR issued exactly once, whether
    signed in the runner's process or in a signing pool (whose chunks in flight at the close are
    dropped uncommitted, and issued on resuming). The clock is injected: it reads the job's progress,
    so no sleep and no timing decides the test."""
    night = _with(home, window="20:00-08:00")
    # a pool keeps 2 x workers + 4 chunks in flight and commits 4 or more at once: enough CSRs that
    # it still reads items after its first commit
    total = 7 if workers == 0 else 40
    job = _submit(night, total, 0x00DB0F0000000500 + 0x100 * workers)
    inside, outside = datetime(2026, 12, 6, 23, 0, tzinfo=UTC), datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    phase = {"now": "closing"}

    def clock() -> datetime:
        if phase["now"] == "closing":  # open until the first chunk has been committed, then closed
            done = batch_reads(home.store).job(job).processed  # type: ignore[union-attr]
            return outside if done >= 2 else inside
        return outside if phase["now"] == "day" else inside

    runner = BatchRunner(night, workers=workers, poll=0.01, chunk_size=2, clock=clock)
    try:
        _pause_then_resume(home, runner, job, total, phase)
    finally:
        runner.stop(5)


def _pause_then_resume(home: Home, runner: BatchRunner, job: int, total: int, phase: dict[str, str]) -> None:
    from smki.domain import CertKind
    from smki.store import CertificateQuery

    assert runner.run_once() == 1
    paused = batch_reads(home.store).job(job)
    assert paused is not None
    assert (paused.status, paused.owner) == ("PAUSED", None)
    assert 2 <= paused.processed == paused.issued < total  # what was committed stands
    assert [r.details_dict.get("code") for r in home.store.audit_rows_for(paused.ref, "batch.failed")] == [
        "batch.window-closed"]
    phase["now"] = "day"
    assert runner.run_once() == 0 and _status(home, job) == "PAUSED"  # outside the window it waits
    phase["now"] = "night"
    assert runner.run_once() == 1
    done = batch_reads(home.store).job(job)
    assert done is not None and (done.status, done.processed, done.issued) == ("COMPLETED", total, total)
    items = list(batch_reads(home.store).iter_items(job))
    serials = [item.serial for item in items]
    assert None not in serials and len(set(serials)) == total
    issued = home.store.find_certificates(CertificateQuery(kind=CertKind.DEVICE, limit=1000))
    assert sorted(c.serial for c in issued) == sorted(s for s in serials if s is not None)  # none issued twice
    assert len({c.device_id for c in issued}) == total


def test_results_are_kept_30_days_from_when_the_batch_finished(
        live: LiveListeners, home: Home, aro: ClientFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec §3.2: "Results stay retrievable for 30 days." A batch that waited 31 days for the RA is
    still there (it had no results yet), and its results are then kept 30 days from completion;
    a rejection is kept 30 days from the rejection. After that: FM:AA3, and the purge deletes it."""
    from smki.services import batch_jobs
    from smki.store.batches import batch_progress

    waiting = _with(home, **{"auto-approve-max": 0})
    done, refused = _submit(waiting, 2, 0x00DB0F0000000500), _submit(waiting, 1, 0x00DB0F0000000600)
    start = datetime.now(UTC)
    client = live.client(aro, Route.GATEWAY)

    def at(days: float) -> None:
        moment = start + timedelta(days=days)
        monkeypatch.setattr(batch_jobs, "_now", lambda: moment)

    def xml_status(job_id: int) -> tuple[str, str | None]:
        body = client.get("/1.0/PortalCSRBatch/CSRBatchResult", params={"BatchId": str(job_id)}).content
        result = dx.parse_csr_batch_result(body)
        return result.status.value, None if result.error is None else result.error.code

    at(31)
    assert xml_status(done) == ("PENDING", None)  # waiting for the RA is not the results' 30 days
    approve_batch(home, done, staff_id=APPROVER)
    reject_batch(home, refused, "not expected", staff_id=APPROVER)
    deadline = time_module.monotonic() + 30
    while _status(home, done) != "COMPLETED":
        assert time_module.monotonic() < deadline
        time_module.sleep(0.05)
    at(31 + 29)
    assert xml_status(done) == ("COMPLETED", None)
    at(1 + 29)  # the rejection happened (really) now: kept 30 days from it
    assert xml_status(refused) == ("REJECTED", "WF:RJ1")
    at(1 + 31)
    assert xml_status(refused) == ("FORMAT_ERROR", "FM:AA3")
    at(31 + 31)
    assert xml_status(done) == ("FORMAT_ERROR", "FM:AA3")
    assert batch_progress(home.store).purge_expired(start + timedelta(days=31 + 31)) == 2
