"""A data generator for scale tests and benchmarks (``smki dev populate``; issue 5).

It fills a store with Device Certificate records such as issuance itself leaves — real DER from
the production fast path (``DeviceCertificateFactory``), signed by the home's Device CA — as fast
as the database can take them. What a record shares with one that was issued:

* Its own subject key, made for it and recorded in the key register (issue 13) with its serial,
  as every issuance records the key it certified: a populated store holds no duplicate key, and
  the register grows with the certificates, as it does in service.
* A random serial drawn by the factory, as for every certificate (spec §4): the serial index and
  the register's fingerprint index take their keys at random places, as they do in service, so a
  benchmark on a populated store pays what a real store of that size costs (until the seventeenth
  session a run's serials were a prefix plus a counter and 16 keys were reused: both indexes were
  appended to, and the register stayed empty).
* Device IDs continue after the highest Device ID already in the store, each Device getting a DS
  and a KA certificate (both in use), so a second run adds Devices rather than colliding.

What makes it fast:

* Rows are bulk-loaded in big transactions (``Transaction.copy_certificates``: PostgreSQL ``COPY``,
  SQLite ``executemany``) with one audit record per chunk (``dev.populated``: count, batch and
  Device range; the batch id is on every record it added).
* Signing, and making the keys, run in worker processes while the parent streams the previous
  chunk to the database.

``populate_revoked_organisation`` adds revoked Organisation Certificate records for CRL tests: one
real linted certificate per (role, usage) prototype from the profile, then copies that differ only
in their serial (random, as the factory draws them), each re-signed by the Organisation CA, so every
record is a valid certificate. The copies share their prototype's key and are left out of the key
register (which issuance would not allow): they are there for the CRL, which lists serials only.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from smki.audit import AuditEvent
from smki.domain import CertKind, CertStatus, RemotePartyRole, Usage
from smki.errors import ConfigError, SmkiError
from smki.services.key_register import record_device_keys

if TYPE_CHECKING:
    from smki.ca.device_template import DeviceCertificateFactory
    from smki.config import Settings
    from smki.services.context import Home

DEFAULT_CHUNK = 50_000
MAX_RECORDS = 100_000_000
FIRST_DEVICE = 0x00DB_0000_0000_0000
DEVICE_NOT_AFTER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
Row = tuple[object, ...]
#: A chunk's certificate rows and their keys' (fingerprint, serial) pairs.
_Chunk = tuple[list[Row], list[tuple[bytes, str]]]


@dataclass(frozen=True)
class PopulateSummary:
    """What a run added: how many records, their Device ID and serial ranges, and how long it took."""

    records: int
    first_device: bytes
    last_device: bytes
    batch_id: str
    seconds: float

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class _Plan:
    """Everything a worker needs to produce any chunk of a run (picklable)."""

    first_device: int
    batch_id: str
    issuer_key_id: str
    count: int


# -- worker side: CPU only --------------------------------------------------------------------

_FACTORY: DeviceCertificateFactory | None = None


def _init_worker(settings: Settings, secret: bytes, issuer_der: bytes) -> None:
    from smki.ca.device_template import DeviceCertificateFactory
    from smki.ca.hierarchy import DEVICE_CA_LABEL
    from smki.keys import open_backend

    global _FACTORY
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (one line, no traceback)
    signer = open_backend(settings, secret).signer(DEVICE_CA_LABEL)
    _FACTORY = DeviceCertificateFactory(x509.load_der_x509_certificate(issuer_der), signer, settings)


def _init_pool_worker(settings: Settings, secret: bytes, issuer_der: bytes, owner: int) -> None:
    """A worker process's start: it ends with the process that owns the pool (``exit_with``), even
    one killed outright, rather than wait for work for ever with the CA key open."""
    from smki.services.procguard import exit_with

    exit_with(owner)
    _init_worker(settings, secret, issuer_der)


def _make_rows(plan: _Plan, start: int, stop: int) -> _Chunk:
    """Records ``start``..``stop``-1 of the run, and their keys' (fingerprint, serial) for the key
    register: record i is Device ``first + i // 2``, DS then KA, each with a key of its own and a
    random serial. Only the public half of each key is kept (nothing is ever signed with it)."""
    from smki.ca.keyid import P256_SPKI_PREFIX, key_fingerprint
    from smki.ca.requests import DeviceRequest

    assert _FACTORY is not None, "worker not initialised"
    now = datetime.now(UTC).replace(microsecond=0)
    issue = _FACTORY.issue
    usages = (Usage.DS, Usage.KA)
    curve = ec.SECP256R1()
    rows: list[Row] = []
    keys: list[tuple[bytes, str]] = []
    for i in range(start, stop):
        device_id = (plan.first_device + i // 2).to_bytes(8, "big")
        usage = usages[i & 1]
        point = ec.generate_private_key(curve).public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        issued = issue(DeviceRequest(device_id, usage, P256_SPKI_PREFIX + point, point), now)
        serial = f"{issued.serial:032x}"
        rows.append((serial, "device", usage.value, plan.issuer_key_id, device_id, None, None, "I",
                     issued.not_before, DEVICE_NOT_AFTER, issued.der, issued.not_before, plan.batch_id,
                     issued.not_before))
        keys.append((key_fingerprint(point), serial))
    return rows, keys


# -- parent side: the single writer ----------------------------------------------------------


def populate_devices(
    home: Home,
    count: int,
    *,
    actor: str,
    chunk_size: int = DEFAULT_CHUNK,
    workers: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> PopulateSummary:
    """Add ``count`` Device Certificate records (DS and KA for ``ceil(count / 2)`` new Devices).

    ``workers=0`` signs in this process (the database's COPY then overlaps with signing anyway);
    ``workers=N`` signs in N processes while this one only writes.
    """
    if not 1 <= count <= MAX_RECORDS:
        raise SmkiError("populate.bad-count", f"populate adds 1 to {MAX_RECORDS:,} records")
    if not 1 <= chunk_size <= 1_000_000:
        raise SmkiError("populate.bad-chunk", "a chunk holds 1 to 1,000,000 records")
    if home.secret is None:
        raise ConfigError("key.secret-missing", "populate signs with the Device CA: it needs the CA key passphrase")
    from smki.ca.keyid import key_identifier

    started = time.perf_counter()
    issuer = home.ca_certificate(CertKind.DEVICE_CA)
    highest = home.store.highest_device_id()
    first_device = FIRST_DEVICE if highest is None else max(FIRST_DEVICE, int.from_bytes(highest, "big") + 1)
    if first_device + (count + 1) // 2 > 1 << 64:
        raise SmkiError("populate.no-device-ids", "no room left for that many Device IDs after the highest one")
    plan = _Plan(first_device, f"populate-{secrets.token_hex(8)}",
                 key_identifier(issuer.public_key()).hex(), count)  # type: ignore[arg-type]
    issuer_der = issuer.public_bytes(Encoding.DER)
    done = 0

    def commit(start: int, chunk: _Chunk) -> None:
        nonlocal done
        rows, keys = chunk
        stop = start + len(rows)
        details = {
            "count": len(rows), "batch": plan.batch_id,
            "first_device": (plan.first_device + start // 2).to_bytes(8, "big").hex(),
            "last_device": (plan.first_device + (stop - 1) // 2).to_bytes(8, "big").hex(),
        }
        with home.store.transaction() as tx:
            tx.copy_certificates(rows, count=len(rows))
            record_device_keys(tx, keys)
            tx.append_audit([AuditEvent(actor, "dev.populated", plan.batch_id, details)])
        done += len(rows)
        if on_progress is not None:
            on_progress(done)

    bounds = [(start, min(start + chunk_size, count)) for start in range(0, count, chunk_size)]
    if workers <= 0:
        _init_worker(home.settings, home.secret, issuer_der)
        for start, stop in bounds:
            commit(start, _make_rows(plan, start, stop))
    else:
        for start, chunk in _parallel(home, plan, issuer_der, bounds, workers):
            commit(start, chunk)
    last = count - 1
    return PopulateSummary(
        records=count,
        first_device=first_device.to_bytes(8, "big"),
        last_device=(first_device + last // 2).to_bytes(8, "big"),
        batch_id=plan.batch_id,
        seconds=time.perf_counter() - started,
    )


def _parallel(home: Home, plan: _Plan, issuer_der: bytes, bounds: list[tuple[int, int]],
              workers: int) -> Iterator[tuple[int, _Chunk]]:
    """Chunks signed by ``workers`` processes, yielded in order, at most two per worker in flight."""
    assert home.secret is not None
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_pool_worker,
                             initargs=(home.settings, home.secret, issuer_der, os.getpid())) as pool:
        pending: deque[tuple[int, Future[_Chunk]]] = deque()
        for start, stop in bounds:
            pending.append((start, pool.submit(_make_rows, plan, start, stop)))
            if len(pending) >= 2 * workers:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()


def default_workers() -> int:
    """One worker per core. Each record's key is made in a worker as well as signed there, so the
    workers do nearly all the work and the writer mostly waits for them. Measured on 2 cores with
    ``smki dev populate --devices 200000 --workers N``, alternated: 2 workers 1.33-1.51 times as
    fast as 1 on SQLite, 1.52-1.60 times on PostgreSQL, whose server shares the cores."""
    return os.cpu_count() or 1


# -- revoked Organisation Certificates (for CRL tests and benchmarks) ------------------------


def populate_revoked_organisation(
    home: Home,
    count: int,
    *,
    actor: str,
    reason: int = 1,
    entity_id: bytes = bytes.fromhex("90B3D51F3001FFFF"),
    chunk_size: int = 20_000,
) -> int:
    """Add ``count`` revoked Organisation Certificate records issued by the Organisation CA.

    Does not publish a CRL: the caller does (and so measures publication on its own).
    """
    from smki.ca.csr import check_organisation_csr
    from smki.ca.devcsr import make_organisation_csr
    from smki.ca.hierarchy import ORGANISATION_CA_LABEL
    from smki.ca.keyid import key_identifier
    from smki.ca.profiles import build_organisation, random_serial

    if not 1 <= count <= 10_000_000:
        raise SmkiError("populate.bad-count", "populate adds 1 to 10,000,000 revoked Organisation records")
    issuer = home.ca_certificate(CertKind.ORGANISATION_CA)
    signer = home.backend().signer(ORGANISATION_CA_LABEL)
    moment = datetime.now(UTC).replace(microsecond=0)
    prototypes = []
    for usage in (Usage.DS, Usage.KA):
        request = check_organisation_csr(make_organisation_csr(entity_id, RemotePartyRole.OTHER, usage))
        cert = build_organisation(request, issuer, signer, home.settings, moment)
        prototypes.append((usage, cert))
    issuer_kid = key_identifier(issuer.public_key()).hex()  # type: ignore[arg-type]
    batch_id = f"populate-org-{secrets.token_hex(8)}"
    for start in range(0, count, chunk_size):
        rows: list[Row] = []
        for i in range(start, min(start + chunk_size, count)):
            usage, cert = prototypes[i & 1]
            serial = random_serial()  # as the factory draws every serial: the index sees real keys
            der = _with_serial(cert, serial, signer.sign)
            rows.append((f"{serial:032x}", CertKind.ORGANISATION.value, usage.value, issuer_kid, None, entity_id,
                         int(RemotePartyRole.OTHER), CertStatus.IN_USE.value, cert.not_valid_before_utc,
                         cert.not_valid_after_utc, der, moment, batch_id, moment))
        with home.store.transaction() as tx:
            tx.copy_certificates(rows, count=len(rows), kind=CertKind.ORGANISATION)
            tx.revoke_certificates([str(r[0]) for r in rows], reason, moment)
            tx.append_audit([AuditEvent(actor, "dev.populated-revoked", batch_id, {
                "count": len(rows), "reason": reason, "first_serial": str(rows[0][0]),
                "last_serial": str(rows[-1][0]),
            })])
    return count


def _with_serial(cert: x509.Certificate, serial: int, sign: Callable[[bytes], bytes]) -> bytes:
    """``cert`` with another serial of the same length, re-signed (its TBS is otherwise unchanged)."""
    from smki.ca.der import der_tlv, signed_structure
    from smki.ca.device_template import encode_serial, split_tlvs, tlv_content

    fields = split_tlvs(tlv_content(cert.tbs_certificate_bytes))
    new_serial = encode_serial(serial)
    if len(new_serial) != len(fields[1]):
        raise SmkiError("populate.serial-length", "a copied certificate's serial must keep its length")
    tbs = der_tlv(0x30, fields[0] + new_serial + b"".join(fields[2:]))
    return signed_structure(tbs, sign(tbs))
