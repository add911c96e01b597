"""Device CSR batch jobs: accepted at once, issued in the background, surviving a restart.

A batch submitted over the Batched Device CSR web service or the JSON API is authorised (RA request
rules, capacity) and stored with all its CSRs in one audited transaction, then answered with its
BatchId. A :class:`BatchRunner` thread in every server process claims waiting jobs (a conditional
UPDATE: one process wins) and issues them through the subscriber path
(:func:`smki.services.requests.request_device_batch`, worker processes for the signing), recording
each commit's outcomes on the job's items in the same transaction as its certificates.

Restart safety: issuance commits each chunk's certificates with an audit record listing them (by
index in the batch), and the items' outcomes with them, so the items never lag behind what was
committed. When a job is claimed again — its owner died (same host, process gone) or stopped
sending heartbeats — the runner first copies every outcome the audit records hold onto items that
lack one (a batch committed without the items, e.g. by an earlier version), then issues only the
items with no outcome. So a certificate committed before a crash is reported, never issued twice;
one never committed was never seen by anyone and is issued now.

Limits applied per CSR before signing: the 100-certificates-per-Device-ID limit (spec §3.2),
counting certificates already issued and earlier CSRs of the same batch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from smki.audit import AuditEvent
from smki.ca.csr import peek_device_id
from smki.ca.keyid import peek_key_fingerprint
from smki.domain import CertificatePolicy, Route
from smki.errors import NotFound, SmkiError
from smki.ra import CertificateRequestFacts, check_device_limit
from smki.ra.engine import PolicyRefusal
from smki.services import batch_watch, key_health
from smki.services.batch_lifecycle import PAUSED, QUEUED, RETENTION, batch_policy
from smki.services.batch_sources import BatchItem
from smki.services.capacity import CapacitySettings, consume
from smki.services.context import Home
from smki.services.credentials import SystemRequester
from smki.services.device_issuance import (
    BATCH_ISSUED_ACTION,
    DEFAULT_CHUNK,
    DeviceOutcome,
    ReadAhead,
    SigningPool,
    key_fault_of,
)
from smki.services.procguard import pid_alive
from smki.services.requests import Requester, authorise, authorise_with_party, request_device_batch
from smki.store.batches import (
    BatchItemRecord,
    BatchJobRecord,
    ItemResult,
    ResultRow,
    batch_progress,
    batch_reads,
    batch_writes,
)
from smki.store.faults import database_away
from smki.store.registry import PartyRecord

if TYPE_CHECKING:
    from smki.store.transaction import Transaction

log = logging.getLogger("smki.batch")

MAX_CSRS = 50_000
#: Job states, stored as the DCC's BatchStatus words (the life cycle: :mod:`smki.services.batch_lifecycle`).
PENDING, PROCESSING, COMPLETED = "PENDING", "PROCESSING", "COMPLETED"
#: A PROCESSING job whose owner has sent no heartbeat for this long may be taken over.
DEFAULT_LEASE = timedelta(seconds=60)
HEARTBEAT_EVERY = 5.0
#: Who the runner's own audit records name.
SYSTEM_ACTOR = "system:batch-runner"
#: How many times a batch is retried in-process when a signing process dies.
WORKER_ATTEMPTS = 3


class _WorkerDied(Exception):
    pass


class _HandedBack(Exception):
    """The runner is stopping: the batch was left at a chunk boundary for another process."""


class _WindowClosed(Exception):
    """The processing window closed: the batch was left at a chunk boundary, PAUSED until it opens."""


class _KeyAway(Exception):
    """A CA key stopped signing mid-batch: committed chunks stand, the rest waits for the key."""


class _DatabaseAway(Exception):
    """The database stopped answering mid-batch: committed chunks stand, the rest waits for it
    (the job is handed back, or, if even that failed, taken up again by its own runner)."""


#: The code a run cut short by a shutdown ends with (audited as its ``batch.failed``; then resumed).
HANDED_BACK = "batch.handed-back"
#: The code a run cut short by the processing window's close ends with (audited the same way; the
#: batch is PAUSED and resumes in the next window).
WINDOW_CLOSED = "batch.window-closed"
#: Items read from the store per query while a batch runs.
PAGE = 2000


@dataclass(frozen=True)
class BatchProgress:
    job: BatchJobRecord

    @property
    def percent(self) -> int:
        return 100 if self.job.total == 0 else int(100 * self.job.processed / self.job.total)


def _now() -> datetime:
    return datetime.now(UTC)


def normalise_csr(data: bytes) -> bytes:
    """DER when the text decodes (PEM, base64); otherwise the bytes as given, refused per CSR later."""
    if type(data) is bytes and data[:1] == b"\x30":
        return data  # DER (what the XML service decodes to): decode_csr_text gives it back as it is
    from smki.ca.csr import decode_csr_text

    try:
        return decode_csr_text(data)
    except SmkiError:
        return data


def requester_for(job: BatchJobRecord) -> Requester:
    if job.system:
        return SystemRequester(job.party_id, job.aro_id, Route(job.route), system=job.system)
    return Requester(job.party_id, job.aro_id, Route(job.route))


def submit_batch(home: Home, requester: Requester, items: Sequence[tuple[str, bytes]], *, interface: str,
                 client_ref: str, capacity: CapacitySettings,
                 head_start: Callable[[Sequence[tuple[int, str, bytes]]], None] | None = None) -> BatchJobRecord:
    """Accept a batch: RA rules, capacity, then the job and its CSRs stored (audited): QUEUED when
    the auto-approval policy admits it, else PENDING until the RA approves it (batch_lifecycle).

    ``head_start`` (a server's ``BatchRunner.head_start``) is handed a QUEUED batch's items, as they
    are stored, once the RA rules and the capacity limit have admitted it and before it is stored:
    the runner starts checking them while this stores them.

    Raises ``ra.refused`` (PolicyRefusal), ``capacity.batch-csrs`` or ``batch.too-many``/``batch.empty``.
    """
    key_health.refuse_if_unusable()  # before capacity is charged for CSRs that cannot be signed
    if not items:
        raise SmkiError("batch.empty", "a batch holds at least one CSR")
    if len(items) > MAX_CSRS:
        raise SmkiError("batch.too-many", f"a batch holds at most {MAX_CSRS} CSRs")
    authorise(home, requester, CertificateRequestFacts(policy=CertificatePolicy.DEVICE, route=requester.route))
    consume(home, capacity, requester.party_id, "batch-csrs", len(items), actor=requester.actor, interface=interface)
    now = _now()
    ref = f"{interface}-{now:%Y%m%d}-{secrets.token_hex(6)}"
    rows = [(i, item_id, normalise_csr(data)) for i, (item_id, data) in enumerate(items)]  # store.batches.NewItem
    system = requester.system if isinstance(requester, SystemRequester) else None
    status = batch_policy(home.settings).initial_status(len(rows))  # PENDING: awaiting the RA's approval
    if head_start is not None and status == QUEUED:
        head_start(rows)
    with home.store.transaction() as tx:
        job_id = batch_writes(tx).add_job(
            ref=ref, party_id=requester.party_id, aro_id=requester.aro_id, system=system,
            route=Route(requester.route).value, interface=interface, client_ref=client_ref, status=status,
            items=rows, now=now, expires_at=now + RETENTION,
        )
        tx.append_audit([AuditEvent(requester.actor, "batch.accepted", ref, {
            **requester.audit_details(), "batch": ref, "batch_id": job_id, "csrs": len(rows),
            "interface": interface, "client_ref": client_ref[:256], "status": status,
        })])
    job = batch_reads(home.store).job(job_id)
    assert job is not None
    return job


def _kept(job: BatchJobRecord, now: datetime) -> bool:
    """Results stay retrievable for 30 days (spec §3.2) from when the batch finished (COMPLETED or
    REJECTED); a batch still awaiting approval, paused or running never expires."""
    return job.finished_at is None or job.expires_at >= now


def job_for_party(home: Home, job_id: int, party_id: str) -> BatchJobRecord:
    """A Party's own batch; another Party's, or an expired one, is ``batch.not-found`` (no leak)."""
    job = batch_reads(home.store).job(job_id)
    if job is None or job.party_id != party_id or not _kept(job, _now()):
        raise NotFound("batch.not-found", f"no batch {job_id} for this Party")
    return job


def jobs_for_party(home: Home, party_id: str, limit: int = 100) -> list[BatchJobRecord]:
    """A Party's batches submitted over the JSON API or the XML services (newest first, unexpired)."""
    now = _now()
    return [job for job in batch_reads(home.store).jobs(party_id=party_id, limit=limit) if _kept(job, now)]


def iter_results(home: Home, job: BatchJobRecord) -> Iterator[tuple[BatchItemRecord, bytes | None]]:
    return batch_reads(home.store).iter_results(job.id)


def result_items(home: Home, job: BatchJobRecord, *, after: int = -1,
                 limit: int = 100) -> list[tuple[BatchItemRecord, bytes | None]]:
    """A page of the job's items in order (those after index ``after``), with their outcomes and
    each issued certificate's DER: one query for the page, whatever its size."""
    return batch_reads(home.store).items_with_der(job.id, after=after, limit=limit)


def iter_result_rows(home: Home, job: BatchJobRecord) -> Iterator[ResultRow]:
    """Every item's outcome with its certificate's DER, as plain tuples: what ``CSRBatchResult`` is
    rendered from (a 50,000-entry answer; :func:`iter_results` builds a record per item)."""
    return batch_reads(home.store).iter_result_rows(job.id)


def job_rules(job: BatchJobRecord) -> list[str]:
    """The RA rule ids that refused a whole batch at processing time (see :meth:`BatchRunner.process`)."""
    if job.error_code == "ra.refused" and job.error_text:
        return job.error_text.split(",")
    return []


# ---------------------------------------------------------------------------------------------
# The runner


class BatchRunner:
    """Claims and runs batch jobs in a background thread of a server process."""

    def __init__(self, home: Home, *, workers: int | None = None, poll: float = 0.5,
                 lease: timedelta = DEFAULT_LEASE, chunk_size: int | None = None,
                 clock: Callable[[], datetime] = _now) -> None:
        """``chunk_size`` CSRs are signed and committed together (None: issuance's default);
        ``clock`` is what the processing window is judged by (tests inject one; no sleeps)."""
        self.home = home
        self.clock = clock
        self.workers = workers
        self.poll = poll
        self.lease = lease
        self.chunk_size = chunk_size
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_purge = 0.0
        self._last_probe = 0.0
        self._pool: SigningPool | None = None
        self._processing = False
        self._database_away = False

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="smki-batch-runner", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close_pool()

    def _loop(self) -> None:
        try:
            self.signing_pool()  # start the signing processes now, not when the first batch arrives
        except Exception:  # e.g. the key cannot be opened: each batch will then report it itself
            log.exception("could not start the signing processes")
        from smki.observability.metrics import runner_heartbeat

        while not self._stop.is_set():
            runner_heartbeat()  # /readyz: this runner is looping
            try:
                self._probe_key()
                self.run_once()
                if self._database_away:
                    log.warning("batch runner: the database answers again")
                    self._database_away = False
                if self._pool is not None:
                    self._pool.drop_old_checks()  # a head start no batch of this process took
            except Exception as exc:  # keep the runner alive; the job stays claimable and is retried
                self._iteration_failed(exc)
            self._wake.wait(self.poll)
            self._wake.clear()

    def _iteration_failed(self, exc: Exception) -> None:
        """Log a failed loop: the database being away is one line, once until it answers again
        (not a traceback every ``poll`` seconds for as long as it is away); anything else in full."""
        away = database_away(exc)
        if away is None:
            log.exception("batch runner iteration failed")
        elif not self._database_away:
            log.warning("batch runner: the database is unavailable (%s); retrying every %g s", away, self.poll)
        self._database_away = away is not None

    # -- signing processes -----------------------------------------------------------------------

    def signing_pool(self) -> SigningPool | None:
        """The warm pool batches are signed in, made (or remade, after a worker died or a new key
        ceremony) when needed; None when this runner signs in its own process (``workers=0``)."""
        if self.workers is not None and self.workers <= 0:
            return None
        issuer_der = SigningPool.issuer_der_of(self.home)
        if self._pool is None or not self._pool.usable_for(issuer_der):
            self._close_pool()
            pool = SigningPool.for_home(self.home, self.workers)
            try:
                pool.warm()
            except BaseException:
                pool.close()
                raise
            self._pool = pool
        return self._pool

    def head_start(self, items: Sequence[tuple[int, str, bytes]]) -> None:
        """Start checking a just-admitted batch's first chunks in the warm pool, while the request
        that submitted it stores it (``submit_batch``): from parse to claim, the workers used to
        wait for the submission's transaction, the wake-up and the claim (a tenth of a 10,000-CSR
        batch's time). Once claimed, the batch takes those checks as its own
        (``SigningPool.check_ahead``: they are matched by their items, so a batch another process
        claims, or one whose submission failed, only costs the checks).

        Only when this runner is idle, its pool warm and the processing window open: a head start
        never delays a running batch, and never waits for a window. Best effort: any fault here
        leaves the batch to check its chunks itself."""
        pool = self._pool
        if (pool is None or pool.broken or self._processing or self._stop.is_set()
                or key_health.fault() is not None or not batch_policy(self.home.settings).open_at(self.clock())):
            return
        size = self.chunk_size or DEFAULT_CHUNK
        ahead = min(len(items), pool.in_flight * size)
        try:
            pool.check_ahead([list(items[start:start + size]) for start in range(0, ahead, size)])
        except Exception:  # e.g. the pool was being closed
            log.debug("no head start for a batch", exc_info=True)

    def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # -- claiming --------------------------------------------------------------------------------

    def _dead_owner(self, owner: str | None) -> bool:
        if not owner or owner == self.owner:
            return False
        host, _, rest = owner.partition(":")
        pid_text = rest.partition(":")[0]
        return host == self.host and pid_text.isdigit() and not pid_alive(int(pid_text))

    def claim_next(self) -> BatchJobRecord | None:
        """The oldest approved batch (or a PROCESSING one whose owner is gone), claimed for this
        runner; inside the processing window only, if one is configured (outside it, queued
        batches are shown PAUSED and wait)."""
        reads, progress = batch_reads(self.home.store), batch_progress(self.home.store)
        now = self.clock()
        if not batch_policy(self.home.settings).open_at(now):
            if progress.pause_queued(now):
                batch_watch.changed()
            startable = [PROCESSING]
        else:
            startable = [QUEUED, PAUSED, PROCESSING]
        for job in reversed(reads.jobs(statuses=startable, limit=200)):
            # Our own PROCESSING job, while we run none (a run is synchronous: this is between two):
            # a run the database's going away cut short before it could hand the job back. Taken
            # up again here, or it would wait for a lease no other process may ever be there to see.
            if job.owner is not None and (job.owner == self.owner or self._dead_owner(job.owner)):
                won = progress.claim_from(job.id, self.owner, job.owner, now, PROCESSING)
            else:
                won = progress.claim(job.id, self.owner, statuses=startable,
                                     stale_before=now - self.lease, now=now, status=PROCESSING)
            if won:
                return reads.job(job.id)
        return None

    def run_once(self) -> int:
        """Claim and run waiting jobs until none is left; returns how many ran."""
        ran = 0
        self._purge()
        while not self._stop.is_set():
            if key_health.fault() is not None:  # nothing could be signed: leave the queue to the probe
                return ran
            job = self.claim_next()
            if job is None:
                return ran
            batch_watch.changed()  # PROCESSING: requests waiting on the job's status read it again
            self._processing = True
            try:
                self.process(job)
            finally:
                self._processing = False
                batch_watch.changed()  # COMPLETED, or handed back, or paused
            ran += 1
        return ran

    def _purge(self) -> None:
        from smki.store.locks import exclusive

        if time.monotonic() - self._last_purge > 3600:
            self._last_purge = time.monotonic()
            with exclusive(self.home.store.engine, "batch-purge") as mine:  # one purger across nodes
                if mine:
                    batch_progress(self.home.store).purge_expired(_now())

    # -- processing ------------------------------------------------------------------------------

    def _reconcile(self, job: BatchJobRecord) -> int:
        """Copy outcomes committed by an earlier run (audit records) onto items that lack one."""
        results: list[ItemResult] = []
        for row in self.home.store.audit_rows_for(job.ref, BATCH_ISSUED_ACTION):
            details = row.details_dict
            results += [ItemResult(int(e[3]), serial=str(e[0])) for e in details.get("issued", [])]
            results += [ItemResult(int(e[0]), error_code=str(e[2]), error_text=str(e[2]))
                        for e in details.get("rejected", [])]
        if not results:
            return 0
        pending = {item.idx for item in batch_reads(self.home.store).iter_items(job.id, unprocessed=True)}
        missing = [r for r in results if r.idx in pending]
        batch_progress(self.home.store).record_results(job.id, self.owner, missing, _now())
        return len(missing)

    def _issuable(self, job: BatchJobRecord) -> Iterator[BatchItem]:
        """The job's unprocessed items, a page at a time.

        Lazy, so reading overlaps with checking and signing. The per-Device limit is not applied
        here but by the writer's screen (``device_limit_screen``), on the Device IDs the workers'
        full CSR checks read: this process no longer parses every CSR a second time to find them.

        At every chunk boundary of the items handed out, the processing window is looked at: once
        it has closed the stream ends with ``batch.window-closed``, before the next chunk is read,
        so every chunk already committed stands (with its items' outcomes) and every later item has
        no outcome and is issued when the batch resumes — none lost, none issued twice.
        """
        reads = batch_reads(self.home.store)
        policy = batch_policy(self.home.settings)
        chunk = self.chunk_size or DEFAULT_CHUNK
        after = -1
        handed = 0
        last = reads.last_index(job.id)
        while True:
            if self._stop.is_set():  # draining: stop at this chunk boundary, the rest is handed back
                raise SmkiError(HANDED_BACK, f"the server is shutting down; batch {job.ref} is handed back")
            page = reads.pending_items(job.id, after=after, limit=PAGE, last=last)
            if not page:
                return
            after = page[-1][0]
            for idx, item_id, csr in page:
                if handed and handed % chunk == 0 and policy.window is not None and not policy.open_at(self.clock()):
                    raise SmkiError(WINDOW_CLOSED, f"the processing window closed; batch {job.ref} is paused")
                handed += 1
                yield BatchItem(idx, item_id, csr)

    def process(self, job: BatchJobRecord) -> None:
        """Run one claimed job to completion (resuming it if an earlier run was cut short)."""
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job.id, beat_stop), daemon=True)
        beat.start()
        try:
            for attempt in range(1, WORKER_ATTEMPTS + 1):
                self._reconcile(job)
                try:
                    self._issue(job, self._issuable(job))
                    break
                except _WorkerDied as exc:  # a signing process died: committed chunks stand, retry the rest
                    log.warning("batch %s: %s (attempt %d of %d)", job.id, exc, attempt, WORKER_ATTEMPTS)
            else:
                self._fail_rest(job, "issuance.anomaly", "the signing processes kept failing; nothing was issued")
        except _HandedBack:
            batch_progress(self.home.store).release(job.id, self.owner)
            log.info("batch %s (%s) handed back at shutdown", job.id, job.ref)
            return
        except _KeyAway as exc:
            batch_progress(self.home.store).release(job.id, self.owner)
            log.warning("batch %s (%s) waits for the CA key (%s): its committed CSRs stand, the rest is issued "
                        "when the key signs again", job.id, job.ref, exc)
            return
        except _WindowClosed:
            batch_progress(self.home.store).release(job.id, self.owner, status=PAUSED)
            log.info("batch %s (%s) paused: the processing window closed", job.id, job.ref)
            return
        except Exception as exc:  # a read or a write the database's going away broke (_DatabaseAway or raw)
            away = database_away(exc)
            if away is None:
                raise
            self._database_away = True
            log.warning("batch %s (%s) interrupted: the database is unavailable (%s); its committed CSRs "
                        "stand, the rest is issued when it answers", job.id, job.ref, away)
            with contextlib.suppress(Exception):  # still away: this runner takes the job up again itself
                batch_progress(self.home.store).release(job.id, self.owner)
            raise _DatabaseAway(away) from exc  # no more claims until the next poll
        finally:
            beat_stop.set()
            beat.join(5)
        done = _now()
        batch_progress(self.home.store).set_status(job.id, COMPLETED, now=done, owner=self.owner, finished=True,
                                                   expires_at=done + RETENTION)
        log.info("batch %s (%s) completed", job.id, job.ref)

    def _heartbeat(self, job_id: int, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_EVERY):
            try:
                batch_progress(self.home.store).heartbeat(job_id, self.owner, _now())
            except Exception:  # a missed heartbeat is retried; the lease is many beats long
                log.warning("heartbeat for batch %s failed", job_id)

    def _issue(self, job: BatchJobRecord, items: Iterator[BatchItem]) -> None:
        try:
            first = next(items, None)
        except SmkiError as exc:
            if exc.code == HANDED_BACK:
                raise _HandedBack from exc
            if exc.code == WINDOW_CLOSED:
                raise _WindowClosed from exc
            raise
        if first is None:
            return
        def record(tx: Transaction, outcomes: Sequence[DeviceOutcome]) -> None:
            """Each commit's item outcomes and counters, in the transaction of its certificates.

            A CSR refused because the CA key could not sign (``key.*``/``hsm.*``: a token pulled
            while a warm pool was signing) stops the batch here: raising rolls this commit back, and
            the runner reports the rest with the key's code (see ``_key_failed``)."""
            for o in outcomes:
                if o.error_code is not None and key_health.is_key_fault(o.error_code):
                    raise SmkiError(o.error_code, o.error_message or o.error_code)
            issued = [(o.index, o.serial) for o in outcomes if o.der is not None and o.serial is not None]
            refused = [(o.index, o.error_code or "issuance.anomaly", o.error_message or o.error_code or "not issued")
                       for o in outcomes if o.der is None or o.serial is None]
            batch_writes(tx).record_outcomes(job.id, self.owner, issued, refused, _now())

        import itertools

        batch_items = itertools.chain([first], items)
        try:
            request_device_batch(self.home, requester_for(job), batch_items, batch_ref=job.ref,
                                 workers=self.workers, in_transaction=record, pool=self._usable_pool(),
                                 chunk_size=self.chunk_size)  # the per-Device limit included
        except PolicyRefusal as exc:
            rules = list(exc.decision.failed_ids)
            batch_progress(self.home.store).set_status(job.id, PROCESSING, now=_now(), owner=self.owner,
                                                       error_code="ra.refused", error_text=",".join(rules))
            self._fail_rest(job, "ra.refused", exc.message)
        except SmkiError as exc:
            key = key_fault_of(exc)
            if key is not None:
                self._key_failed(job, *key)
                raise _KeyAway(key[0]) from exc
            if exc.code == "batch.worker-failed":
                raise _WorkerDied(exc.message) from exc
            if exc.code == HANDED_BACK:
                raise _HandedBack from exc
            if exc.code == WINDOW_CLOSED:
                raise _WindowClosed from exc
            away = database_away(exc)
            if away is not None:  # transient: never the outcome of the CSRs not yet committed
                raise _DatabaseAway(away) from exc
            log.warning("batch %s failed: %s", job.id, exc)
            self._fail_rest(job, exc.code, exc.message)

    def _usable_pool(self) -> SigningPool | None:
        try:
            return self.signing_pool()
        except Exception:  # the batch makes its own pool and reports what goes wrong there
            log.exception("could not start the signing processes")
            return None

    def _key_failed(self, job: BatchJobRecord, code: str, message: str) -> None:
        """The CA key became unusable during ``job``: refuse new work in this process (key_health)
        and hand ``job`` back unfinished (``_KeyAway``). The chunk that met the fault was rolled
        back; every committed chunk stands and every later CSR keeps no outcome, so the batch is
        resumed where it stopped once the key signs again — by this runner after its probe, or by
        another node whose key works. No CSR is failed for the CA's fault, and the capacity the
        batch was charged stays charged: its CSRs will still be attempted."""
        key_health.report_unusable(code, message)
        log.error("batch %s: the CA key is unusable (%s: %s); batches wait and new ones are refused until it "
                  "is back", job.id, code, message)

    def _probe_key(self) -> None:
        """While the key is known to be unusable, try it again now and then; clear the fault when it
        signs (the next batch then makes a fresh signing pool)."""
        if key_health.fault() is None or time.monotonic() - self._last_probe < key_health.PROBE_SECONDS:
            return
        self._last_probe = time.monotonic()
        from smki.services.preflight import check_ca_keys

        probe = Home(self.home.settings, self.home.store, self.home.secret)
        try:
            check_ca_keys(probe)
        except Exception as exc:  # still unusable: keep refusing
            log.info("the CA key is still unusable: %s", getattr(exc, "code", type(exc).__name__))
            return
        finally:
            close = getattr(probe._backend, "close", None)
            if close is not None:
                close()
        key_health.report_usable()
        self._close_pool()
        log.warning("the CA keys sign again; batches are accepted")

    def _fail_rest(self, job: BatchJobRecord, code: str, message: str) -> int:
        """Report every item still without an outcome as failed (after recovering committed ones);
        returns how many."""
        self._reconcile(job)
        rest = [ItemResult(item.idx, error_code=code, error_text=message)
                for item in batch_reads(self.home.store).iter_items(job.id, unprocessed=True)]
        progress = batch_progress(self.home.store)
        for start in range(0, len(rest), 2000):
            progress.record_results(job.id, self.owner, rest[start:start + 2000], _now())
        return len(rest)


# ---------------------------------------------------------------------------------------------
# One Device CSR (the Ad Hoc service and the JSON API)

UNKNOWN_DEVICE_CODE = "device.unknown"


def _refuse_single(home: Home, requester: Requester, code: str, message: str, device: bytes | None) -> SmkiError:
    with home.store.transaction() as tx:
        tx.append_audit([AuditEvent(requester.actor, "request.refused", requester.party_id, {
            **requester.audit_details(), "policy": CertificatePolicy.DEVICE.value, "code": code, "reason": message,
            "device_id": None if device is None else device.hex(),
        })])
    return SmkiError(code, message)


def request_single_device(home: Home, requester: Requester, csr_data: bytes, *, capacity: CapacitySettings,
                          limit_name: str, interface: str, require_known_device: bool = False,
                          party: PartyRecord | None = None) -> DeviceOutcome:
    """One Device CSR through the subscriber path, with the web services' own checks first.

    Order: RA request rules (``ra.refused``), the CSR text (``csr.*``), the 100-per-Device limit
    (``csr.device-limit``), for the Ad Hoc service the Device being known (``device.unknown``: no
    certificate issued for it yet), then capacity (``capacity.*``); then it is issued. A CSR the CA
    refuses is raised with the CA's ``csr.*`` code. ``party``: the Party's record if the caller has
    read it in this request (the Ad Hoc service's role check), so it is not read again.

    The request's reads share one pooled connection (``store.held_reads``; the caller may hold it
    for longer, around its own reads too).
    """
    with home.store.held_reads():
        return _request_single_device(home, requester, csr_data, capacity=capacity, limit_name=limit_name,
                                      interface=interface, require_known_device=require_known_device, party=party)


def _request_single_device(home: Home, requester: Requester, csr_data: bytes, *, capacity: CapacitySettings,
                           limit_name: str, interface: str, require_known_device: bool,
                           party: PartyRecord | None) -> DeviceOutcome:
    from smki.ca.csr import decode_csr_text
    from smki.services.requests import request_device

    decision, party = authorise_with_party(
        home, requester, CertificateRequestFacts(policy=CertificatePolicy.DEVICE, route=requester.route),
        party=party)
    der = decode_csr_text(csr_data)
    device = peek_device_id(der)
    fingerprint = peek_key_fingerprint(der)
    read_ahead: ReadAhead | None = None
    if device is not None:
        if fingerprint is not None:  # the issuance's own reads too, in the same round trip on PostgreSQL
            ahead = home.store.single_device_reads(device, fingerprint)
            count = ahead.device_certificates
            read_ahead = ReadAhead(ahead.device_ca_der, {fingerprint: ahead.key_certified_as})
        else:
            count = home.store.count_device_certificates(device)
        limit = check_device_limit(device, count)  # the RA's rule csr.device-limit
        if not limit.passed:
            raise _refuse_single(home, requester, limit.rule_id, limit.reason, device)
        if require_known_device and count == 0:
            raise _refuse_single(home, requester, UNKNOWN_DEVICE_CODE,
                                 f"no certificate has been issued yet for Device ID {device.hex().upper()}", device)
    key_health.refuse_if_unusable()
    consume(home, capacity, requester.party_id, limit_name, actor=requester.actor, interface=interface)
    # Appendix M lists no Eligible Subscriber check on the Ad Hoc web service (spec §7.2).
    outcome = request_device(home, requester, der, decision=decision, eligibility=interface != "adhoc", party=party,
                             read_ahead=read_ahead, device_limit=False)  # counted above, with the read-ahead
    if not outcome.ok:
        raise SmkiError(outcome.error_code or "issuance.anomaly", outcome.error_message or "not issued")
    return outcome
