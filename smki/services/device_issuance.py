"""Device Certificate issuance, one or many: parse, validate, sign, then persist with the audit.

The work is split where the costs are. Checking a CSR and signing a certificate (two ECDSA
operations) run in worker processes, one ``DeviceCertificateFactory`` each; the parent process is
the single writer. It commits a few chunks' certificates and their audit records in one
transaction and only then releases those chunks' results, so a certificate is never handed out
unless it is recorded, and a crash (even ``kill -9``) loses at most chunks that were never
committed — whose certificates nobody has seen. At most ``2 x workers + MIN_CHUNKS_PER_COMMIT``
chunks are in flight, so memory stays flat however large the batch.

A Device holds one *in use* certificate per usage (DS, KA): issuing a new one puts the previous
in-use certificate for that Device and usage to *not in use* (``N``) in the same transaction.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.audit import AuditEvent
from smki.ca.keyid import key_fingerprint
from smki.domain import CertKind, CertStatus, Usage
from smki.errors import NotFound, SmkiError, Terminated
from smki.eui64 import eui64_hex
from smki.services.batch_sources import BatchItem
from smki.services.key_health import is_key_fault
from smki.services.key_register import (
    Checked,
    DeviceKeyScreen,
    Entry,
    Refusal,
    Screen,
    in_order,
    record_device_keys,
)

if TYPE_CHECKING:
    from smki.ca.device_template import DeviceCertificateFactory
    from smki.config import Settings
    from smki.keys import KeyBackend
    from smki.services.context import Home
    from smki.store.transaction import Transaction

#: Called inside a commit's transaction, after its certificates and audit record, with that
#: commit's outcomes: what a caller records there is committed atomically with them.
InTransaction = Callable[["Transaction", Sequence["DeviceOutcome"]], None]

DEFAULT_CHUNK = 500
#: The code of a CSR that failed through no fault of its own (DCC status ISSUANCE_ANOMALY).
ISSUANCE_ANOMALY = "issuance.anomaly"
log = logging.getLogger("smki.batch")
BATCH_ISSUED_ACTION = "device-certificates.issued"
#: The records that end one run of a batch (a resumed batch has one per run).
BATCH_CLOSING_ACTIONS = frozenset({"batch.completed", "batch.failed", "batch.interrupted"})
DEVICE_CA_LABEL = "device-ca"
DEVICE_NOT_AFTER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)  # spec §4.1: no defined expiry


class DeviceOutcome(NamedTuple):
    """What happened to one CSR of a batch: a certificate, or a coded refusal.

    A named tuple rather than a dataclass: a batch makes one per CSR in the single writer, where
    every microsecond counts, and a tuple is several times cheaper to build.
    """

    index: int  # type: ignore[assignment]  # shadows tuple.index, which nothing here uses
    item_id: str
    device_id: bytes | None = None
    usage: Usage | None = None
    serial: str | None = None
    der: bytes | None = None
    not_before: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.der is not None

    @property
    def file_stem(self) -> str:
        """``<eui>-<ds|ka>``: the file name the CLI and Portal use for this certificate."""
        if self.device_id is None or self.usage is None:
            return f"item-{self.index + 1}"
        return f"{eui64_hex(self.device_id)}-{self.usage.value.lower()}"


class ReadAhead(NamedTuple):
    """What one Device CSR's request has read already, in the round trip that read its Device's
    certificate count (``Store.single_device_reads``): the issuing Device CA certificate, and the
    key register's answer for the key the request expects the CSR to have (fingerprint: the
    serial it is certified under, or None). The issuance uses them instead of reading again."""

    issuer_der: bytes | None
    keys: Mapping[bytes, str | None]


@dataclass(frozen=True)
class BatchSummary:
    batch_ref: str
    issued: int
    rejected: int
    seconds: float


# ---------------------------------------------------------------------------------------------
# Worker side: pure CPU work, no database. One factory per process.
#
# Between the parent and the workers everything travels as plain tuples: pickling a dataclass per
# CSR cost more than inserting its certificate. An item is ``(index, item_id, data)``. A chunk
# makes two trips: a worker *checks* it (every CSR check; no serial drawn, nothing built or
# signed) and answers per item a ``Checked`` entry — with the key's fingerprint and the Device ID —
# or a ``Refusal``; the parent *screens* the entries (eligibility, duplicate keys: one look-up per
# chunk), turning some into refusals; a worker then *signs* the rest and answers the chunk with
# its notBefore and, per item, ``(index, item_id, device_id, usage, serial, der, fingerprint)``
# when issued or the refusal ``(index, item_id, code, message)``. So a refused CSR never gets a
# serial, a certificate or a signature.

_Item = tuple[int, str, bytes]
_Issued = tuple[int, str, bytes, str, str, bytes, bytes]
_Result = _Issued | Refusal
_ChunkResult = tuple[datetime, list[_Result]]
_USAGES = {usage.value: usage for usage in Usage}
_USAGE_VALUES = {usage: usage.value for usage in Usage}  # the plain str: cheaper than ``.value``, and to pickle

_FACTORY: DeviceCertificateFactory | None = None


def _make_factory(settings: Settings, secret: bytes, issuer_der: bytes,
                  backend: KeyBackend | None = None) -> DeviceCertificateFactory:
    from smki.ca import p256_verify
    from smki.ca.device_template import DeviceCertificateFactory
    from smki.keys import open_backend

    p256_verify.use(settings.csr_signature_check)  # how this process checks the CSRs it signs for

    signer = (backend or open_backend(settings, secret)).signer(DEVICE_CA_LABEL)
    return DeviceCertificateFactory(x509.load_der_x509_certificate(issuer_der), signer, settings)


@dataclass(frozen=True)
class _SharedFactory:
    issuer_der: bytes
    factory: DeviceCertificateFactory
    lock: threading.Lock


_SHARED_LOCK = threading.Lock()


def in_process_factory(home: Home, issuer_der: bytes) -> _SharedFactory:
    """The factory that issues in this process for ``home``, made once per Device CA certificate.

    A server issues every single Device CSR here (Ad Hoc, JSON, Portal): building the factory
    (templates for both usages, the key opened) cost more than issuing the certificate. It signs
    with the home's own key backend, the one Organisation issuance uses. Its time cache and an HSM
    session are not for two threads at once: callers hold ``lock`` while they use it.
    """
    with _SHARED_LOCK:
        shared = home.device_factory
        if not isinstance(shared, _SharedFactory) or shared.issuer_der != issuer_der:
            shared = _SharedFactory(issuer_der, _make_factory(home.settings, home.secret or b"", issuer_der,
                                                              home.backend()), threading.Lock())
            home.device_factory = shared
        return shared


def _issue_in_this_process(settings: Settings, secret: bytes, issuer_der: bytes,
                           items: Sequence[_Item], screen: Screen) -> _ChunkResult:
    """One chunk issued here rather than in a worker, the CA key opened for it and closed after
    (an HSM session left open would outlive its use, and the token, at exit)."""
    from smki.keys import open_backend

    backend = open_backend(settings, secret)
    try:
        return _issue_items(_make_factory(settings, secret, issuer_der, backend), items, screen)
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()


class WorkerKeyUnavailable(Exception):
    """A signing worker could not open the CA key (args: the code and message of why).

    Raised by the worker for the chunk it was given, rather than out of its initializer: an
    initializer's exception is printed as a traceback on stderr and breaks the whole pool, and an
    HSM token that goes away while a batch's workers are still starting is a fault to report with
    its code, not a crash (``tests/cli/test_hsm_fault.py``).
    """


_INIT_FAILURE: WorkerKeyUnavailable | None = None


class KeyUnavailable(SmkiError):
    """``batch.worker-failed`` because the signing workers could not open the CA key: carries the
    key's own code (``key.locked``, ``hsm.*`` …) for the audit record and the batch runner."""

    def __init__(self, code: str, message: str, *, key_code: str, key_message: str) -> None:
        super().__init__(code, message)
        self.key_code = key_code
        self.key_message = key_message


def key_fault_of(exc: BaseException) -> tuple[str, str] | None:
    """(code, message) of the CA key fault behind ``exc``, if that is what it is."""
    if isinstance(exc, KeyUnavailable):
        return exc.key_code, exc.key_message
    if isinstance(exc, SmkiError) and exc.code.startswith(("key.", "hsm.")):
        return exc.code, exc.message
    return None


def _init_worker(settings: Settings, secret: bytes, issuer_der: bytes, owner: int) -> None:
    global _FACTORY, _INIT_FAILURE
    from smki.services.procguard import die_with_parent, exit_with

    die_with_parent()  # a worker never outlives its forkserver (which dies with the server)
    exit_with(owner)  # nor the process that owns its pool (a CLI batch killed outright)
    # Ctrl-C reaches the terminal's whole process group: the process that owns the pool decides
    # what stops (and reports it in one line); a worker interrupted mid-wait only printed a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _FACTORY = _make_factory(settings, secret, issuer_der)
    except Exception as exc:  # reported with the first chunk (see WorkerKeyUnavailable)
        _INIT_FAILURE = WorkerKeyUnavailable(getattr(exc, "code", "key.unavailable"),
                                             getattr(exc, "message", type(exc).__name__))


def _check_items(factory: DeviceCertificateFactory, items: Sequence[_Item]) -> list[Entry]:
    """The checking pass: every check of every CSR of the chunk, nothing built or signed.

    A CSR that passes comes back with what the screens need (its Device ID, its key's fingerprint)
    and what the signing pass needs to build its certificate (hwType, usage, key). Nearly every
    CSR of a batch is of a shape already seen: ``known_device_csr`` answers those without a request
    object; it leaves the rest, and every CSR to refuse, to the general path.
    """
    from smki.ca.csr import check_device_csr, decode_csr_text, known_device_csr

    accepted = factory.accepted_hw_types
    entries: list[Entry] = []
    for index, item_id, data in items:
        try:
            known = known_device_csr(data, accepted)
            if known is None:
                request = check_device_csr(decode_csr_text(data), accepted)
                factory.check(request)
                device_id, usage, point, hw_type = request.device_id, request.usage, request.point, request.hw_type
            else:
                device_id, usage, point, hw_type = known
                factory.prepare(hw_type)  # what ``check`` has left to refuse of such a CSR
        except SmkiError as exc:
            entries.append((index, item_id, exc.code, exc.message))
            continue
        except Exception as exc:  # a fault of ours, not of the CSR: report it for this CSR, keep the batch going
            entries.append(_anomaly(index, item_id, exc))
            continue
        entries.append((index, item_id, device_id, _USAGE_VALUES[usage], key_fingerprint(point), hw_type, point))
    return entries


def _sign_items(factory: DeviceCertificateFactory, entries: Sequence[Entry]) -> _ChunkResult:
    """The signing pass: build the certificate of every entry still checked, then sign them all.

    Two loops rather than one per CSR: with an HSM the signatures run in the module's OpenSSL, and
    keeping building and signing apart keeps each one's code and tables in the CPU caches
    (measured: 10% faster with the file backend, 20% with SoftHSM). Refusals pass through.
    """
    now = datetime.now(UTC).replace(microsecond=0)
    not_before = now  # what the factory makes of ``now``: the same for every certificate of the chunk
    results: list[_Result] = []
    built: list[tuple[int, bytes, int, Checked]] = []  # (position in results, TBS, serial, entry)
    for entry in entries:
        if len(entry) == 4:
            results.append(entry)
            continue
        index, item_id, device_id, usage, _fingerprint, hw_type, point = entry
        try:
            tbs, serial, not_before = factory.build(hw_type, usage, device_id, point, now)
        except SmkiError as exc:
            results.append((index, item_id, exc.code, exc.message))
            continue
        except Exception as exc:
            results.append(_anomaly(index, item_id, exc))
            continue
        built.append((len(results), tbs, serial, entry))
        results.append((index, item_id, "", ""))  # replaced once signed
    for position, tbs, serial, (index, item_id, device_id, usage, fingerprint, _hw_type, _point) in built:
        try:
            der = factory.certificate(tbs)
        except SmkiError as exc:  # e.g. the HSM failed: this CSR is not issued; the rest may be
            results[position] = (index, item_id, exc.code, exc.message)
            continue
        except Exception as exc:
            results[position] = _anomaly(index, item_id, exc)
            continue
        results[position] = (index, item_id, device_id, usage, f"{serial:032x}", der, fingerprint)
    return not_before, results


def _issue_items(factory: DeviceCertificateFactory, items: Sequence[_Item],
                 screen: Screen | None = None) -> _ChunkResult:
    """A chunk's whole work in one process: check, screen (if given), sign."""
    entries = _check_items(factory, items)
    return _sign_items(factory, entries if screen is None else screen(entries))


def _anomaly(index: int, item_id: str, exc: Exception) -> Refusal:
    return (index, str(item_id), ISSUANCE_ANOMALY,
            f"internal error while issuing ({type(exc).__name__}); nothing was issued")


def _worker_factory() -> DeviceCertificateFactory:
    if _INIT_FAILURE is not None:
        raise _INIT_FAILURE
    assert _FACTORY is not None, "worker not initialised"
    return _FACTORY


def _check_chunk(items: Sequence[_Item]) -> list[Entry]:
    return _check_items(_worker_factory(), items)


def _sign_chunk(entries: Sequence[Entry]) -> _ChunkResult:
    return _sign_items(_worker_factory(), entries)


def _outcomes(chunk: _ChunkResult) -> list[DeviceOutcome]:
    """The chunk's results as ``DeviceOutcome``s, for ``on_chunk`` callers."""
    not_before, results = chunk
    outcomes = []
    for result in results:
        if len(result) == 4:
            index, item_id, code, message = result
            outcomes.append(DeviceOutcome(index, item_id, error_code=code, error_message=message))
        else:
            index, item_id, device_id, usage, serial, der, _fingerprint = result
            outcomes.append(DeviceOutcome(index, item_id, device_id, _USAGES[usage], serial, der, not_before))
    return outcomes


# ---------------------------------------------------------------------------------------------
# Parent side: the single writer.


@functools.lru_cache(maxsize=16)
def _key_id_hex(cert: x509.Certificate) -> str:
    """The issuer's key identifier (hex), remembered per certificate: every issuance asks for its
    issuer's, and ``Home.ca_certificate`` hands back the same parsed certificate each time."""
    from smki.ca.keyid import key_identifier

    return key_identifier(cert.public_key()).hex()  # type: ignore[arg-type]


#: How often a commit is tried again after losing a race for a Device's in-use slot (see below).
IN_USE_RACE_ATTEMPTS = 5


def _record_chunks(home: Home, chunks: Sequence[_ChunkResult], actor: str, batch_ref: str,
                   issuer_key_id: str, also: Callable[[Transaction], None] | None = None,
                   *, before: Sequence[AuditEvent] = (),
                   after: Callable[[int, int], Sequence[AuditEvent]] | None = None) -> tuple[int, int]:
    """:func:`_commit_chunks`, tried again when another process committed a certificate for the
    same Device and usage in the meantime (``store.duplicate-in-use``).

    Two requests for one Device and usage (an Ad Hoc re-issue arriving twice, two batches naming the
    same Device) each retire the in-use certificate they can see and add theirs as in use; when both
    run at once, neither sees the other's uncommitted certificate and the second commit breaks the
    one-in-use-per-usage index. The losing transaction is rolled back whole (nothing was issued or
    audited), and tried again it sees the winner's certificate and retires it: both succeed, in
    commit order, the later one in use — the same result as had they arrived one after the other.
    """
    for attempt in range(1, IN_USE_RACE_ATTEMPTS + 1):
        try:
            return _commit_chunks(home, chunks, actor, batch_ref, issuer_key_id, also,
                                  before=before, after=after)
        except SmkiError as exc:
            if exc.code != "store.duplicate-in-use" or attempt == IN_USE_RACE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _commit_chunks(home: Home, chunks: Sequence[_ChunkResult], actor: str, batch_ref: str,
                   issuer_key_id: str, also: Callable[[Transaction], None] | None = None,
                   *, before: Sequence[AuditEvent] = (),
                   after: Callable[[int, int], Sequence[AuditEvent]] | None = None) -> tuple[int, int]:
    """Commit chunks in one transaction: retire superseded certificates, add the new ones, audit
    every outcome. Returns (issued, refused).

    The transaction's audit record lists every certificate issued (serial, Device ID, usage, index
    in the batch) and every CSR refused (index, item, code): one hash-chained record per commit
    rather than one per certificate keeps the single writer fast (a per-certificate record cost as
    much as inserting the certificate), while every certificate still matches an audit entry
    committed in the same transaction. ``also`` adds the caller's own rows (a batch job's item
    outcomes) to that transaction, so they can never disagree with what was committed. ``before``
    are audit records that precede this commit's, ``after(issued, refused)`` makes those that
    follow it (an in-process batch's opening and closing records, see ``issue_device_batch``).
    """
    latest: dict[tuple[bytes, str], str] = {}
    for _, results in chunks:
        for result in results:
            if len(result) != 4:
                latest[(result[2], result[3])] = result[4]
            elif is_key_fault(str(result[2])):
                # The CA could not sign (an HSM gone, a key unreadable): not this CSR's fault. The
                # batch stops here with the key's code and nothing of this commit: every CSR after
                # the last committed chunk keeps no outcome and is issued when the batch resumes.
                raise SmkiError(str(result[2]), str(result[3]))
    rows: list[tuple[object, ...]] = []
    keys: list[tuple[bytes, str]] = []
    issued_list: list[list[object]] = []
    rejected_list: list[list[object]] = []
    in_use, not_in_use, device = CertStatus.IN_USE.value, CertStatus.NOT_IN_USE.value, CertKind.DEVICE.value
    with home.store.transaction() as tx:
        not_after = tx.driver_time(DEVICE_NOT_AFTER)
        for chunk_not_before, results in chunks:
            not_before = tx.driver_time(chunk_not_before)
            for result in results:
                if len(result) == 4:
                    rejected_list.append([result[0], result[1], result[2]])
                    continue
                index, _, device_id, usage, serial, der, fingerprint = result
                status = in_use if latest[(device_id, usage)] == serial else not_in_use
                rows.append((serial, device, usage, issuer_key_id, device_id, None, None, status, not_before,
                             not_after, der, not_before, batch_ref, not_before))
                keys.append((fingerprint, serial))
                issued_list.append([serial, device_id.hex(), usage, index])
        # One certificate (Ad Hoc, JSON): its writes and the audit head's read in one round trip on
        # PostgreSQL (a batch's COPY has no pipeline form, and one round trip in thousands is nothing).
        with tx.pipelined() if len(rows) == 1 else nullcontext():
            if latest:
                tx.retire_in_use_device_certificates(list(latest))
            if rows:
                tx.copy_certificates(rows, count=len(rows), driver_times=True)
                record_device_keys(tx, keys)
            tx.append_audit([*before, AuditEvent(actor, BATCH_ISSUED_ACTION, batch_ref, {
                "batch": batch_ref, "issued": issued_list, "rejected": rejected_list,
            }), *(after(len(rows), len(rejected_list)) if after is not None else ())])
        if also is not None:
            also(tx)
    return len(rows), len(rejected_list)


def _chunks(items: Iterable[BatchItem], size: int) -> Iterator[list[_Item]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield [tuple(item) for item in chunk]  # type: ignore[misc]  # BatchItem is an _Item


class SigningPool:
    """Worker processes that check CSRs and sign Device Certificates, ready before a batch comes.

    Starting the processes and opening the CA key in each (a passphrase KDF, or an HSM login) takes
    a noticeable part of a second; a server keeps one pool for all its batches instead of paying
    that per batch. A pool serves the Device CA certificate it was made for; ``usable_for`` tells
    whether it still matches (after a new ceremony it does not and a fresh pool is made). A pool
    whose process died is broken: ``issue_device_batch`` then reports ``batch.worker-failed`` and
    the owner makes a new one.
    """

    def __init__(self, settings: Settings, secret: bytes, issuer_der: bytes, workers: int | None = None) -> None:
        self.issuer_der = issuer_der
        self.workers = max(1, (os.cpu_count() or 1) if workers is None else workers)
        from smki.services.procguard import start_forkserver

        start_forkserver()  # without the secrets in its environment (a server has started it already)
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_init_worker,
            initargs=(settings, secret, issuer_der, os.getpid()),
        )
        self.broken = False
        #: Checking passes started ahead of the batch that will ask for them (``check_ahead``): each
        #: chunk as given, its future, and when it was started. Guarded by ``_ahead_lock``: a request
        #: thread starts them, the batch runner's thread takes them.
        self._ahead: deque[tuple[list[_Item], Future[list[Entry]], float]] = deque()
        self._ahead_lock = threading.Lock()

    @staticmethod
    def issuer_der_of(home: Home) -> bytes:
        """The Device CA certificate a pool for ``home`` must be made for."""
        return home.ca_certificate(CertKind.DEVICE_CA).public_bytes(Encoding.DER)

    @classmethod
    def for_home(cls, home: Home, workers: int | None = None) -> SigningPool:
        if home.secret is None:
            from smki.errors import ConfigError

            raise ConfigError("key.secret-missing", "issuing needs the CA key passphrase or PIN")
        return cls(home.settings, home.secret, cls.issuer_der_of(home), workers)

    def warm(self) -> None:
        """Start every worker now (each opens the CA key), rather than at the first batch."""
        futures = [self._executor.submit(_check_chunk, []) for _ in range(self.workers)]
        for future in futures:
            future.result()

    @property
    def in_flight(self) -> int:
        """How many chunks a batch keeps in the workers' hands at once (see ``_run_in_pool``)."""
        return 2 * self.workers + MIN_CHUNKS_PER_COMMIT

    def usable_for(self, issuer_der: bytes) -> bool:
        return not self.broken and self.issuer_der == issuer_der

    def check(self, chunk: list[_Item]) -> Future[list[Entry]]:
        """A chunk's checking pass (see ``_check_items``): one that ``check_ahead`` started for
        exactly these items, else a new one. Passes started ahead are taken in order: those before
        the one taken, or all of them when none holds these items, are dropped."""
        if self._ahead:
            with self._ahead_lock:
                while self._ahead:
                    items, checked, started = self._ahead.popleft()
                    if items == chunk and time.monotonic() - started < CHECK_AHEAD_SECONDS:
                        return checked
                    checked.cancel()  # another batch's, or too old
        return self._executor.submit(_check_chunk, chunk)

    def drop_old_checks(self) -> None:
        """Drop checks started ahead that no batch took within ``CHECK_AHEAD_SECONDS`` (the batch
        runner calls this between batches: an idle server holds no stale answers)."""
        if self._ahead:
            with self._ahead_lock:
                if self._ahead and time.monotonic() - self._ahead[0][2] >= CHECK_AHEAD_SECONDS:
                    for _items, stale, _started in self._ahead:
                        stale.cancel()
                    self._ahead.clear()

    def check_ahead(self, chunks: Sequence[list[_Item]]) -> None:
        """Start the checking pass of ``chunks`` now, before the batch that holds them asks for it
        (the batch runner's head start, while the batch's submission is still being stored): the
        batch's ``check`` calls then take these futures, in order, instead of starting the passes.

        A check is a pure function of the CSR's bytes and the deployment's accepted hwTypes, so a
        future taken for a chunk with the same items gives exactly the answer a new pass would.
        Unused ones are dropped: when a chunk with other items is checked first, or after
        ``CHECK_AHEAD_SECONDS``. Starting them replaces any earlier head start."""
        with self._ahead_lock:
            for _items, stale, _started in self._ahead:
                stale.cancel()
            self._ahead.clear()
            now = time.monotonic()
            for chunk in chunks:
                self._ahead.append((chunk, self._executor.submit(_check_chunk, chunk), now))

    def sign(self, entries: list[Entry]) -> Future[_ChunkResult]:
        """A screened chunk's signing pass (see ``_sign_items``)."""
        return self._executor.submit(_sign_chunk, entries)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SigningPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: How long a checking pass started ahead (``SigningPool.check_ahead``) waits to be taken: a
#: submission is stored and its batch claimed within a fraction of a second when this process runs it.
CHECK_AHEAD_SECONDS = 30.0

#: The writer commits at least this many chunks together (fewer only at the end of a batch), and
#: up to ``MAX_CHUNKS_PER_COMMIT`` when more are already finished. Larger transactions write each
#: touched index page to the WAL once rather than once per chunk: the serial index takes random
#: keys, so every chunk touches pages all over it (measured: 2,000 rows per commit rather than
#: 500 saves about a quarter of the SQLite insert cost at 100,000 certificates).
MIN_CHUNKS_PER_COMMIT = 4
MAX_CHUNKS_PER_COMMIT = 8


def issue_device_batch(
    home: Home,
    items: Iterable[BatchItem],
    *,
    actor: str,
    batch_ref: str,
    workers: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    on_chunk: Callable[[Sequence[DeviceOutcome]], None] | None = None,
    resume: bool = False,
    pool: SigningPool | None = None,
    in_transaction: InTransaction | None = None,
    opening: Sequence[AuditEvent] = (),
    screen: Screen | None = None,
    read_ahead: ReadAhead | None = None,
    source_digest: str | None = None,
) -> BatchSummary:
    """Issue a Device Certificate for every good CSR in ``items``; report bad ones individually.

    ``on_chunk`` receives each chunk's outcomes after they are committed (for files, progress,
    responses); ``in_transaction`` receives them inside the committing transaction (see
    ``_record_chunks``). ``workers=0`` issues in this process (small batches, tests); the default is one
    worker per core, in a ``pool`` if one is given (a server's warm pool) or else in one made for
    this batch. ``resume=True`` continues an earlier run of the same ``batch_ref`` over the same
    items: items whose certificate that run committed (per its audit records) are skipped, so
    nothing is issued twice; the rest — never reached, or failed (e.g. an HSM fault) — are issued.
    ``opening`` are the caller's audit records to commit just before ``batch.started`` (the
    request's authorisation). Between checking and signing, ``screen`` turns CSRs into refusals
    (the subscriber path's Eligible Subscriber check, :mod:`smki.services.eligibility`); then
    CSRs whose key is already certified, or is an earlier CSR's of the batch, are refused
    (:mod:`smki.services.key_register`). A refused CSR is never signed. ``read_ahead``: the issuer
    and key-register reads one Device CSR's request has made already (``ReadAhead``).
    ``source_digest`` (the CLI's batches) is recorded in the opening record as ``source``, for
    ``check_same_source`` when the batch is resumed.

    In this process (``workers=0``: one Device CSR over the web services, the Portal, tests) the
    opening records are committed with the first chunk and ``batch.completed`` with the last, so a
    single CSR costs one write transaction rather than four: the same records in the same order,
    and nothing is issued before its chunk commits either way. Outside it, ``batch.started`` is
    committed first, on its own, so a batch that dies in its workers still shows that it started.
    """
    started = time.perf_counter()
    if home.secret is None:
        from smki.errors import ConfigError

        raise ConfigError("key.secret-missing", "issuing needs the CA key passphrase or PIN")
    if read_ahead is not None and read_ahead.issuer_der is not None:
        issuer = home.parsed_certificate(read_ahead.issuer_der)
    else:
        issuer = home.ca_certificate(CertKind.DEVICE_CA)
    issuer_der = issuer.public_bytes(Encoding.DER)
    issuer_key_id = _key_id_hex(issuer)
    done: set[int] = set()
    if resume:
        check_resumable(home, batch_ref)
        for row in home.store.audit_rows_for(batch_ref, BATCH_ISSUED_ACTION):
            done.update(int(entry[3]) for entry in row.details_dict["issued"])
        items = (item for item in items if item.index not in done)
    in_process = workers is not None and workers <= 0
    opened = [*opening, AuditEvent(actor, "batch.resumed" if resume else "batch.started", batch_ref,
                                   {"kind": "device", "already_issued": len(done),
                                    **({"source": source_digest} if source_digest else {})})]
    opening_seq: int | None = None
    if not in_process:
        with home.store.transaction() as tx:
            opening_seq = tx.append_audit(opened)[-1]
        opened = []

    counts = _Tally()
    try:
        completed = _issue_all(home, items, actor=actor, batch_ref=batch_ref, workers=workers,
                               chunk_size=chunk_size, on_chunk=on_chunk, pool=pool, in_transaction=in_transaction,
                               issuer_der=issuer_der, issuer_key_id=issuer_key_id, counts=counts, opened=opened,
                               in_process=in_process, screen=screen,
                               known_keys=None if read_ahead is None else read_ahead.keys)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM in the CLI (``Terminated``)
        _record_interrupted(home, actor, batch_ref, exc, opened, opening_seq, resume=resume)
        raise
    except Exception as exc:
        if counts.closed:  # it came after the last commit (writing the caller's files): the run is recorded whole
            raise
        # A started batch always ends in the audit log: what stopped it, with the code the caller sees
        # (and, in this process, the opening records that were to commit with the first chunk).
        code = exc.code if isinstance(exc, SmkiError) else ISSUANCE_ANOMALY
        message = exc.message if isinstance(exc, SmkiError) else type(exc).__name__
        key = key_fault_of(exc)
        if key is not None:  # recorded with the key's own code: what the operator must act on
            code, message = key[0], f"{key[1]} ({message})" if message != key[1] else message
        with home.store.transaction() as tx:
            tx.append_audit([*opened, AuditEvent(actor, "batch.failed", batch_ref, {
                "kind": "device", "code": code, "reason": message[:300],
                "issued": counts.issued, "rejected": counts.rejected,
            })])
        raise
    if not completed:
        with home.store.transaction() as tx:
            tx.append_audit([*opened, AuditEvent(actor, "batch.completed", batch_ref, {
                "kind": "device", "issued": counts.issued, "rejected": counts.rejected,
            })])
    return BatchSummary(batch_ref, counts.issued, counts.rejected, time.perf_counter() - started)


@dataclass
class _Tally:
    """What one run of a batch has committed so far, kept by the chunk commits for the run's closing
    record. ``closed``: this run's ``batch.completed`` was committed with its last chunk (in this
    process), so a later failure (writing the caller's files) must not record the run a second time."""

    issued: int = 0
    rejected: int = 0
    closed: bool = False


def check_resumable(home: Home, batch_ref: str, *, operator: bool = False) -> None:
    """That ``batch_ref`` names a Device batch whose first run started (its ``batch.started`` is
    recorded), so resuming it continues something; else ``batch.not-found``. Without this a
    mistyped or never-started reference would start a fresh batch under that name, recorded as
    ``batch.resumed``. With ``operator`` (``smki issue batch --resume``) the batch must also be the
    CA operator's own: a Party's request batch (its ``request.authorised``) is continued under the
    RA rules, by ``smki request batch --resume``, never without them."""
    started = home.store.audit_rows_for(batch_ref, "batch.started")
    if not any(row.details_dict.get("kind") == "device" for row in started):
        raise NotFound("batch.not-found", f"no Device batch {batch_ref!r} was ever started, so there is nothing "
                                          f"to resume (give the reference its first run printed)")
    if operator and home.store.audit_rows_for(batch_ref, "request.authorised"):
        raise NotFound("batch.not-found", f"batch {batch_ref!r} is a Party's request batch, not one of "
                                          f"smki issue: resume it with smki request batch --resume")


def check_same_source(home: Home, batch_ref: str, digest: str) -> None:
    """That a batch being resumed is given the items its first run was (``source_digest`` of
    :mod:`smki.services.batch_sources`, recorded in its ``batch.started``), else
    ``batch.other-source``: its items are skipped by position, so another source would have CSRs
    skipped that were never issued. A batch whose start recorded no digest is not checked."""
    for row in home.store.audit_rows_for(batch_ref, "batch.started"):
        recorded = row.details_dict.get("source")
        if recorded and recorded != digest:
            raise SmkiError("batch.other-source", f"batch {batch_ref} was started from other CSRs: resume it "
                                                  f"with the SOURCE its first run was given, unchanged")


def _record_interrupted(home: Home, actor: str, batch_ref: str, exc: KeyboardInterrupt, opened: Sequence[AuditEvent],
                        opening_seq: int | None, *, resume: bool) -> None:
    """Close an interrupted batch in the audit log: ``batch.interrupted`` with what this run issued.

    The counts are read back from the batch's committed ``device-certificates.issued`` records,
    not from the running totals: an interrupt can land between a chunk's commit and the totals'
    update (or the clearing of ``opened``), and the record must agree with the certificates the
    store holds. ``opening_seq`` is this run's committed ``batch.started``/``batch.resumed``; in
    this process (None) it is the newest such record not followed by a closing one, if any, else
    the opening records were never committed and go first. Nothing is written if the run's
    closing record committed already (the interrupt came after the last chunk). A failure to
    write (a second Ctrl-C, the database gone) leaves the interrupt to propagate as it was.
    """
    try:
        rows = home.store.audit_rows_for(batch_ref)
        if opening_seq is None:
            opening = "batch.resumed" if resume else "batch.started"
            for row in rows:
                if row.action == opening:
                    opening_seq = row.seq
                elif row.action in BATCH_CLOSING_ACTIONS:
                    opening_seq = None
        after = [row for row in rows if opening_seq is not None and row.seq > opening_seq]
        if any(row.action in BATCH_CLOSING_ACTIONS for row in after):
            return
        issued = rejected = 0
        for row in after:
            if row.action == BATCH_ISSUED_ACTION:
                details = row.details_dict
                issued += len(details["issued"])
                rejected += len(details["rejected"])
        pending = [] if opening_seq is not None else list(opened)
        with home.store.transaction() as tx:
            tx.append_audit([*pending, AuditEvent(actor, "batch.interrupted", batch_ref, {
                "kind": "device", "signal": "SIGTERM" if isinstance(exc, Terminated) else "SIGINT",
                "issued": issued, "rejected": rejected,
            })])
    except BaseException:
        log.warning("batch %s: its interruption could not be recorded", batch_ref, exc_info=True)


def _issue_all(home: Home, items: Iterable[BatchItem], *, actor: str, batch_ref: str, workers: int | None,
               chunk_size: int, on_chunk: Callable[[Sequence[DeviceOutcome]], None] | None,
               pool: SigningPool | None, in_transaction: InTransaction | None, issuer_der: bytes,
               issuer_key_id: str, counts: _Tally, opened: list[AuditEvent], in_process: bool,
               screen: Screen | None = None, known_keys: Mapping[bytes, str | None] | None = None) -> bool:
    """The body of :func:`issue_device_batch`: sign and commit every chunk, counting into ``counts``.

    ``opened`` (records not yet committed) go with the first commit, which empties the list. Returns
    whether ``batch.completed`` was committed with the last chunk (in this process) or is left to
    the caller.
    """
    assert home.secret is not None

    def completed(issued: int, refused: int) -> list[AuditEvent]:
        return [AuditEvent(actor, "batch.completed", batch_ref, {
            "kind": "device", "issued": counts.issued + issued, "rejected": counts.rejected + refused})]

    keys = DeviceKeyScreen(home, known=known_keys)
    screen = keys if screen is None else in_order(screen, keys)  # the caller's first: a refused CSR claims no key

    def commit(ready: Sequence[_ChunkResult], last: bool = False) -> None:
        outcomes = [_outcomes(chunk) for chunk in ready] if on_chunk or in_transaction else []
        also: Callable[[Transaction], None] | None = None
        if in_transaction is not None:
            def also(tx: Transaction) -> None:
                in_transaction(tx, [outcome for chunk_outcomes in outcomes for outcome in chunk_outcomes])
        issued, refused = _record_chunks(home, ready, actor, batch_ref, issuer_key_id, also, before=opened,
                                         after=completed if last else None)
        keys.committed(len(ready))
        opened.clear()
        counts.issued += issued
        counts.rejected += refused
        if last:
            counts.closed = True
        if on_chunk is not None:
            for chunk_outcomes in outcomes:
                on_chunk(chunk_outcomes)

    with keys.held():  # PostgreSQL: one connection for the batch's look-ups, not one checkout per chunk
        if in_process:
            factory = in_process_factory(home, issuer_der)
            chunks = _chunks(items, chunk_size)
            chunk = next(chunks, None)
            while chunk is not None:
                following = next(chunks, None)
                with factory.lock:
                    checked = _check_items(factory.factory, chunk)
                screened = screen(checked)  # outside the lock: it reads the database
                with factory.lock:
                    signed = _sign_items(factory.factory, screened)
                commit([signed], last=following is None)
                chunk = following
            return not opened  # no items at all: nothing was committed, the caller records it all
        if pool is not None and pool.usable_for(issuer_der):
            _run_in_pool(pool, _chunks(items, chunk_size), screen, commit, counts, batch_ref)
        else:
            issue_here = functools.partial(_issue_in_this_process, home.settings, home.secret, issuer_der)
            with SigningPool(home.settings, home.secret, issuer_der, workers) as own:
                _run_in_pool(own, _chunks(items, chunk_size), screen, commit, counts, batch_ref, issue_here)
        return False


def _run_in_pool(pool: SigningPool, chunks: Iterator[list[_Item]], screen: Screen,
                 commit: Callable[[Sequence[_ChunkResult]], None], counts: _Tally, batch_ref: str,
                 issue_here: Callable[[list[_Item], Screen], _ChunkResult] | None = None) -> None:
    """Each chunk goes to the workers twice — checked, screened here, then signed — with at most
    ``2 x workers + MIN_CHUNKS_PER_COMMIT`` chunks in flight; finished chunks commit in batch
    order, ``MIN_CHUNKS_PER_COMMIT`` or more at once (fewer, larger transactions). Chunks taken
    out to commit are replaced in flight before the commit starts, so the workers have work for
    as long as it takes (a commit of 2,000 certificates is ~40 ms of this process; before, the
    workers could run dry during it).

    This process screens a chunk as soon as its check is back (chunks are screened in batch order,
    so a key's first CSR in the batch is the one kept), hands it to be signed, and commits while the
    workers sign. With ``issue_here`` (a pool made for this batch, its processes not yet started),
    this process issues and commits the first chunk itself while the worker processes start — which
    takes as long as issuing a few hundred certificates, time the writer would otherwise spend
    waiting — and a batch of one chunk never starts them at all. The first chunk is still committed
    first, so chunks are committed in batch order either way.
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    checking: deque[Future[list[Entry]]] = deque()
    signing: deque[Future[_ChunkResult]] = deque()
    limit = pool.in_flight
    exhausted = False

    def top_up() -> None:
        nonlocal exhausted
        while not exhausted and len(checking) + len(signing) < limit:
            chunk = next(chunks, None)
            if chunk is None:
                exhausted = True
                return
            checking.append(pool.check(chunk))

    try:
        first = next(chunks, None) if issue_here is not None else None
        top_up()  # submitting starts the worker processes: they boot while this process works
        if first is not None and issue_here is not None:
            commit([issue_here(first, screen)])
        while True:
            while checking and checking[0].done():
                signing.append(pool.sign(screen(checking.popleft().result())))
            top_up()  # before the test below: every chunk in flight may have just been committed
            if not checking and not signing:
                break
            finished = 0
            while finished < len(signing) and finished < MAX_CHUNKS_PER_COMMIT and signing[finished].done():
                finished += 1
            wanted = MIN_CHUNKS_PER_COMMIT if not exhausted else min(MIN_CHUNKS_PER_COMMIT,
                                                                      len(signing) + len(checking))
            if finished and finished >= wanted:
                ready = [signing.popleft().result() for _ in range(finished)]
                top_up()  # the workers get the next chunks before, not after, this process commits
                commit(ready)
                continue
            waiting: list[Future[Any]] = [checking[0]] if checking else []
            if finished < len(signing):
                waiting.append(signing[finished])
            wait(waiting, return_when=FIRST_COMPLETED)
    except BrokenProcessPool as exc:
        pool.broken = True
        raise SmkiError(
            "batch.worker-failed",
            f"a worker process died; {counts.issued} certificates were committed — resume batch {batch_ref}",
        ) from exc
    except WorkerKeyUnavailable as exc:
        pool.broken = True  # its workers will never sign: the owner makes a new pool
        code, message = exc.args
        raise KeyUnavailable(
            "batch.worker-failed",
            f"a worker could not open the CA key ({code}: {message}); {counts.issued} certificates were "
            f"committed — resume batch {batch_ref}", key_code=code, key_message=message,
        ) from exc
    finally:
        for pending in (checking, signing):
            for future in pending:
                future.cancel()
