"""The SMKI Portal's Device CSR batch file: a ZIP of ``*.csr`` files in, a response ZIP out (spec §3.2).

The DCC's Portal takes a ZIP of up to 50,000 CSR files, each at the ZIP's root and uniquely named,
and answers with a ZIP holding a text record per CSR (identifier, file name, ``success`` | ``error``
| ``anomaly`` | ``ineligible``, error code) and a ZIP of certificates named after the request with
``-response``, each ``<csr-name>.crt`` holding the base64 DER certificate.

Reading is defensive because the ZIP comes from outside: entries are read one at a time with a
per-entry byte cap (so a ZIP bomb costs at most the cap per entry), names are checked before any
data is read, and anything that is not a flat set of ``.csr`` files refuses the whole upload with a
``portal.zip-*`` code. An accepted ZIP becomes a stored batch with the lifecycle of every batch
(:func:`submit_portal_batch`). Writing the response is streamed from the stored outcomes once the
batch has completed: certificates go into the inner ZIP and lines into the record a page at a time,
so a 50,000-CSR response never sits in memory.

How a refusal code becomes a DCC status and ``ErrorCode`` is the interface's business (the DCC
code table lives with the web services), so :class:`ResponseWriter` takes a ``classify`` function.
"""

from __future__ import annotations

import base64
import re
import struct
import tempfile
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import IO

from smki.errors import SmkiError
from smki.services.batch_sources import MAX_ITEM_BYTES, BatchItem
from smki.services.capacity import CapacitySettings
from smki.services.context import Home
from smki.services.device_issuance import DeviceOutcome
from smki.services.requests import Requester
from smki.store.batches import BatchJobRecord, batch_reads

MAX_CSRS = 50_000
"""Spec §3.2 (App. F): at most 50,000 CSR files per Portal batch."""
MAX_ZIP_BYTES = 128 * 1024 * 1024
"""The largest upload accepted: 50,000 armoured CSRs are about 30 MB, so this leaves ample room."""
MAX_UNPACKED_BYTES = 64 * 1024 * 1024
"""The most the CSR files of one ZIP may come to once unpacked (what a JSON batch's body may be): the
per-file cap alone would let a few MB of ZIP unpack to 50,000 x 64 KiB = 3.2 GB, held and stored."""
RECORD_HEADER = "identifier,file name,status,error code"
STATUSES = ("success", "error", "anomaly", "ineligible")
#: A CSR file's name: at most 100 characters (the store keeps each CSR's name as its item id).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,95}\.csr$", re.IGNORECASE)
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


#: Entries beyond ``max_items`` a ZIP may declare before its directory is read: its folders, which
#: are skipped (a CSR file must be at the root), and so are not counted as CSRs.
MAX_OTHER_ENTRIES = 1_000
_END = struct.Struct("<4s4H2LH")  # end of central directory: signature, disk numbers, entries, size, offset
_END_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # signature, disk, offset of the ZIP64 end record, disks
_ZIP64_END = struct.Struct("<4sQ2H2L2Q2Q")  # signature, size, versions, disks, entries here, entries, …


def declared_entries(source: IO[bytes]) -> int | None:
    """How many entries a ZIP's end record says its central directory holds, read from its last
    64 KiB; None when there is no such record (``zipfile`` then decides what the file is).

    ``zipfile.ZipFile`` reads the whole central directory as it opens a file, an object per entry:
    a 128 MB upload of empty entries is over a million of them, ~0.5 GB and most of a minute
    before the count could be checked. Reading the count first refuses that at once. The
    position is restored.
    """
    found = _end_record(source)
    return None if found is None else found[0]


def _end_record(source: IO[bytes]) -> tuple[int, int] | None:
    """(entries, central directory size) from the end record, the ZIP64 one if it defers to it."""
    start = source.tell()
    try:
        size = source.seek(0, 2)
        tail_start = max(0, size - _END.size - 0xFFFF)
        source.seek(tail_start)
        tail = source.read()
        at = tail.rfind(_END_SIGNATURE)
        if at < 0 or len(tail) - at < _END.size:
            return None
        end = _END.unpack_from(tail, at)
        entries, directory = end[4], end[5]
        if entries != 0xFFFF and directory != 0xFFFFFFFF:
            return int(entries), int(directory)
        locator_at = at - _ZIP64_LOCATOR.size  # ZIP64: the figures are in the ZIP64 end record
        if locator_at < 0 or tail[locator_at:locator_at + 4] != b"PK\x06\x07":
            return None
        record_at = _ZIP64_LOCATOR.unpack_from(tail, locator_at)[2]
        source.seek(record_at)
        record = source.read(_ZIP64_END.size)
        if len(record) < _ZIP64_END.size or record[:4] != b"PK\x06\x06":
            return None
        fields = _ZIP64_END.unpack(record)
        return int(fields[7]), int(fields[8])
    finally:
        source.seek(start)


#: The most a central directory of ``max_items`` CSR entries and ``MAX_OTHER_ENTRIES`` others can
#: need: 46 octets of fixed header, a name of at most 100 (``_NAME``), and room for extra fields
#: (ZIP64 sizes, timestamps: a few dozen octets as tools write them) and a comment.
_DIRECTORY_BYTES_PER_ENTRY = 46 + 100 + 256


def read_portal_zip(source: bytes | IO[bytes], *, max_items: int = MAX_CSRS) -> list[BatchItem]:
    """The CSRs of a Portal batch ZIP, in name order, each with its file name as the item id.

    Refuses the upload (``portal.zip-invalid``, ``-empty``, ``-too-many``, ``-bad-entry``,
    ``-duplicate``, ``-too-large``) before any CSR is looked at, so a bad file never starts a half batch. A CSR file
    larger than the CA's limit is read only up to one byte past it and refused per CSR by the CA.
    """
    if isinstance(source, bytes):
        if len(source) > MAX_ZIP_BYTES:
            raise PortalZipError("portal.zip-too-large", f"the ZIP is over {MAX_ZIP_BYTES // (1024 * 1024)} MB")
        source = BytesIO(source)
    declared = _end_record(source)
    if declared is not None and declared[0] > max_items + MAX_OTHER_ENTRIES:
        raise PortalZipError(
            "portal.zip-too-many", f"Number of submitted CSRs exceeds maximum volume ({declared[0]} > {max_items})")
    if declared is not None and declared[1] > (max_items + MAX_OTHER_ENTRIES) * _DIRECTORY_BYTES_PER_ENTRY:
        raise PortalZipError(
            "portal.zip-too-many", f"the ZIP's directory is too large for {max_items} CSRs ({declared[1]} bytes)")
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
            if "/" in name or "\\" in name or not _NAME.fullmatch(name):
                raise PortalZipError(
                    "portal.zip-bad-entry",
                    f"{name[:80]!r} is not a .csr file at the ZIP's root (up to 100 letters, digits, . _ - and spaces)",
                )
            if name.lower() in seen:
                raise PortalZipError("portal.zip-duplicate", f"{name!r} appears more than once")
            seen.add(name.lower())
            if info.flag_bits & 0x1:
                raise PortalZipError("portal.zip-invalid", f"{name!r} is encrypted; upload a plain ZIP")
        too_large = PortalZipError(
            "portal.zip-too-large",
            f"the ZIP's files come to over {MAX_UNPACKED_BYTES // (1024 * 1024)} MB once unpacked",
        )
        if sum(min(info.file_size, MAX_ITEM_BYTES + 1) for info in infos) > MAX_UNPACKED_BYTES:
            raise too_large  # as the ZIP declares it: refused before anything is unpacked
        items = []
        unpacked = 0
        for index, info in enumerate(sorted(infos, key=lambda i: i.filename)):
            try:
                with archive.open(info) as handle:
                    data = handle.read(MAX_ITEM_BYTES + 1)
            except Exception:  # a corrupt deflate/bzip2/LZMA stream (zlib.error, LZMAError, EOFError …), a bad CRC
                raise PortalZipError("portal.zip-invalid", f"{info.filename!r} cannot be read from the ZIP") from None
            unpacked += len(data)
            if unpacked > MAX_UNPACKED_BYTES:  # as it unpacks (a ZIP can understate its sizes)
                raise too_large
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


_UNSAFE_ENTRY = re.compile(r"[^A-Za-z0-9._ -]+")


def _entry_stem(item_id: str) -> str:
    """A certificate's name in the response ZIP from its CSR's id. A Portal upload's ids are safe file
    names already (``_NAME``) and stay as they are; a JSON or XML batch's ids are any text, and
    ``../../x`` or ``/etc/x`` would make unzip write outside its folder: every other character
    becomes ``_`` and leading dots go."""
    return _UNSAFE_ENTRY.sub("_", _csr_stem(item_id)).lstrip(". ") or "csr"


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
    _entries: set[str] = field(default_factory=set)  # the certificate names used, lower case

    def __post_init__(self) -> None:
        self._certs = zipfile.ZipFile(self._spool, "w", zipfile.ZIP_DEFLATED)
        self._lines.append(RECORD_HEADER)

    def add(self, outcomes: Sequence[DeviceOutcome]) -> None:
        assert self._certs is not None, "the response is already finished"
        for outcome in outcomes:
            if outcome.ok:
                assert outcome.der is not None
                line = RecordLine(str(outcome.index + 1), outcome.item_id, "success")
                self._certs.writestr(self._entry(outcome), base64.b64encode(outcome.der))
            else:
                status, code = self.classify(outcome)
                if status not in STATUSES or status == "success":
                    raise ValueError(f"classify returned {status!r} for a refused CSR")
                line = RecordLine(str(outcome.index + 1), outcome.item_id, status, code)
            self.counts[line.status] += 1
            self._lines.append(line.render())

    def _entry(self, outcome: DeviceOutcome) -> str:
        """``<csr-name>.crt`` made safe, unique (case-insensitively) within the ZIP: ids that were
        made alike (``a/b``, ``a_b``) get ``~<line>`` from their record line."""
        stem = _entry_stem(outcome.item_id)
        name, suffix = f"{stem}.crt", outcome.index + 1
        while name.lower() in self._entries:  # ("a_b~5" may itself be another CSR's id)
            name, suffix = f"{stem}~{suffix}.crt", suffix + 100_000
        self._entries.add(name.lower())
        return name

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
# Batch jobs: an uploaded ZIP is a stored batch like any other (issue 13 point 2).

PORTAL_INTERFACE = "portal"
MAX_SHOWN_FAILURES = 1_000
#: Statuses in which a Portal batch is still to run; its page keeps polling.
WAITING = ("PENDING", "QUEUED", "PAUSED", "PROCESSING")


#: How the Portal names the interface a batch came through.
INTERFACE_NAMES = {PORTAL_INTERFACE: "Portal", "json": "JSON", "xml": "XML"}


@dataclass(frozen=True)
class PortalBatch:
    """A batch as its Portal page shows it, read from the store (any server process ran it): uploaded
    here or sent over the JSON API or the XML services, every batch has a page (issue 14)."""

    job: BatchJobRecord
    #: Each record status word (success, error, anomaly, ineligible) and how many CSRs have it so far.
    counts: dict[str, int]
    #: Each CSR file that did not get a certificate: (file name, record status, DCC error code, message),
    #: the first MAX_SHOWN_FAILURES of them (the response ZIP's record has every one).
    failures: list[tuple[str, str, str, str]]

    @property
    def batch_ref(self) -> str:
        return str(self.job.id)

    @property
    def name(self) -> str:
        """The uploaded ZIP's name, or the reference a system gave its batch (``batch-<id>`` if none)."""
        return self.job.client_ref or f"batch-{self.job.id}"

    @property
    def interface(self) -> str:
        return INTERFACE_NAMES.get(self.job.interface, self.job.interface)

    @property
    def status(self) -> str:
        return self.job.status

    @property
    def total(self) -> int:
        return self.job.total

    @property
    def done(self) -> int:
        return self.job.processed

    @property
    def failed(self) -> int:
        return self.job.rejected

    @property
    def percent(self) -> int:
        return 100 if self.job.total == 0 else int(100 * self.job.processed / self.job.total)

    @property
    def error(self) -> str | None:
        """Why the RA rejected the batch, or what stopped it as a whole."""
        if self.job.status == "REJECTED":
            return f"Rejected by the RA: {self.job.error_text or 'no reason given'}"
        if self.job.error_code:
            return f"{self.job.error_code}: {self.job.error_text or ''}"
        return None

    def as_json(self) -> dict[str, object]:
        return {
            "batch": self.batch_ref, "name": self.name, "interface": self.interface, "status": self.status,
            "done": self.done,
            "total": self.total, "percent": self.percent, "counts": dict(self.counts), "error": self.error,
        }


def submit_portal_batch(home: Home, requester: Requester, items: Sequence[BatchItem], name: str,
                        capacity: CapacitySettings) -> BatchJobRecord:
    """Accept an uploaded ZIP's CSRs as a stored batch (file names as item ids): the RA request rules,
    capacity and the lifecycle of every batch — PENDING until the RA approves it (or QUEUED under the
    auto-approval policy), PAUSED outside the processing window, REJECTED with a reason — and the
    server's batch runner issues it, restart-safe, as it does JSON and XML batches."""
    from smki.services.batch_jobs import submit_batch

    return submit_batch(home, requester, [(item.item_id, item.data) for item in items],
                        interface=PORTAL_INTERFACE, client_ref=name, capacity=capacity)


def portal_batch(home: Home, job_id: int, party_id: str, classify: Classify) -> PortalBatch:
    """A Party's own batch, whichever interface it came through, with its counts and first failures
    (``batch.not-found`` for another Party's)."""
    from smki.services.batch_jobs import job_for_party

    job = job_for_party(home, job_id, party_id)
    reads = batch_reads(home.store)
    counts = dict.fromkeys(STATUSES, 0)
    counts["success"] = job.issued
    failures: list[tuple[str, str, str, str]] = []
    if job.rejected:
        for code, n in reads.refusal_codes(job.id).items():
            counts[classify(DeviceOutcome(0, "", error_code=code, error_message=code))[0]] += n
        for idx, item_id, error_code, text in reads.refused_items(job.id, limit=MAX_SHOWN_FAILURES):
            word, dcc_code = classify(DeviceOutcome(idx, item_id, error_code=error_code, error_message=text))
            failures.append((item_id, word, dcc_code, text or ""))
    return PortalBatch(job, counts, failures)


_building = threading.Lock()


def response_zip(home: Home, batch: PortalBatch, classify: Classify, directory: Path) -> Path:
    """The finished batch's response ZIP (spec §3.2), written once from the stored outcomes and kept
    beside the Portal's other files while the batch is (30 days); ``portal.batch-not-ready`` before."""
    if batch.status != "COMPLETED":
        raise SmkiError("portal.batch-not-ready", "the batch has not finished yet")
    path = directory / f"{batch.job.ref}.zip"
    with _building:  # two downloads at once write it once
        if not path.exists():
            directory.mkdir(parents=True, exist_ok=True)
            writer = ResponseWriter(request_name(batch.name), classify)
            page: list[DeviceOutcome] = []
            for row in batch_reads(home.store).iter_result_rows(batch.job.id):
                page.append(DeviceOutcome(row.idx, row.item_id, der=row.der, error_code=row.error_code,
                                          error_message=row.error_text)
                            if row.der is None else DeviceOutcome(row.idx, row.item_id, der=row.der))
                if len(page) >= 2000:
                    writer.add(page)
                    page = []
            writer.add(page)
            writer.finish(path)
    return path
