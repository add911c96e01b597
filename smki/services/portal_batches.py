"""The SMKI Portal's Device CSR batch file: a ZIP of ``*.csr`` files in, a response ZIP out (spec §3.2).

The DCC's Portal takes a ZIP of up to 50,000 CSR files, each at the ZIP's root and uniquely named,
and answers with a ZIP holding a text record per CSR (identifier, file name, ``success`` | ``error``
| ``anomaly`` | ``ineligible``, error code) and a ZIP of certificates named after the request with
``-response``, each ``<csr-name>.crt`` holding the base64 DER certificate.

Reading is defensive because the ZIP comes from outside: entries are read one at a time with a
per-entry byte cap (so a ZIP bomb costs at most the cap per entry), names are checked before any
data is read, and anything that is not a flat set of ``.csr`` files refuses the whole upload with a
``portal.zip-*`` code. Writing is streamed: certificates go into the inner ZIP and lines into the
record as each committed chunk of the batch arrives, so a 50,000-CSR response never sits in memory.

How a refusal code becomes a DCC status and ``ErrorCode`` is the interface's business (the DCC
code table lives with the web services), so :class:`ResponseWriter` takes a ``classify`` function.
"""

from __future__ import annotations

import base64
import re
import tempfile
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import IO

from smki.errors import SmkiError
from smki.services.batch_sources import MAX_ITEM_BYTES, BatchItem
from smki.services.device_issuance import DeviceOutcome

MAX_CSRS = 50_000
"""Spec §3.2 (App. F): at most 50,000 CSR files per Portal batch."""
MAX_ZIP_BYTES = 128 * 1024 * 1024
"""The largest upload accepted: 50,000 armoured CSRs are about 30 MB, so this leaves ample room."""
RECORD_HEADER = "identifier,file name,status,error code"
STATUSES = ("success", "error", "anomaly", "ineligible")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,250}\.csr$", re.IGNORECASE)
_REQUEST_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class PortalZipError(SmkiError):
    """The uploaded ZIP as a whole is unusable (codes ``portal.zip-*``); nothing was issued."""


@dataclass(frozen=True, slots=True)
class RecordLine:
    """One CSR's line in the response record."""

    identifier: str
    file_name: str
    status: str  # one of STATUSES
    error_code: str = ""

    def render(self) -> str:
        return ",".join(_csv_cell(v) for v in (self.identifier, self.file_name, self.status, self.error_code))


def _csv_cell(value: str) -> str:
    # File names are restricted by _NAME, so quoting is only a guard for the error code column.
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def request_name(filename: str | None) -> str:
    """The request's name for the response files: the upload's file name without ``.zip``, made safe."""
    stem = (filename or "").rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    if stem.lower().endswith(".zip"):
        stem = stem[:-4]
    stem = _REQUEST_NAME.sub("-", stem).strip("-.")[:100]
    return stem or "batch"


def read_portal_zip(source: bytes | IO[bytes], *, max_items: int = MAX_CSRS) -> list[BatchItem]:
    """The CSRs of a Portal batch ZIP, in name order, each with its file name as the item id.

    Refuses the upload (``portal.zip-invalid``, ``-empty``, ``-too-many``, ``-bad-entry``,
    ``-duplicate``) before any CSR is looked at, so a bad file never starts a half batch. A CSR file
    larger than the CA's limit is read only up to one byte past it and refused per CSR by the CA.
    """
    if isinstance(source, bytes):
        if len(source) > MAX_ZIP_BYTES:
            raise PortalZipError("portal.zip-too-large", f"the ZIP is over {MAX_ZIP_BYTES // (1024 * 1024)} MB")
        source = BytesIO(source)
    try:
        archive = zipfile.ZipFile(source)
    except Exception:  # whatever the decoder trips on (BadZipFile, struct/EOF/Unicode errors …): not a ZIP we read
        raise PortalZipError("portal.zip-invalid", "the upload is not a readable ZIP file") from None
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if not infos:
            raise PortalZipError("portal.zip-empty", "the ZIP holds no .csr files")
        if len(infos) > max_items:
            raise PortalZipError(
                "portal.zip-too-many",
                f"Number of submitted CSRs exceeds maximum volume ({len(infos)} > {max_items})",
            )
        seen: set[str] = set()
        for info in infos:
            name = info.filename
            if "/" in name or "\\" in name or not _NAME.match(name):
                raise PortalZipError(
                    "portal.zip-bad-entry",
                    f"{name[:80]!r} is not a .csr file at the ZIP's root (letters, digits, . _ - and space)",
                )
            if name.lower() in seen:
                raise PortalZipError("portal.zip-duplicate", f"{name!r} appears more than once")
            seen.add(name.lower())
            if info.flag_bits & 0x1:
                raise PortalZipError("portal.zip-invalid", f"{name!r} is encrypted; upload a plain ZIP")
        items = []
        for index, info in enumerate(sorted(infos, key=lambda i: i.filename)):
            try:
                with archive.open(info) as handle:
                    data = handle.read(MAX_ITEM_BYTES + 1)
            except Exception:  # a corrupt deflate/bzip2/LZMA stream (zlib.error, LZMAError, EOFError …), a bad CRC
                raise PortalZipError("portal.zip-invalid", f"{info.filename!r} cannot be read from the ZIP") from None
            items.append(BatchItem(index, info.filename, data))
        return items


def write_portal_zip(files: Sequence[tuple[str, bytes]]) -> bytes:
    """A Portal batch ZIP of ``(name, csr text)`` pairs: what a Party's tooling uploads (tests, demos)."""
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()


Classify = Callable[[DeviceOutcome], tuple[str, str]]
"""Turns one refused CSR into (record status, DCC error code); supplied by the interface."""


def _csr_stem(file_name: str) -> str:
    return file_name[:-4] if file_name.lower().endswith(".csr") else file_name


@dataclass
class ResponseWriter:
    """Builds the response ZIP as the batch's committed chunks arrive (see the module docstring).

    ``add`` is given each chunk's outcomes in order; ``finish`` writes the outer ZIP to ``path``.
    The inner certificates ZIP is spooled to a temporary file, never held whole in memory.
    """

    name: str
    classify: Classify
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    _lines: list[str] = field(default_factory=list)
    _spool: IO[bytes] = field(default_factory=lambda: tempfile.TemporaryFile())  # noqa: SIM115
    _certs: zipfile.ZipFile | None = None

    def __post_init__(self) -> None:
        self._certs = zipfile.ZipFile(self._spool, "w", zipfile.ZIP_DEFLATED)
        self._lines.append(RECORD_HEADER)

    def add(self, outcomes: Sequence[DeviceOutcome]) -> None:
        assert self._certs is not None, "the response is already finished"
        for outcome in outcomes:
            if outcome.ok:
                assert outcome.der is not None
                line = RecordLine(str(outcome.index + 1), outcome.item_id, "success")
                self._certs.writestr(f"{_csr_stem(outcome.item_id)}.crt", base64.b64encode(outcome.der))
            else:
                status, code = self.classify(outcome)
                if status not in STATUSES or status == "success":
                    raise ValueError(f"classify returned {status!r} for a refused CSR")
                line = RecordLine(str(outcome.index + 1), outcome.item_id, status, code)
            self.counts[line.status] += 1
            self._lines.append(line.render())

    def finish(self, path: Path) -> Path:
        """Write ``<name>-response.txt`` and ``<name>-response.zip`` into one ZIP at ``path``."""
        assert self._certs is not None, "the response is already finished"
        self._certs.close()
        self._certs = None
        self._spool.seek(0)
        tmp = path.with_suffix(".part")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as outer:
            outer.writestr(f"{self.name}-response.txt", "\r\n".join(self._lines) + "\r\n")
            with outer.open(f"{self.name}-response.zip", "w") as inner:
                while chunk := self._spool.read(1 << 20):
                    inner.write(chunk)
        self._spool.close()
        tmp.replace(path)
        return path


@dataclass(frozen=True)
class PortalResponse:
    """A response ZIP read back: the record lines and the certificates (name → DER)."""

    lines: list[RecordLine]
    certificates: dict[str, bytes]


def read_response_zip(data: bytes, name: str) -> PortalResponse:
    """Read a response ZIP made by :class:`ResponseWriter` (for tests and for Parties' tooling)."""
    with zipfile.ZipFile(BytesIO(data)) as outer:
        record = outer.read(f"{name}-response.txt").decode("ascii")
        inner_bytes = outer.read(f"{name}-response.zip")
    rows = [r for r in record.split("\r\n") if r]
    if not rows or rows[0] != RECORD_HEADER:
        raise SmkiError("portal.response-invalid", "the response record has no header line")
    lines = [RecordLine(*_split(row)) for row in rows[1:]]
    with zipfile.ZipFile(BytesIO(inner_bytes)) as inner:
        certs = {n: base64.b64decode(inner.read(n), validate=True) for n in inner.namelist()}
    return PortalResponse(lines, certs)


def _split(row: str) -> list[str]:
    import csv

    return next(csv.reader([row]))


# ---------------------------------------------------------------------------------------------
# Batch jobs: one background thread per uploaded ZIP, with progress the Portal polls.


@dataclass
class PortalBatch:
    """A Portal batch's live state. ``done``/``total`` drive the progress page."""

    batch_ref: str
    party_id: str
    name: str
    total: int
    done: int = 0
    status: str = "QUEUED"  # QUEUED, PROCESSING, COMPLETED, FAILED (DCC BatchStatus words)
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    response_path: Path | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: Each CSR file that did not get a certificate: (file name, DCC status, error code, message),
    #: the first MAX_SHOWN_FAILURES of them (the response ZIP's record has every one).
    failures: list[tuple[str, str, str, str]] = field(default_factory=list)
    failed: int = 0

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else int(100 * self.done / self.total)

    def as_json(self) -> dict[str, object]:
        return {
            "batch": self.batch_ref, "name": self.name, "status": self.status, "done": self.done,
            "total": self.total, "percent": self.percent, "counts": dict(self.counts), "error": self.error,
        }


MAX_SHOWN_FAILURES = 1_000

RunBatch = Callable[[Sequence[BatchItem], Callable[[Sequence[DeviceOutcome]], None]], object]
"""Issues a batch, calling back with each committed chunk (``request_device_batch`` bound to a requester)."""


class PortalBatches:
    """The batches of one server process, keyed by reference; each Party sees only its own.

    State is in memory and the response ZIP on disk under ``directory``: a server restart loses the
    progress display but not a single certificate (issuance commits chunk by chunk, and
    ``smki issue --resume`` can finish an interrupted batch).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._batches: dict[str, PortalBatch] = {}

    def get(self, batch_ref: str, party_id: str) -> PortalBatch:
        with self._lock:
            batch = self._batches.get(batch_ref)
        if batch is None or batch.party_id != party_id:
            raise SmkiError("portal.batch-unknown", f"no batch {batch_ref!r} for this Party")
        return batch

    def for_party(self, party_id: str) -> list[PortalBatch]:
        with self._lock:
            return [b for b in self._batches.values() if b.party_id == party_id]

    def start(self, *, batch_ref: str, party_id: str, name: str, items: Sequence[BatchItem],
              classify: Classify, run: RunBatch, background: bool = True) -> PortalBatch:
        """Register the batch and issue it (in a thread unless ``background=False``)."""
        batch = PortalBatch(batch_ref, party_id, name, len(items))
        with self._lock:
            self._batches[batch_ref] = batch
        if background:
            threading.Thread(target=self._run, args=(batch, items, classify, run), daemon=True,
                             name=f"portal-batch-{batch_ref}").start()
        else:
            self._run(batch, items, classify, run)
        return batch

    def _run(self, batch: PortalBatch, items: Sequence[BatchItem], classify: Classify, run: RunBatch) -> None:
        writer = ResponseWriter(batch.name, classify)
        batch.status = "PROCESSING"

        def on_chunk(outcomes: Sequence[DeviceOutcome]) -> None:
            writer.add(outcomes)
            for outcome in outcomes:
                if not outcome.ok:
                    batch.failed += 1
                    if len(batch.failures) < MAX_SHOWN_FAILURES:
                        status, code = classify(outcome)
                        batch.failures.append((outcome.item_id, status, code, outcome.error_message or ""))
            batch.done += len(outcomes)
            batch.counts = dict(writer.counts)

        try:
            run(items, on_chunk)
            self.directory.mkdir(parents=True, exist_ok=True)
            batch.response_path = writer.finish(self.directory / f"{batch.batch_ref}.zip")
            batch.status = "COMPLETED"
        except SmkiError as exc:
            batch.error = f"{exc.code}: {exc.message}"
            batch.status = "FAILED"
        except Exception as exc:  # the thread must always end in a state the page can show
            batch.error = f"batch.failed: {type(exc).__name__}"
            batch.status = "FAILED"

