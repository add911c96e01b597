"""Where a batch of Device CSRs comes from: a directory, a multi-PEM file, or a JSON/CSV manifest.

Every source is read lazily, one item at a time, so a batch of any size is streamed rather than
held in memory. An item is only an identifier and the bytes the submitter gave; decoding and
checking the CSR is the CA's job (``smki.ca.csr``), so a bad item becomes a per-item error there
and never stops the batch. A source that cannot be read at all (missing file, broken manifest)
is a ``batch.*`` error for the whole batch.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from smki.errors import SmkiError

CSR_FILE_SUFFIXES = (".csr", ".pem", ".der", ".req", ".b64")
MAX_ITEM_BYTES = 64 * 1024  # far above any P-256 CSR; the CA refuses anything over its own limit
_READ_BLOCK = 1 << 20
_PEM_BEGIN = re.compile(rb"-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----")
_PEM_END = re.compile(rb"-----END (?:NEW )?CERTIFICATE REQUEST-----")


class BatchItem(NamedTuple):
    """One CSR of a batch: its position, the submitter's identifier for it, and its raw bytes.

    A named tuple: a batch makes one per CSR in its single writer process, and a tuple is the
    cheapest object to build there and to send to a worker process.
    """

    index: int  # type: ignore[assignment]  # shadows tuple.index, which nothing here uses
    item_id: str
    data: bytes


class BatchSourceError(SmkiError):
    """The batch as a whole cannot be read (codes ``batch.*``)."""


def read_batch_source(path: Path) -> Iterator[BatchItem]:
    """Yield the items of ``path``, choosing the reader from what the path is."""
    if path.is_dir():
        return _from_directory(path)
    if not path.exists():
        raise BatchSourceError("batch.source-missing", f"{path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _from_json_manifest(path)
    if suffix == ".csv":
        return _from_csv_manifest(path)
    return _from_multi_pem(path)


def source_digest(items: Iterable[BatchItem]) -> str:
    """SHA-256 (hex) of a batch's items in order — each one's identifier and bytes, length-prefixed.

    A resumed batch skips its items by position (those its earlier runs issued), so resuming it
    over another source would skip CSRs that were never issued and file the earlier run's
    certificates under the new source's names. The CLI records this digest when a batch starts
    (``batch.started``'s ``source``) and refuses a resumption whose source gives another one
    (``batch.other-source``). The items are digested rather than the file, so the same CSRs in
    the same order from the same kind of source always agree."""
    digest = hashlib.sha256()
    for item in items:
        name = item.item_id.encode("utf-8", "surrogateescape")
        digest.update(b"%d:%d:" % (len(name), len(item.data)))
        digest.update(name)
        digest.update(item.data)
    return digest.hexdigest()


def count_batch_source(path: Path) -> int | None:
    """How many items ``read_batch_source(path)`` will yield, for a determinate progress bar.

    One cheap pass (file names, PEM BEGIN markers, manifest entries), never decoding a CSR; None if
    the source cannot be read (``read_batch_source`` then reports why).
    """
    try:
        if path.is_dir():
            return sum(1 for p in path.iterdir() if p.is_file() and p.suffix.lower() in CSR_FILE_SUFFIXES)
        suffix = path.suffix.lower()
        if suffix == ".json":
            entries = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(entries, dict):
                entries = entries.get("csrs")
            return len(entries) if isinstance(entries, list) else None
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as handle:
                return sum(1 for _ in csv.DictReader(handle))
        return _count_pem_blocks(path)
    except (OSError, UnicodeDecodeError, ValueError, csv.Error):
        return None


def _count_pem_blocks(path: Path) -> int:
    total = 0
    carry = b""
    with path.open("rb") as handle:
        while block := handle.read(_READ_BLOCK):
            data = carry + block
            last_end = 0
            for match in _PEM_BEGIN.finditer(data):
                total += 1
                last_end = match.end()
            # keep a marker's length of tail (never a counted marker) for one split across blocks
            carry = data[max(len(data) - 40, last_end):]
    return total


def _read_limited(path: Path) -> bytes:
    # Read at most one byte past the limit: an oversized item then fails the CSR size check on its
    # own, without a huge file ever being read into memory.
    with path.open("rb") as handle:
        return handle.read(MAX_ITEM_BYTES + 1)


def _from_directory(path: Path) -> Iterator[BatchItem]:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in CSR_FILE_SUFFIXES)
    if not files:
        raise BatchSourceError(
            "batch.empty", f"{path} holds no CSR files ({', '.join(CSR_FILE_SUFFIXES)})"
        )
    for index, file in enumerate(files):
        yield BatchItem(index, file.name, _read_limited(file))


def _from_multi_pem(path: Path) -> Iterator[BatchItem]:
    """PEM blocks one after another, streamed a megabyte at a time, never the whole file at once.

    Text between blocks is ignored, as ``openssl`` does. A block runs from a BEGIN line to the
    first END line after it. Reading in large blocks and finding the two markers with literal-prefix
    searches keeps this cheap (a lazy ``BEGIN.*?END`` match stepped through every character of
    the base64, several times slower): it runs in the batch's single writer process, where every
    microsecond per CSR is a microsecond less for issuing.
    """
    index = 0
    buffer = b""
    prefix = f"{path.name}#"
    begin_search, end_search = _PEM_BEGIN.search, _PEM_END.search
    with path.open("rb") as handle:
        while True:
            block = handle.read(_READ_BLOCK)
            buffer += block
            end = 0
            while (begin := begin_search(buffer, end)) is not None:
                close = end_search(buffer, begin.end())
                if close is None:
                    break
                end = close.end()
                index += 1
                yield BatchItem(index - 1, prefix + str(index), buffer[begin.start() : end])
            buffer = buffer[end:]
            if not block:
                break
            pending = buffer.find(b"-----BEGIN")
            if len(buffer) - max(pending, 0) > MAX_ITEM_BYTES:
                raise BatchSourceError(
                    "batch.malformed", f"{path}: item {index + 1} is not a PEM CSR block or is too large"
                )
            if pending < 0:
                buffer = buffer[-64:]  # only text between blocks so far: keep a marker's worth of tail
    if _PEM_BEGIN.search(buffer):
        raise BatchSourceError("batch.malformed", f"{path}: item {index + 1} is not a complete PEM CSR block")
    if index == 0:
        raise BatchSourceError("batch.empty", f"{path} holds no PEM certificate requests")


def _manifest_entry(base: Path, index: int, item_id: str, csr: str | None, file: str | None) -> BatchItem:
    if csr:
        text = csr.strip()
        if text.startswith("-----BEGIN"):
            return BatchItem(index, item_id, text.encode("ascii", "replace"))
        try:
            return BatchItem(index, item_id, base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            return BatchItem(index, item_id, text.encode("ascii", "replace"))
    if file:
        target = (base / file).resolve()
        if not target.is_file():
            return BatchItem(index, item_id, b"")  # reported per item as malformed, not fatal
        return BatchItem(index, item_id, _read_limited(target))
    return BatchItem(index, item_id, b"")


def _from_json_manifest(path: Path) -> Iterator[BatchItem]:
    """A JSON list of ``{"id": …, "csr": base64-or-PEM}`` or ``{"id": …, "file": relative path}``."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BatchSourceError("batch.malformed", f"{path}: not a JSON manifest ({exc})") from exc
    if isinstance(entries, dict) and isinstance(entries.get("csrs"), list):
        entries = entries["csrs"]
    if not isinstance(entries, list) or not entries:
        raise BatchSourceError("batch.malformed", f"{path}: expected a non-empty JSON list of CSR entries")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            yield BatchItem(index, str(index + 1), b"")
            continue
        item_id = str(entry.get("id", index + 1))
        csr = entry.get("csr")
        file = entry.get("file")
        yield _manifest_entry(
            path.parent,
            index,
            item_id,
            csr if isinstance(csr, str) else None,
            file if isinstance(file, str) else None,
        )


def _from_csv_manifest(path: Path) -> Iterator[BatchItem]:
    """A CSV with a header naming ``id`` and ``csr`` (base64 or PEM) or ``file`` columns."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not the header
    except OSError as exc:
        raise BatchSourceError("batch.malformed", f"{path}: {exc}") from exc
    with handle:
        reader = csv.DictReader(handle)
        try:  # reading the header reads the file's first bytes: binary or not CSV is found here
            fields = set(reader.fieldnames or [])
        except (csv.Error, UnicodeDecodeError) as exc:
            raise BatchSourceError("batch.malformed", f"{path}: not a CSV manifest ({exc})") from exc
        if not ({"csr", "file"} & fields):
            raise BatchSourceError("batch.malformed", f"{path}: the CSV header needs a 'csr' or 'file' column")
        try:
            for index, row in enumerate(reader):
                yield _manifest_entry(
                    path.parent, index, row.get("id") or str(index + 1), row.get("csr"), row.get("file")
                )
        except (csv.Error, UnicodeDecodeError) as exc:
            raise BatchSourceError("batch.malformed", f"{path}: {exc}") from exc
