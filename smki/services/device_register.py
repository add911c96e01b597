"""The device register (issue 13 point 1): smki's stand-in for the DCC's Smart Metering Inventory.

Each Device ID has a device type, an SMI status and the Parties responsible for it (Import
Supplier, Gas Supplier, Network Operator), and every change is kept with the date it takes effect
and who recorded it. The RA reads it per CSR for the Eligible Subscriber check (SEC L3.16, rule
``device.eligible-subscriber``).

Bulk import and update read CSV or JSON Lines as a stream, in chunks of ``CHUNK`` rows, each chunk
one transaction with one audit record; an update is an import of the Devices' new full state (the
last row for a Device ID wins). A bad row stops the import with its line number; the chunks before
it are committed (the error says how many rows), and importing the file again is harmless (an upsert).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import operator
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from smki.audit import AuditEvent
from smki.domain import DeviceType, SmiStatus
from smki.errors import NotFound, SmkiError
from smki.eui64 import eui64_hex, parse_eui64
from smki.ra import StaffAction
from smki.services.context import Home
from smki.services.ra_state import today
from smki.services.staff import require_action
from smki.store.devices import DeviceChangeRecord, DeviceRecord, DeviceRow, device_reads, device_writes

CHUNK = 10_000
#: UTF-8, with or without the byte-order mark spreadsheet programs put before a CSV export's header
#: (read as plain UTF-8, it made the first column ``\ufeffdevice_id`` and the header "lack device_id").
TEXT_ENCODING = "utf-8-sig"
COLUMNS = ("device_id", "device_type", "smi_status", "import_supplier", "gas_supplier", "network_operator",
           "effective")
_PARTY_FIELDS = ("import_supplier", "gas_supplier", "network_operator")


@dataclass(frozen=True)
class ImportSummary:
    rows: int
    chunks: int
    seconds: float


def _bad(line: int, message: str, code: str = "device.bad-row") -> SmkiError:
    """A bad row of an import (``row N: …``) or, with ``line`` 0, a bad single record. An invalid
    Device ID keeps the code every other bad EUI-64 has, ``eui64.invalid``."""
    return SmkiError(code, f"row {line}: {message}" if line else message)


_TYPES = {t.value: t.value for t in DeviceType}
_STATUSES = {s.value: s.value for s in SmiStatus}


def device_row(values: dict[str, Any], parties: frozenset[str], line: int = 0, on: date | None = None) -> DeviceRow:
    """One register row from text values, checked: EUI-64, known type and status, known Parties.

    Written for speed (it runs for every row of a million-row import): dictionary look-ups rather
    than enum construction, and the parsers only when the plain form does not match.
    """
    get = values.get
    try:
        device_id = parse_eui64(str(get("device_id") or ""))
    except SmkiError as exc:
        raise _bad(line, f"device_id: {exc.message}", exc.code) from None
    device_type = _TYPES.get(str(get("device_type") or "").upper())
    if device_type is None:
        raise _bad(line, f"device_type {str(get('device_type'))[:20]!r} is not one of {', '.join(_TYPES)}")
    status = _STATUSES.get(str(get("smi_status") or "").lower())
    if status is None:
        raise _bad(line, f"smi_status {str(get('smi_status'))[:30]!r} is not one of {', '.join(_STATUSES)}")
    named: list[str | None] = []
    for field in _PARTY_FIELDS:
        party = get(field) or None
        if party is not None:
            party = str(party).strip() or None
            if party is not None and party not in parties:
                raise _bad(line, f"{field} {party[:64]!r} is not a registered Party")
        named.append(party)
    effective_text = get("effective")
    if effective_text:
        try:
            effective = date.fromisoformat(str(effective_text).strip())
        except ValueError:
            raise _bad(line, f"effective {str(effective_text)[:20]!r} is not a date (YYYY-MM-DD)") from None
    else:
        effective = on or today()
    return DeviceRow(device_id, device_type, status, named[0], named[1], named[2], effective)


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, values) of each row of a CSV (with a header) or JSON Lines file, streamed; ``.json``
    may also be one array (read whole)."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding=TEXT_ENCODING) as handle:
            reader = csv.DictReader(handle)
            missing = {"device_id", "device_type", "smi_status"} - set(reader.fieldnames or ())
            if missing:
                raise SmkiError("device.bad-file", f"{path.name}: the CSV header lacks {', '.join(sorted(missing))}")
            for number, values in enumerate(reader, start=2):
                yield number, values
        return
    with path.open(encoding=TEXT_ENCODING) as handle:
        first = handle.read(1)
        while first.isspace():
            first = handle.read(1)
        if first == "[":
            try:
                rows = json.loads(first + handle.read())
            except json.JSONDecodeError as exc:
                raise SmkiError("device.bad-file", f"{path.name}: not JSON ({exc.msg})") from None
            for number, values in enumerate(rows, start=1):
                yield number, _object(values, number)
            return
        for number, line in enumerate(io.StringIO(first + handle.readline()), start=1):
            yield number, _json_line(line, number)
        for number, line in enumerate(handle, start=2):
            if line.strip():
                yield number, _json_line(line, number)


def _json_line(line: str, number: int) -> dict[str, Any]:
    try:
        return _object(json.loads(line), number)
    except json.JSONDecodeError as exc:
        raise _bad(number, f"not JSON ({exc.msg})") from None


def _object(values: object, number: int) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise _bad(number, "each row is a JSON object")
    return values


def _party_ids(home: Home) -> frozenset[str]:
    return frozenset(p.party_id for p in home.store.registry.parties())


def import_rows(home: Home, rows: Iterable[tuple[int, dict[str, Any]]], *, actor: str,
                chunk: int = CHUNK) -> ImportSummary:
    """Check and upsert rows in chunks (each one transaction with its audit record)."""
    import time

    started = time.perf_counter()
    parties = _party_ids(home)
    on = today()
    count = chunks = 0
    batch: list[DeviceRow] = []

    committed = 0

    def flush() -> None:
        nonlocal chunks, committed
        with home.store.transaction() as tx:
            device_writes(tx).put(batch, actor)
            tx.append_audit([_imported(actor, batch[0].device_id, batch[-1].device_id, len(batch))])
        chunks += 1
        committed += len(batch)
        batch.clear()

    try:
        for line, values in rows:
            batch.append(device_row(values, parties, line, on))
            count += 1
            if len(batch) >= chunk:
                flush()
        if batch:
            flush()
    except SmkiError as exc:
        raise _with_committed(exc, committed) from None
    return ImportSummary(count, chunks, time.perf_counter() - started)


#: Spellings of each device type and SMI status that :func:`device_row` accepts (it upper-cases the
#: type and lower-cases the status), for the fast path's one dictionary look-up.
_TYPE_SPELLINGS = {spelling: value for value in _TYPES.values() for spelling in (value, value.lower())}
_STATUS_SPELLINGS = {spelling: value for value in _STATUSES.values() for spelling in (value, value.upper())}
#: What the fast check raises when a row is not in the plain form it knows: the row then goes through
#: :func:`device_row`, which either reads it all the same or names what is wrong with it.
_NOT_PLAIN = (KeyError, TypeError, ValueError)


class _Checker:
    """:func:`device_row` for a million rows: the same result (or the same error, through
    :func:`device_row` itself) for every row, but a plain row — 16 hex digits, a type and status as
    spelled in the enums, registered Party ids, an ISO date — costs a few dictionary look-ups and
    gives a :data:`DeviceRecord` tuple rather than a record object."""

    def __init__(self, parties: frozenset[str], on: date) -> None:
        self.parties = parties
        self.plain_parties = frozenset(p for p in parties if p and p == p.strip())
        self.on = on
        self.dates: dict[str, date] = {}

    def fast(self, fields: tuple[Any, ...]) -> DeviceRecord:
        """The record of one row's values in :data:`COLUMNS` order; one of :data:`_NOT_PLAIN` when
        the row is not plain."""
        device_id, device_type, status, import_supplier, gas_supplier, network_operator, effective = fields
        raw = bytes.fromhex(device_id)  # 16 characters giving 8 octets: 16 hex digits, nothing else
        if len(raw) != 8 or len(device_id) != 16:
            raise ValueError(device_id)
        parties = self.plain_parties
        if import_supplier:
            if import_supplier not in parties:
                raise KeyError(import_supplier)
        else:
            import_supplier = None
        if gas_supplier:
            if gas_supplier not in parties:
                raise KeyError(gas_supplier)
        else:
            gas_supplier = None
        if network_operator:
            if network_operator not in parties:
                raise KeyError(network_operator)
        else:
            network_operator = None
        return (raw, _TYPE_SPELLINGS[device_type], _STATUS_SPELLINGS[status], import_supplier, gas_supplier,
                network_operator, self.dates[effective] if effective else self.on)

    def slow(self, values: dict[str, Any], line: int) -> DeviceRecord:
        """A row that is not plain, through :func:`device_row` (which raises ``device.bad-row``, or
        ``eui64.invalid`` for the Device ID)."""
        row = device_row(values, self.parties, line, self.on)
        effective = values.get("effective")
        if effective and isinstance(effective, str):  # later rows of this date take the fast path
            self.dates[effective] = row.effective
        return (row.device_id, row.device_type, row.smi_status, row.import_supplier, row.gas_supplier,
                row.network_operator, row.effective)


def _csv_records(path: Path, check: _Checker) -> Iterator[DeviceRecord]:
    """The rows of a CSV file as :data:`DeviceRecord` tuples, read as :func:`read_rows` reads them
    (the same header check, row numbers and values) but with ``csv.reader``, not a dict per row."""
    with path.open(newline="", encoding=TEXT_ENCODING) as handle:
        reader = csv.reader(handle)
        header = next(reader, None) or []
        missing = {"device_id", "device_type", "smi_status"} - set(header)
        if missing:
            raise SmkiError("device.bad-file", f"{path.name}: the CSV header lacks {', '.join(sorted(missing))}")
        width = len(header)
        index = {name: i for i, name in enumerate(header)}  # a repeated name: its last column, as DictReader
        pick = operator.itemgetter(*(index.get(name, width) for name in COLUMNS))  # absent: the "" appended
        fast, slow = check.fast, check.slow
        number = 1
        for row in reader:
            if not row:  # DictReader skips blank lines without counting them
                continue
            number += 1
            if len(row) == width:
                row.append("")
                try:
                    yield fast(pick(row))
                    continue
                except _NOT_PLAIN:
                    del row[width:]
            values: dict[Any, Any] = dict(zip(header, row, strict=False))
            if len(row) > width:
                values[None] = row[width:]
            for name in header[len(row):]:
                values[name] = None
            yield slow(values, number)


def _dict_records(rows: Iterable[tuple[int, dict[str, Any]]], check: _Checker) -> Iterator[DeviceRecord]:
    fast, slow = check.fast, check.slow
    for line, values in rows:
        try:
            yield fast(tuple(map(values.get, COLUMNS)))
        except _NOT_PLAIN:
            yield slow(values, line)


def import_path(home: Home, path: Path, *, actor: str, chunk: int = CHUNK,
                on_chunk: Callable[[int], None] | None = None) -> ImportSummary:
    """:func:`import_rows` of a file (``read_rows``), fast: CSV is read with ``csv.reader`` and rows
    in plain form are checked by look-ups into tuples (:class:`_Checker`), handed to the store in
    chunks (:meth:`~smki.store.devices.DeviceWrites.put_records`: ``COPY`` on PostgreSQL). The register
    it leaves, the chunks and audit records, and any error are those of :func:`import_rows`
    (tests/store/test_device_bulk.py)."""
    if not path.is_file():
        raise SmkiError("device.bad-file", f"{path}: {'a directory' if path.is_dir() else 'no such file'}, "
                        "not a CSV or JSON Lines file")
    check = _Checker(_party_ids(home), today())
    records = _csv_records(path, check) if path.suffix.lower() == ".csv" else _dict_records(read_rows(path), check)
    done = [0]

    def committed(rows: int) -> None:
        done[0] += rows
        if on_chunk is not None:
            on_chunk(rows)

    try:
        return _import_records(home, records, actor=actor, chunk=chunk, on_chunk=committed)
    except UnicodeDecodeError as exc:  # chunks before the bad bytes are committed, as for a bad row
        raise _with_committed(SmkiError("device.bad-file", f"{path.name}: not UTF-8 text (byte {exc.start} of a "
                                        "read)"), done[0]) from None
    except csv.Error as exc:  # a field over the csv module's limit (131,072 characters), a NUL byte …
        raise _with_committed(SmkiError("device.bad-file", f"{path.name}: not a CSV file smki reads ({exc})"),
                              done[0]) from None
    except SmkiError as exc:
        raise _with_committed(exc, done[0]) from None


def _with_committed(error: SmkiError, rows: int) -> SmkiError:
    """``error``, saying that the chunks before it are in the register (else the operator cannot tell
    an import that stopped at row 25,001 from one that changed nothing)."""
    if not rows:
        return error
    return type(error)(error.code, f"{error.message}; the {rows:,} rows before it are imported (each chunk "
                                   "commits on its own; importing the fixed file again is harmless)")


def _import_records(home: Home, records: Iterable[DeviceRecord], *, actor: str, chunk: int,
                    on_chunk: Callable[[int], None] | None = None) -> ImportSummary:
    import time

    started = time.perf_counter()
    count = chunks = 0
    for batch in _batched(records, chunk):
        with home.store.transaction() as tx:
            device_writes(tx).put_records(batch, actor)
            tx.append_audit([_imported(actor, batch[0][0], batch[-1][0], len(batch))])
        count += len(batch)
        chunks += 1
        if on_chunk is not None:
            on_chunk(len(batch))  # after the commit: what a progress bar shows is in the register
    return ImportSummary(count, chunks, time.perf_counter() - started)


def _batched(records: Iterable[DeviceRecord], size: int) -> Iterator[list[DeviceRecord]]:
    iterator = iter(records)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _imported(actor: str, first: bytes, last: bytes, rows: int) -> AuditEvent:
    """The audit record of one imported chunk."""
    return AuditEvent(actor, "devices.imported", "device-register",
                      {"rows": rows, "first": eui64_hex(first), "last": eui64_hex(last)})


def import_file(home: Home, path: Path, *, staff_id: str | None,
                on_chunk: Callable[[int], None] | None = None) -> ImportSummary:
    """Import a CSV or JSON Lines file (RA operator: ``ra.staff-role`` manage-register); ``on_chunk``
    hears the row count of each committed chunk (the CLI's progress bar)."""
    staff = require_action(home, staff_id, StaffAction.MANAGE_REGISTER, subject="device-register")
    return import_path(home, path, actor=staff.staff_id, on_chunk=on_chunk)


def count_import_rows(path: Path) -> int:
    """The data rows of an import file, counted as lines (a CSV's header not counted; blank lines
    skipped): a progress bar's total, read at disk speed before the import starts. Register rows
    hold IDs, codes and dates, so a line is a row; the import itself still parses every row."""
    rows = 0
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                rows += 1
    return max(rows - 1, 0) if path.suffix.lower() == ".csv" else rows


def set_device(home: Home, values: dict[str, Any], *, staff_id: str | None) -> DeviceRow:
    """One Device added or changed by RA staff (``smki device set``, the JSON API's staff route)."""
    staff = require_action(home, staff_id, StaffAction.MANAGE_REGISTER, subject=str(values.get("device_id")))
    return put_device(home, values, actor=staff.staff_id)


def put_device(home: Home, values: dict[str, Any], *, actor: str) -> DeviceRow:
    """Add or change one Device, audited under ``actor``."""
    row = device_row(values, _party_ids(home))
    with home.store.transaction() as tx:
        device_writes(tx).put([row], actor)
        tx.append_audit([AuditEvent(actor, "device.changed", eui64_hex(row.device_id), {
            "device_type": row.device_type, "smi_status": row.smi_status, "import_supplier": row.import_supplier,
            "gas_supplier": row.gas_supplier, "network_operator": row.network_operator,
            "effective": row.effective.isoformat(),
        })])
    return row


@dataclass(frozen=True)
class DeviceView:
    """A Device as staff see it on ``on``: the state then in force (None: its first change is still
    to come) and every dated change, oldest first."""

    device_id: bytes
    on: date
    in_force: DeviceRow | None
    changes: list[DeviceChangeRecord]

    def scheduled(self, change: DeviceChangeRecord) -> bool:
        """A change dated after ``on``: recorded, not yet in force (the Eligible Subscriber check ignores it)."""
        return change.row.effective > self.on

    def current(self, change: DeviceChangeRecord) -> bool:
        """The change whose state is in force on ``on``."""
        return self.in_force is not None and change.row == self.in_force


def view_device(home: Home, device_id: str | bytes, on: date | None = None) -> DeviceView:
    """A Device's state in force on ``on`` (today) and its dated changes, or ``device.not-registered``."""
    raw = parse_eui64(device_id)
    on = on or today()
    reads = device_reads(home.store)
    changes = reads.history(raw)
    if not changes:
        raise NotFound("device.not-registered", f"Device {eui64_hex(raw)} is not in the device register")
    return DeviceView(raw, on, reads.entries_on([raw], on).get(raw), changes)


def get_device(home: Home, device_id: str | bytes) -> tuple[DeviceRow, list[DeviceChangeRecord]]:
    """A Device's entry in force today (or, before its first change takes effect, that change) and
    its dated changes, or ``device.not-registered``."""
    view = view_device(home, device_id)
    return view.in_force or min(view.changes, key=lambda c: c.row.effective).row, view.changes


def list_devices(home: Home, *, after: str | None = None, status: str | None = None,
                 limit: int = 100) -> list[DeviceRow]:
    if status is not None:
        try:
            status = SmiStatus(status).value
        except ValueError:
            raise SmkiError("device.bad-status", f"no SMI status {status[:30]!r}") from None
    return device_reads(home.store).page(None if after is None else parse_eui64(after), min(max(limit, 1), 1000),
                                         status)


def device_dict(row: DeviceRow) -> dict[str, Any]:
    return {"device_id": eui64_hex(row.device_id), "device_type": row.device_type, "smi_status": row.smi_status,
            "import_supplier": row.import_supplier, "gas_supplier": row.gas_supplier,
            "network_operator": row.network_operator, "effective": row.effective.isoformat()}
