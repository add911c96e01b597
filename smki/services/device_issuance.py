"""Device Certificate issuance, one or many: parse, validate, sign, then persist with the audit.

The work is split where the costs are. Checking a CSR and signing a certificate (two ECDSA
operations) run in worker processes, one ``DeviceCertificateFactory`` each; the parent process is
the single writer. It commits each chunk's certificates and their audit records in one transaction
and only then releases the chunk's results, so a certificate is never handed out unless it is
recorded, and a crash (even ``kill -9``) loses at most chunks that were never committed — whose
certificates nobody has seen. At most ``2 x workers`` chunks are in flight, so memory stays flat
however large the batch.

A Device holds one *in use* certificate per usage (DS, KA): issuing a new one puts the previous
in-use certificate for that Device and usage to *not in use* (``N``) in the same transaction.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.audit import AuditEvent
from smki.domain import CertKind, CertStatus, Usage
from smki.errors import SmkiError
from smki.eui64 import eui64_hex
from smki.services.batch_sources import BatchItem

if TYPE_CHECKING:
    from smki.ca.device_template import DeviceCertificateFactory
    from smki.config import Settings
    from smki.services.context import Home

DEFAULT_CHUNK = 500
#: The code of a CSR that failed through no fault of its own (DCC status ISSUANCE_ANOMALY).
ISSUANCE_ANOMALY = "issuance.anomaly"
BATCH_ISSUED_ACTION = "device-certificates.issued"
DEVICE_CA_LABEL = "device-ca"
DEVICE_NOT_AFTER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)  # spec §4.1: no defined expiry


@dataclass(frozen=True, slots=True)
class DeviceOutcome:
    """What happened to one CSR of a batch: a certificate, or a coded refusal."""

    index: int
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


@dataclass(frozen=True)
class BatchSummary:
    batch_ref: str
    issued: int
    rejected: int
    seconds: float


# ---------------------------------------------------------------------------------------------
# Worker side: pure CPU work, no database. One factory per process.

_FACTORY: DeviceCertificateFactory | None = None


def _make_factory(settings: Settings, secret: bytes, issuer_der: bytes) -> DeviceCertificateFactory:
    from smki.ca.device_template import DeviceCertificateFactory
    from smki.keys import open_backend

    signer = open_backend(settings, secret).signer(DEVICE_CA_LABEL)
    return DeviceCertificateFactory(x509.load_der_x509_certificate(issuer_der), signer, settings)


def _init_worker(settings: Settings, secret: bytes, issuer_der: bytes) -> None:
    global _FACTORY
    _FACTORY = _make_factory(settings, secret, issuer_der)


def _issue_one(factory: DeviceCertificateFactory, item: BatchItem, now: datetime) -> DeviceOutcome:
    from smki.ca.csr import check_device_csr, decode_csr_text

    try:
        request = check_device_csr(decode_csr_text(item.data))
        issued = factory.issue(request, now)
    except SmkiError as exc:
        return DeviceOutcome(item.index, item.item_id, error_code=exc.code, error_message=exc.message)
    except Exception as exc:  # a fault of ours, not of the CSR: report it for this CSR, keep the batch going
        return DeviceOutcome(item.index, item.item_id, error_code=ISSUANCE_ANOMALY,
                             error_message=f"internal error while issuing ({type(exc).__name__}); nothing was issued")
    return DeviceOutcome(
        item.index,
        item.item_id,
        device_id=request.device_id,
        usage=request.usage,
        serial=f"{issued.serial:032x}",
        der=issued.der,
        not_before=issued.not_before,
    )


def _issue_chunk(items: Sequence[BatchItem]) -> list[DeviceOutcome]:
    assert _FACTORY is not None, "worker not initialised"
    now = datetime.now(UTC).replace(microsecond=0)
    return [_issue_one(_FACTORY, item, now) for item in items]


# ---------------------------------------------------------------------------------------------
# Parent side: the single writer.


def _key_id_hex(cert: x509.Certificate) -> str:
    from smki.ca.keyid import key_identifier

    return key_identifier(cert.public_key()).hex()  # type: ignore[arg-type]


def _record_chunk(home: Home, outcomes: Sequence[DeviceOutcome], actor: str, batch_ref: str,
                  issuer_key_id: str, skipped: set[tuple[bytes, Usage]] | None = None) -> None:
    """Commit one chunk: retire superseded certificates, add the new ones, audit every outcome.

    The chunk's audit record lists every certificate issued (serial, Device ID, usage, index in the
    batch) and every CSR refused (index, item, code): one hash-chained record per chunk rather than
    one per certificate keeps the single writer fast (a per-certificate record cost as much as
    inserting the certificate), while every certificate still matches an audit entry committed in
    the same transaction.
    """
    from smki.store import NewCertificate

    issued = [o for o in outcomes if o.ok]
    latest: dict[tuple[bytes, Usage], str] = {}
    for outcome in issued:
        assert outcome.device_id is not None and outcome.usage is not None
        latest[(outcome.device_id, outcome.usage)] = outcome.serial or ""
    rows = []
    issued_list: list[list[object]] = []
    rejected_list: list[list[object]] = []
    for outcome in outcomes:
        if not outcome.ok:
            rejected_list.append([outcome.index, outcome.item_id, outcome.error_code])
            continue
        assert outcome.device_id is not None and outcome.usage is not None and outcome.der is not None
        assert outcome.serial is not None and outcome.not_before is not None
        key = (outcome.device_id, outcome.usage)
        status = CertStatus.IN_USE if latest[key] == outcome.serial else CertStatus.NOT_IN_USE
        rows.append(NewCertificate(
            serial=outcome.serial,
            kind=CertKind.DEVICE,
            usage=outcome.usage,
            issuer_key_id=issuer_key_id,
            device_id=outcome.device_id,
            entity_id=None,
            role=None,
            status=status,
            not_before=outcome.not_before,
            not_after=DEVICE_NOT_AFTER,
            der=outcome.der,
            issued_at=outcome.not_before,
            batch_id=batch_ref,
        ))
        issued_list.append([outcome.serial, outcome.device_id.hex(), outcome.usage.value, outcome.index])
    event = AuditEvent(actor, BATCH_ISSUED_ACTION, batch_ref, {
        "batch": batch_ref, "issued": issued_list, "rejected": rejected_list,
    })
    with home.store.transaction() as tx:
        if latest:
            tx.retire_in_use_device_certificates(list(latest))
        if rows:
            tx.add_certificates(rows)
        tx.append_audit([event])


def _chunks(items: Iterable[BatchItem], size: int) -> Iterator[list[BatchItem]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


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
) -> BatchSummary:
    """Issue a Device Certificate for every good CSR in ``items``; report bad ones individually.

    ``on_chunk`` receives each chunk's outcomes after they are committed (for files, progress,
    responses). ``workers=0`` issues in this process (small batches, tests); the default is one
    worker per core. ``resume=True`` continues an earlier run of the same ``batch_ref`` over the
    same items: items whose certificate that run committed (per its audit records) are skipped, so
    nothing is issued twice; the rest — never reached, or failed (e.g. an HSM fault) — are issued.
    """
    import time

    started = time.perf_counter()
    if home.secret is None:
        from smki.errors import ConfigError

        raise ConfigError("key.secret-missing", "issuing needs the CA key passphrase or PIN")
    issuer = home.ca_certificate(CertKind.DEVICE_CA)
    issuer_der = issuer.public_bytes(Encoding.DER)
    issuer_key_id = _key_id_hex(issuer)
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    done: set[int] = set()
    if resume:
        for row in home.store.audit_rows_for(batch_ref, BATCH_ISSUED_ACTION):
            done.update(int(entry[3]) for entry in row.details_dict["issued"])
        items = (item for item in items if item.index not in done)
    with home.store.transaction() as tx:
        tx.append_audit([AuditEvent(actor, "batch.resumed" if resume else "batch.started", batch_ref,
                                    {"kind": "device", "already_issued": len(done)})])

    counts = [0, 0]

    def commit(outcomes: Sequence[DeviceOutcome]) -> None:
        _record_chunk(home, outcomes, actor, batch_ref, issuer_key_id)
        counts[0] += sum(1 for o in outcomes if o.ok)
        counts[1] += sum(1 for o in outcomes if not o.ok)
        if on_chunk is not None:
            on_chunk(outcomes)

    if n_workers <= 0:
        factory = _make_factory(home.settings, home.secret, issuer_der)
        for chunk in _chunks(items, chunk_size):
            now = datetime.now(UTC).replace(microsecond=0)
            commit([_issue_one(factory, item, now) for item in chunk])
    else:
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(home.settings, home.secret, issuer_der),
        ) as pool:
            pending: deque[Future[list[DeviceOutcome]]] = deque()
            try:
                for chunk in _chunks(items, chunk_size):
                    pending.append(pool.submit(_issue_chunk, chunk))
                    if len(pending) >= 2 * n_workers:
                        commit(pending.popleft().result())
                while pending:
                    commit(pending.popleft().result())
            except BrokenProcessPool as exc:
                raise SmkiError(
                    "batch.worker-failed",
                    f"a worker process died; {counts[0]} certificates were committed — resume batch {batch_ref}",
                ) from exc

    with home.store.transaction() as tx:
        tx.append_audit([AuditEvent(actor, "batch.completed", batch_ref, {
            "kind": "device", "issued": counts[0], "rejected": counts[1],
        })])
    return BatchSummary(batch_ref, counts[0], counts[1], time.perf_counter() - started)

