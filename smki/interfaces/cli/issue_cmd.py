"""``smki issue``: CA-operator issuance from CSRs (no RA policy: see ``smki request`` for that)."""

from __future__ import annotations

import csv
import secrets
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from smki.errors import SmkiError
from smki.interfaces.cli.common import (
    DEFAULT_HOME_PATH,
    HomeOption,
    actor,
    console,
    err_console,
    open_for_signing,
    rich_console,
    stop_notes,
)
from smki.services.files import write_whole

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from smki.services.batch_sources import BatchItem
    from smki.services.context import Home
    from smki.services.device_issuance import BatchSummary, DeviceOutcome

app = typer.Typer(help="Issue certificates from PKCS#10 CSRs (CA operator).", no_args_is_help=True)

OutDir = Annotated[Path, typer.Option("--out", help="Directory for the certificates (created if missing).")]


def pem(der: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)




def check_out_file(out: Path) -> None:
    """Refuse, before anything is issued, an ``--out`` that cannot take the certificate file: found
    only when writing it, the certificate would be issued and never delivered."""
    if out.is_dir():
        raise SmkiError("output.is-directory", f"{out} is a directory: --out names the PEM file to write")


def check_out_dir(out: Path) -> None:
    """Refuse, before anything is issued, an ``--out`` that is not a directory (see ``check_out_file``)."""
    if out.exists() and not out.is_dir():
        raise SmkiError("output.not-a-directory", f"{out} is not a directory: --out names one for the certificates")


def read_input(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(1024 * 1024)
    except OSError as exc:
        raise SmkiError("input.unreadable", f"cannot read {path}: {exc.strerror or exc}") from exc


@app.command("org")
def org(
    csr: Annotated[Path, typer.Argument(help="An Organisation CSR (PEM, DER or base64).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the certificate (PEM).")],
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Issue one Organisation Certificate."""
    from smki.services.org_issuance import issue_organisation

    check_out_file(out)
    opened = open_for_signing(home)
    try:
        issued = issue_organisation(opened, read_input(csr), actor=actor())
    finally:
        opened.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_whole(out, pem(issued.der))
    console.print(f"issued {issued.serial} → {out}")


def batch_progress(verb: str, items: Sequence[BatchItem] | None, source: Path | None) -> tuple[Progress, int | None]:
    """A progress bar on stderr (terminals only) with the batch's size when it can be known cheaply."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from smki.services.batch_sources import count_batch_source

    total = len(items) if items is not None else count_batch_source(source) if source is not None else None
    progress = Progress(TextColumn(f"[bold]{verb}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=rich_console(stderr=True), transient=False, disable=not err_console.is_terminal)
    return progress, total


class BatchWriter:
    """Writes each committed chunk's certificates and a results.csv line per CSR, with progress."""

    def __init__(self, out: Path, progress: Progress | None, task: TaskID | None) -> None:
        self.out = out
        self.progress = progress
        self.task = task
        self._results: TextIO | None = None
        self._writer: Any = None
        self.errors: list[DeviceOutcome] = []

    def _open(self) -> None:
        """``out`` and its results.csv, made with the first committed chunk: a batch refused before
        any CSR is decided (a wrong passphrase, a locked key, an empty source) leaves nothing behind."""
        if self._results is None:
            self.out.mkdir(parents=True, exist_ok=True)
            self._results = (self.out / "results.csv").open("a", newline="", encoding="utf-8")
            self._writer = csv.writer(self._results)
            if self._results.tell() == 0:
                self._writer.writerow(["item", "status", "serial", "file", "error_code", "error_message"])

    @property
    def results(self) -> TextIO:
        self._open()
        assert self._results is not None
        return self._results

    @property
    def writer(self) -> Any:
        self._open()
        return self._writer

    def __call__(self, outcomes: Sequence[DeviceOutcome]) -> None:
        self._open()
        for outcome in outcomes:
            if outcome.ok:
                assert outcome.der is not None
                name = f"{outcome.file_stem}.pem"
                write_whole(self.out / name, pem(outcome.der))
                self.writer.writerow([outcome.item_id, "issued", outcome.serial, name, "", ""])
            else:
                self.errors.append(outcome)
                self.writer.writerow([outcome.item_id, "rejected", "", "", outcome.error_code,
                                      outcome.error_message])
        self.results.flush()
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task, len(outcomes))

    def close(self) -> None:
        if self._results is not None:
            self._results.close()


def redeliver(opened: Home, batch_ref: str, out: Path, writer: BatchWriter, items: Sequence[BatchItem] | None,
              source: Path | None) -> int:
    """Write out the certificates an earlier run of ``batch_ref`` committed but never wrote (it was
    stopped — Ctrl-C, a crash — between a chunk's commit and its files): a resumed batch skips
    every CSR already issued, so without this their certificates would never reach ``out``.
    Returns how many were written (each also gets its results.csv line)."""
    from smki.services.device_issuance import BATCH_ISSUED_ACTION

    issued: dict[int, tuple[str, str, str]] = {}
    for row in opened.store.audit_rows_for(batch_ref, BATCH_ISSUED_ACTION):
        for serial, device_hex, usage, index in row.details_dict["issued"]:
            issued[int(index)] = (str(serial), str(device_hex), str(usage))
    results = out / "results.csv"
    reported: set[str] = set()
    if results.exists():
        with results.open(newline="", encoding="utf-8") as handle:
            reported = {line["serial"] for line in csv.DictReader(handle) if line.get("serial")}
    missing = {index: entry for index, entry in issued.items() if entry[0] not in reported}
    if not missing:
        return 0
    names: dict[int, str] = {}
    if items is not None or source is not None:
        from smki.services.batch_sources import read_batch_source

        for item in items if items is not None else read_batch_source(source):  # type: ignore[arg-type]
            if item.index in missing:
                names[item.index] = item.item_id
    for index, (serial, device_hex, usage) in sorted(missing.items()):
        record = opened.store.certificate_by_serial(serial)
        if record is None:  # pragma: no cover - the audit record and the certificate commit together
            continue
        name = f"{device_hex}-{usage.lower()}.pem"
        write_whole(out / name, pem(record.der))
        writer.writer.writerow([names.get(index, f"#{index + 1}"), "issued", serial, name, "", ""])
    writer.results.flush()
    return len(missing)


#: Issues one run of a batch: (the opened home, the items still to issue, the batch reference,
#: the writer to hand each committed chunk, the source's digest) → the summary. ``issue batch``
#: issues as the CA operator, ``request batch`` under the RA rules.
IssueRun = Callable[["Home", Iterable["BatchItem"], str, BatchWriter, str], "BatchSummary"]


def run_batch(home: Path, items: Sequence[BatchItem] | None, source: Path | None, out: Path, *, ref_prefix: str,
              issue: IssueRun, resume: str | None = None,
              authorise: Callable[[Home, str], object] | None = None) -> BatchSummary:
    """One run of a Device batch from the CLI, shared by ``issue batch`` and ``request batch``:
    open the home, name the batch (``<ref_prefix>-<time>-<random>``, or ``resume``'s reference),
    show progress, write each committed chunk's certificates and results.csv lines, and report
    the rejected CSRs on stderr. With ``resume`` the certificates its earlier run committed but
    never wrote out are written first (``redeliver``), after ``authorise`` (the RA rules of a
    request batch; that an operator batch to resume was started) has let the batch go on: a
    refused requester gets nothing, not even those."""
    from smki.domain import CertKind
    from smki.services.batch_sources import read_batch_source, source_digest
    from smki.services.device_issuance import check_same_source
    from smki.services.preflight import check_signing_key

    check_out_dir(out)
    # One pass over the source before any: what a resumption's source must give again (its items
    # are skipped by position), and a source that cannot be read refused before the batch starts.
    digest = source_digest(items if items is not None else read_batch_source(source))  # type: ignore[arg-type]
    opened = open_for_signing(home)
    try:
        check_signing_key(opened, CertKind.DEVICE_CA)  # before the batch is audited or anything written
    except BaseException:
        opened.close()
        raise
    batch_ref = resume or f"{ref_prefix}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
    iterable = items if items is not None else read_batch_source(source)  # type: ignore[arg-type]
    progress, total = batch_progress("issuing", items, source)
    with progress:
        task = progress.add_task("issue", total=total)
        writer = BatchWriter(out, progress, task)
        started = resume is not None  # a first run's batch exists once it is being issued
        try:
            if authorise is not None:
                authorise(opened, batch_ref)
            if resume is not None:
                check_same_source(opened, resume, digest)
                delivered = redeliver(opened, resume, out, writer, items, source)
                if delivered:
                    err_console.print(f"wrote {delivered} certificate(s) batch {resume} had committed but not "
                                      f"written out", highlight=False, soft_wrap=True, markup=False)
            started = True
            summary = issue(opened, iterable, batch_ref, writer, digest)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the one line then names the batch to resume
            if started:
                stop_notes.append(f"batch {batch_ref} stopped; continue it with --resume {batch_ref}")
            raise
        finally:
            writer.close()
            opened.close()
    for outcome in writer.errors[:20]:
        err_console.print(f"rejected {outcome.item_id}: {outcome.error_code}: {outcome.error_message}",
                          highlight=False, soft_wrap=True, markup=False)
    if len(writer.errors) > 20:
        err_console.print(f"… and {len(writer.errors) - 20} more (see {out / 'results.csv'})")
    return summary


def exit_if_none_issued(summary: BatchSummary) -> None:
    """Exit 1 when every CSR of the batch was rejected (the summary line is printed first)."""
    if summary.issued == 0 and summary.rejected:
        raise typer.Exit(1)


def _run_batch(home: Path, items: list[BatchItem] | None, source: Path | None, out: Path,
               workers: int | None, chunk_size: int, resume: str | None = None) -> None:
    from smki.services.device_issuance import check_resumable, issue_device_batch
    from smki.services.device_limit import device_limit_screen

    def resumable(opened: Home, batch_ref: str) -> None:
        """On resume, before anything is written out: the batch is one ``smki issue`` started."""
        if resume is not None:
            check_resumable(opened, batch_ref, operator=True)

    def issue(opened: Home, todo: Iterable[BatchItem], batch_ref: str, writer: BatchWriter,
              digest: str) -> BatchSummary:
        # Spec §3.2's 100-per-Device limit has no exception for the CA's own route: held here as on
        # every subscriber route, with the same code (csr.device-limit) and before anything is signed.
        return issue_device_batch(opened, todo, actor=actor(), batch_ref=batch_ref, workers=workers,
                                  chunk_size=chunk_size, on_chunk=writer, resume=resume is not None,
                                  screen=device_limit_screen(opened), source_digest=digest)

    summary = run_batch(home, items, source, out, ref_prefix="cli", issue=issue, resume=resume,
                        authorise=resumable)
    rate = summary.issued / summary.seconds if summary.seconds else 0.0
    console.print(f"batch {summary.batch_ref}: {summary.issued} issued, {summary.rejected} rejected "
                  f"in {summary.seconds:.1f}s ({rate:,.0f} certs/s) → {out}")
    exit_if_none_issued(summary)


@app.command("device")
def device(
    csrs: Annotated[list[Path], typer.Argument(help="Device CSR files (PEM, DER or base64).")],
    out: OutDir,
    home: HomeOption = DEFAULT_HOME_PATH,
) -> None:
    """Issue Device Certificates, one PEM per certificate named <eui>-<ds|ka>.pem."""
    from smki.services.batch_sources import BatchItem

    items = [BatchItem(i, str(path), read_input(path)) for i, path in enumerate(csrs)]
    _run_batch(home, items, None, out, workers=0, chunk_size=500)


@app.command("batch")
def batch(
    source: Annotated[
        Path, typer.Argument(help="A directory of CSR files, a multi-PEM file, or a .json/.csv manifest.")
    ],
    out: OutDir,
    home: HomeOption = DEFAULT_HOME_PATH,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: one per core; 0: none).")] = None,
    chunk_size: Annotated[int, typer.Option(help="CSRs committed per transaction.", min=1, max=10000)] = 500,
    resume: Annotated[str | None, typer.Option(
        "--resume", help="Continue batch REF over the same SOURCE: skip what it issued, issue the rest.")] = None,
) -> None:
    """Issue a batch of Device Certificates using all cores; bad CSRs are reported, not fatal."""
    _run_batch(home, None, source, out, workers=workers, chunk_size=chunk_size, resume=resume)
