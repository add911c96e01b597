"""What the admin listener reports: is this node ready to serve, and the state worth graphing.

``readiness(home)`` answers ``/readyz``: the database is reachable, its schema is current, every CA
key signs (a probe signature checked against the CA certificate's public key, so a key that opens
but does not match is caught too), and every live server process's batch runner has looped
recently. ``gauges(home)`` is read on each ``/metrics`` scrape: batch queue depth and the age of
its oldest job, capacity bucket levels per Party, CRL/ARL age and the time to their next update,
and revocations no published list holds yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from smki.domain import CertKind
from smki.errors import SmkiError
from smki.services.context import Home

#: Which key signs for which CA certificate.
CA_KEYS = {CertKind.ROOT: "root", CertKind.ORGANISATION_CA: "organisation-ca", CertKind.DEVICE_CA: "device-ca"}
_PROBE = b"smki readiness probe"


@dataclass
class Readiness:
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return all(check["ok"] for check in self.checks.values())

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks[name] = {"ok": ok, "detail": detail}

    def as_json(self) -> dict[str, Any]:
        return {"ready": self.ready, "checks": self.checks}


def _error(exc: BaseException) -> str:
    """One line (a driver's error runs to several, with a link to SQLAlchemy's help)."""
    text = f"{exc.code}: {exc.message}" if isinstance(exc, SmkiError) else f"{type(exc).__name__}: {exc}"
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def check_keys(home: Home) -> tuple[bool, str]:
    """Sign a probe with each CA key and verify it with the CA certificate's public key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    backend = home.backend()
    for kind, label in CA_KEYS.items():
        certificate = home.ca_certificate(kind)
        public = certificate.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            return False, f"{kind.value}: not an EC key"
        try:
            public.verify(backend.signer(label).sign(_PROBE), _PROBE, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False, f"{kind.value}: the key does not match the certificate"
    return True, f"{len(CA_KEYS)} CA keys sign"


def readiness(home: Callable[[], Home], runner_beats: dict[int, float], *, max_beat_age: float,
              runners: int = 1) -> Readiness:
    """``home`` opens the node's home (once; the admin process opens it at its first probe): a
    database away at that moment is the probe's ``database`` check failing (503), not an error."""
    report = Readiness()
    try:
        opened = home()
    except Exception as exc:
        report.add("database", False, _error(exc))
        report.add("schema", False, "database unreachable")
        report.add("ca_keys", False, "not checked: the home could not be opened")
    else:
        _home_checks(report, opened)
    _runner_check(report, runner_beats, max_beat_age=max_beat_age, runners=runners)
    return report


def _home_checks(report: Readiness, home: Home) -> None:
    from smki.observability.metrics import key_backend_error

    try:
        home.store.ping()
        report.add("database", True, home.store.dialect)
    except Exception as exc:
        report.add("database", False, _error(exc))
        report.add("schema", False, "database unreachable")
    else:
        try:
            home.store.require_current_schema()
            report.add("schema", True, str(home.store.schema_status().current))
        except Exception as exc:
            report.add("schema", False, _error(exc))
    from smki.ca import p256_verify

    # Never failing: which code verifies CSRs' self-signatures here, so that a node that fell back
    # to cryptography (no OpenSSL 3 libcrypto; ~20 µs more per CSR) is seen without reading logs.
    report.add("csr_signature_check", True, p256_verify.engine())
    try:
        ok, detail = check_keys(home)
        report.add("ca_keys", ok, detail)
    except Exception as exc:
        if isinstance(exc, SmkiError):
            key_backend_error(exc.code)
        report.add("ca_keys", False, _error(exc))
        home.reset_backend()  # an HSM that came back is reopened on the next probe


def _runner_check(report: Readiness, runner_beats: dict[int, float], *, max_beat_age: float, runners: int) -> None:
    from smki.services.procguard import pid_alive

    now = time.time()
    live = {pid: beat for pid, beat in runner_beats.items() if pid_alive(pid)}
    stale = sorted(pid for pid, beat in live.items() if now - beat > max_beat_age)
    if len(live) < runners:
        report.add("batch_runner", False, f"{len(live)} of {runners} batch runners have reported")
    elif stale:
        report.add("batch_runner", False, f"no loop for over {max_beat_age:.0f} s in pid {', '.join(map(str, stale))}")
    else:
        report.add("batch_runner", True, f"{len(live)} running")


@dataclass(frozen=True)
class Gauge:
    name: str
    help: str
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]]


def gauges(home: Home) -> list[Gauge]:
    """The state read from the database on each scrape."""
    from smki.services.batch_lifecycle import PAUSED, PENDING, PROCESSING, QUEUED
    from smki.services.capacity import usage
    from smki.store.batches import batch_reads

    now = datetime.now(UTC)
    # Awaiting approval, approved and waiting (or paused outside the window), or running.
    waiting = batch_reads(home.store).jobs(statuses=[PENDING, QUEUED, PAUSED, PROCESSING], limit=100_000)
    depth = sum(job.total - job.processed for job in waiting)
    oldest = max(((now - job.created_at).total_seconds() for job in waiting), default=0.0)
    result = [
        Gauge("smki_batch_queue_jobs", "Batch jobs waiting or running", (), [((), float(len(waiting)))]),
        Gauge("smki_batch_queue_depth", "CSRs in batch jobs not yet processed", (), [((), float(depth))]),
        Gauge("smki_batch_queue_oldest_age_seconds", "Age of the oldest waiting or running batch job", (),
              [((), oldest)]),
        Gauge("smki_capacity_bucket_level", "Capacity left per Party and limit (units)", ("party", "limit"),
              [((row["party"], row["limit"]), float(row["remaining"])) for row in usage(home)]),
    ]
    age: list[tuple[tuple[str, ...], float]] = []
    next_update: list[tuple[tuple[str, ...], float]] = []
    from smki.services.revocation import unpublished_revocations

    unpublished: list[tuple[tuple[str, ...], float]] = []
    for kind in ("CRL", "ARL"):
        record = home.store.revocation_list(kind)
        unpublished.append(((kind,), float(unpublished_revocations(home, kind, record))))
        if record is not None:
            age.append(((kind,), (now - record.this_update).total_seconds()))
            next_update.append(((kind,), (record.next_update - now).total_seconds()))
    result.append(Gauge("smki_revocation_list_age_seconds", "Seconds since the newest CRL/ARL's thisUpdate",
                        ("kind",), age))
    result.append(Gauge("smki_revocation_list_next_update_seconds",
                        "Seconds until the newest CRL/ARL's nextUpdate (negative: overdue)", ("kind",), next_update))
    result.append(Gauge("smki_revocations_unpublished",
                        "Revoked certificates the newest CRL/ARL does not list yet (a publication was "
                        "interrupted; the scheduler's next tick publishes them)", ("kind",), unpublished))
    return result
