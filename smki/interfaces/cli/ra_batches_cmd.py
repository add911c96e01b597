"""``smki ra batches``: the RA's queue of Device CSR batches awaiting approval (issue 13 point 3).

``list`` shows batches (default: those PENDING, oldest first); ``approve`` queues one for
processing and ``reject`` refuses it with a reason (RA approver, ``ra.staff-role``). Under the
default policy every batch is approved at once and the queue stays empty; see
:mod:`smki.services.batch_lifecycle` for ``[batches] auto-approve-max`` and the processing window.
"""

from __future__ import annotations

from enum import StrEnum
from types import ModuleType
from typing import TYPE_CHECKING, Annotated

import typer

from smki.domain import MAX_ROW_ID

if TYPE_CHECKING:
    from smki.store.batches import BatchJobRecord

from smki.interfaces.cli.common import DEFAULT_HOME_PATH, HomeOption, console, err_console
from smki.interfaces.cli.output import CsvOption, JsonOption, emit_rows
from smki.interfaces.cli.staff_cmd import StaffOption, run_on


def _lifecycle() -> ModuleType:
    """The batch lifecycle's services, imported when a command runs (``--help`` stays light)."""
    from smki.services import batch_lifecycle

    return batch_lifecycle


app = typer.Typer(help="Device CSR batches awaiting the RA: list, approve, reject.", no_args_is_help=True)

BatchId = Annotated[int, typer.Argument(min=1, max=MAX_ROW_ID, help="The BatchId.")]


class BatchStatus(StrEnum):
    """A batch's states (``smki.services.batch_lifecycle``), repeated here so help imports no service."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    PAUSED = "PAUSED"
    REJECTED = "REJECTED"
    COMPLETED = "COMPLETED"


def _line(job: BatchJobRecord) -> str:
    return f"batch {job.id} ({job.party_id}, {job.total} CSRs): {job.status}"


@app.command("list")
def list_(
    status: Annotated[BatchStatus | None, typer.Option(
        "--status", case_sensitive=False, help="Any status (default: PENDING, oldest first).")] = None,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Batches awaiting approval, or the latest batches in a status."""
    lifecycle = _lifecycle()
    jobs = run_on(home, lambda h: lifecycle.batches_waiting(h) if status is None
                  else lifecycle.recent_batches(h, status=status.value))
    rows = [{"batch": job.id, "party": job.party_id, "aro": job.aro_id, "interface": job.interface,
             "csrs": job.total, "status": job.status, "submitted": job.created_at,
             "reason": job.error_text if job.status == "REJECTED" else None} for job in jobs]
    emit_rows(rows, as_json=as_json, as_csv=as_csv,
              columns=("batch", "party", "aro", "interface", "csrs", "status", "submitted", "reason"))
    if not jobs and not (as_json or as_csv):
        err_console.print("no batches" if status else "no batches awaiting approval")


@app.command("approve")
def approve(batch_id: BatchId, staff: StaffOption = None, home: HomeOption = DEFAULT_HOME_PATH) -> None:
    """Approve a PENDING batch: it is QUEUED and processed in turn (RA approver)."""
    approved = run_on(home, lambda h: _lifecycle().approve_batch(h, batch_id, staff_id=staff))
    console.print(_line(approved), highlight=False, markup=False)


@app.command("reject")
def reject(
    batch_id: BatchId,
    reason: Annotated[str, typer.Option("--reason", help="Why the batch is rejected (shown to the Party).")],
    staff: StaffOption = None,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Reject a PENDING batch with a reason: it is REJECTED and never processed (RA approver)."""
    console.print(_line(run_on(home, lambda h: _lifecycle().reject_batch(h, batch_id, reason, staff_id=staff))),
                  highlight=False, markup=False)
