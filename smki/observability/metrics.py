"""Prometheus metrics, added up across ``--workers N`` (prometheus_client's multiprocess mode).

``smki serve --admin HOST:PORT`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before
anything imports prometheus_client (:func:`enable_multiprocess`); every server process then writes
its counters and histograms to memory-mapped files there, and the admin listener adds them up on
each scrape. Without the admin listener the same calls count in-process (nothing reads them).

Counted where they happen (per process, summed on scrape):

=========================================== =========================================================
``smki_http_requests_total``                requests by ``listener``, ``route`` (template), ``status``
``smki_http_request_duration_seconds``      histogram by ``listener``, ``route``
``smki_csrs_total``                         CSRs by ``outcome`` (accepted/refused) and refusal ``code``
``smki_certificates_issued_total``          certificates by ``kind`` (device, organisation, …)
``smki_audit_records_total``                audit records written, by ``action``
``smki_key_backend_errors_total``           key-backend (file/HSM) errors by ``code``
``smki_batch_runner_heartbeat_timestamp``   last loop of each process's batch runner (per ``pid``)
``smki_tls_handshake_failures_total``       failed TLS handshakes by ``listener`` and ``reason`` (a category:
                                            no-certificate, certificate-rejected, plain-http, protocol,
                                            client-alert, timeout, closed, other)
``smki_connections_dropped_total``          connections dropped for slowness by ``listener`` and ``reason``
                                            (head-timeout: a partial request head; send-stalled: a
                                            response not read)
=========================================== =========================================================

Read from the database on each scrape (:mod:`smki.services.health`): batch queue depth and oldest
age, capacity bucket levels per Party, CRL/ARL age and time to next update.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def enable_multiprocess(directory: Path) -> None:
    """Make ``directory`` the (emptied) multiprocess store; call before any metric is counted."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
    os.environ[ENV] = str(directory)


def multiprocess_dir() -> str | None:
    return os.environ.get(ENV) or None


class _Metrics:
    """The metrics, made on first use (so the multiprocess switch above can come first)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter("smki_http_requests", "HTTP requests by listener, route and status",
                                ["listener", "route", "status"])
        self.duration = Histogram("smki_http_request_duration_seconds", "HTTP request duration",
                                  ["listener", "route"], buckets=_BUCKETS)
        self.csrs = Counter("smki_csrs", "CSRs accepted and refused (by refusal code)", ["outcome", "code"])
        self.issued = Counter("smki_certificates_issued", "Certificates issued by kind", ["kind"])
        self.audit = Counter("smki_audit_records", "Audit records written by action", ["action"])
        self.key_errors = Counter("smki_key_backend_errors", "Key backend errors by code", ["code"])
        self.handshakes = Counter("smki_tls_handshake_failures", "Failed TLS handshakes by listener and reason",
                                  ["listener", "reason"])
        self.dropped = Counter("smki_connections_dropped", "Connections dropped for a client too slow to "
                               "send a request head or to read its response, by listener and reason",
                               ["listener", "reason"])
        self.heartbeat = Gauge("smki_batch_runner_heartbeat_timestamp", "Last loop of the batch runner (unix time)",
                               multiprocess_mode="liveall")


_metrics: _Metrics | None = None
_made = threading.Lock()


def _m() -> _Metrics:
    global _metrics
    if _metrics is None:
        with _made:  # the listeners' threads may count their first request at the same moment
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


#: The request counter's and histogram's children by (listener, route, status). As many as the
#: series themselves (route is a template), and prometheus_client keeps those children anyway;
#: looking them up here spares two ``labels()`` calls per request.
_request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(listener: str, route: str, status: int, seconds: float) -> None:
    children = _request_children.get((listener, route, status))
    if children is None:
        m = _m()
        children = _request_children.setdefault(
            (listener, route, status),
            (m.requests.labels(listener, route, str(status)), m.duration.labels(listener, route)))
    counter, histogram = children
    counter.inc()
    histogram.observe(seconds)


def csr_refused(code: str, count: int = 1) -> None:
    _m().csrs.labels("refused", code).inc(count)


def key_backend_error(code: str) -> None:
    _m().key_errors.labels(code).inc()


def handshake_failed(listener: str, reason: str) -> None:
    """A TLS handshake failed (counted every time, though its log line may be one of many summed up)."""
    _m().handshakes.labels(listener, reason).inc()


def connection_dropped(listener: str, reason: str) -> None:
    """A connection was dropped for slowness: ``head-timeout`` (part of a request head, then nothing
    for ``[api] head-timeout``) or ``send-stalled`` (nothing of a response read for ``[api] send-timeout``)."""
    _m().dropped.labels(listener, reason).inc()


def runner_heartbeat() -> None:
    _m().heartbeat.set(time.time())


def committed(issued: Mapping[str, int], audit_actions: Mapping[str, int], refused: Mapping[str, int]) -> None:
    """A store transaction committed: certificates issued (= CSRs accepted), audit records written,
    batch items refused."""
    m = _m()
    for code, count in refused.items():
        m.csrs.labels("refused", code).inc(count)
    for kind, count in issued.items():
        m.issued.labels(kind).inc(count)
        if kind in ("device", "org"):
            m.csrs.labels("accepted", "").inc(count)
    for action, count in audit_actions.items():
        m.audit.labels(action).inc(count)


def install() -> None:
    """Count what the store commits (certificates issued, audit records): once per process."""
    from smki.store.store import add_commit_hook

    add_commit_hook(committed)


def process_ended(pid: int) -> None:
    """Forget the live gauges of a server process that ended (``liveall``: its heartbeat)."""
    directory = multiprocess_dir()
    if directory is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def registry() -> Any:
    """The registry to expose: the multiprocess sum when enabled, else this process's own."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    directory = multiprocess_dir()
    if directory is None:
        return REGISTRY
    collected = CollectorRegistry()
    MultiProcessCollector(collected, path=directory)  # type: ignore[no-untyped-call]
    return collected


def runner_heartbeats() -> dict[int, float]:
    """The last batch-runner loop of each process that reported one: {pid: unix time}."""
    beats: dict[int, float] = {}
    for family in registry().collect():
        if family.name != "smki_batch_runner_heartbeat_timestamp":
            continue
        for sample in family.samples:
            if sample.value <= 0:  # the gauge exists but this process's runner never looped
                continue
            pid = int(sample.labels.get("pid", os.getpid()))
            beats[pid] = max(beats.get(pid, 0.0), sample.value)
    return beats
