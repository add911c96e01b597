"""The batch lifecycle of SEC Appendix M App. D (issue 13 point 3): approval, rejection, the window.

A submitted batch is ``PENDING`` ("uploaded, accepted and is awaiting approval") until the RA
approves it — an RA approver (``smki ra batches approve``, the staff Portal) or, under the
configured auto-approval policy, at once — and is then ``QUEUED`` for the runner. A batch the RA
refuses is ``REJECTED`` with its reason ("will not be processed further"). With a processing
window configured (the DCC's is 20:00-08:00; off by default), the runner starts batches only inside
it, in turn (oldest first); outside it a queued batch shows ``PAUSED`` ("suspended until the next
processing time window") and resumes inside it. A batch running when the window closes stops
at the next chunk boundary and is ``PAUSED`` too (the runner looks at the window between chunks:
``BatchRunner._issuable``); the chunks already committed stand and the rest is issued when it
resumes, so no CSR is lost or issued twice.

Configuration (``smki.toml``)::

    [batches]
    auto-approve-max = 50000   # batches of up to N CSRs are approved at once; 0: every batch waits for the RA
    window = "20:00-08:00"     # absent: batches run whenever they are queued

The default auto-approves every batch (up to the SEC's 50,000), which is what smki did before.
Every request rule has already passed when a batch is accepted, so auto-approval only skips the
person, never a rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from smki.audit import AuditEvent
from smki.config import Settings
from smki.domain import UK_TIME
from smki.errors import NotFound, SmkiError
from smki.ra import StaffAction
from smki.services import batch_watch
from smki.services.context import Home
from smki.services.staff import require_action
from smki.services.typed_text import typed_text
from smki.settings_model import default
from smki.store.batches import BatchJobRecord, batch_reads, batch_writes

PENDING, QUEUED, PROCESSING, PAUSED, REJECTED, COMPLETED = (
    "PENDING", "QUEUED", "PROCESSING", "PAUSED", "REJECTED", "COMPLETED")
DEFAULT_AUTO_APPROVE_MAX: int = default("batches.auto-approve-max")
#: A finished batch's results stay retrievable this long from when it finished (spec §3.2).
RETENTION = timedelta(days=30)


@dataclass(frozen=True)
class BatchPolicy:
    auto_approve_max: int = DEFAULT_AUTO_APPROVE_MAX
    window: tuple[time, time] | None = None

    def initial_status(self, csrs: int) -> str:
        """``QUEUED`` when the auto-approval policy admits a batch of ``csrs`` CSRs, else ``PENDING``."""
        return QUEUED if csrs <= self.auto_approve_max else PENDING

    def open_at(self, moment: datetime) -> bool:
        """Whether batches may start at ``moment`` (always, without a window). The window is read on
        UK local time, as the SEC's is (its 20:00-08:00 is 19:00-07:00 UTC in summer)."""
        if self.window is None:
            return True
        start, end = self.window
        now = moment.astimezone(UK_TIME).time()
        if start <= end:
            return start <= now < end
        return now >= start or now < end  # a window across midnight, as the DCC's 20:00-08:00


def batch_policy(settings: Settings) -> BatchPolicy:
    """``[batches]`` as the settings model resolved (and checked) it."""
    values = settings.sections
    window = values["batches.window"].strip()
    if not window:
        return BatchPolicy(values["batches.auto-approve-max"])
    start, end = (time.fromisoformat(part.strip().zfill(5)) for part in window.split("-"))
    return BatchPolicy(values["batches.auto-approve-max"], (start, end))


def _pending(home: Home, job_id: int) -> BatchJobRecord:
    job = batch_reads(home.store).job(job_id)
    if job is None:
        raise NotFound("batch.not-found", f"no batch {job_id}")
    if job.status != PENDING:
        raise SmkiError("batch.not-pending", f"batch {job_id} is {job.status}, not PENDING (awaiting approval)")
    return job


def approve_batch(home: Home, job_id: int, *, staff_id: str | None) -> BatchJobRecord:
    """An RA approver approves a PENDING batch: it is QUEUED for processing."""
    staff = require_action(home, staff_id, StaffAction.DECIDE, subject=f"batch {job_id}")
    job = _pending(home, job_id)
    with home.store.transaction() as tx:
        if not batch_writes(tx).change_status(job.id, PENDING, QUEUED):
            raise SmkiError("batch.not-pending", f"batch {job_id} is no longer PENDING")
        tx.append_audit([AuditEvent(staff.staff_id, "batch.approved", job.ref, {"batch_id": job.id,
                                                                                "party": job.party_id})])
    batch_watch.changed()
    return _reread(home, job.id)


def reject_batch(home: Home, job_id: int, reason: str, *, staff_id: str | None) -> BatchJobRecord:
    """An RA approver rejects a PENDING batch, giving the reason: it is REJECTED and never processed."""
    reason = typed_text(reason, "the reason for rejecting a batch", limit=500, code="ra.reason-required")
    staff = require_action(home, staff_id, StaffAction.DECIDE, subject=f"batch {job_id}")
    job = _pending(home, job_id)
    with home.store.transaction() as tx:
        now = datetime.now(UTC)
        if not batch_writes(tx).change_status(job.id, PENDING, REJECTED, error_code="batch.rejected",
                                              error_text=reason, finished_at=now,
                                              expires_at=now + RETENTION):
            raise SmkiError("batch.not-pending", f"batch {job_id} is no longer PENDING")
        tx.append_audit([AuditEvent(staff.staff_id, "batch.rejected", job.ref, {
            "batch_id": job.id, "party": job.party_id, "reason": reason.strip()[:500]})])
    batch_watch.changed()
    return _reread(home, job.id)


def _reread(home: Home, job_id: int) -> BatchJobRecord:
    job = batch_reads(home.store).job(job_id)
    assert job is not None
    return job


def batches_waiting(home: Home, *, limit: int = 200) -> list[BatchJobRecord]:
    """Batches awaiting the RA (PENDING), oldest first: the approval queue."""
    return list(reversed(batch_reads(home.store).jobs(statuses=[PENDING], limit=limit)))


def recent_batches(home: Home, *, status: str | None = None, limit: int = 50) -> list[BatchJobRecord]:
    return batch_reads(home.store).jobs(statuses=None if status is None else [status.upper()], limit=limit)
