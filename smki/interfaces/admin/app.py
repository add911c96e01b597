"""``/healthz``, ``/readyz`` and ``/metrics`` on the admin listener (plain HTTP, no credential).

It is meant for a loopback address or a management network only: it serves nothing a subscriber
may not see, but it is not authenticated. ``/readyz`` is JSON
(``{"ready": bool, "checks": {name: {"ok", "detail"}}}``) with 503 when any check fails;
``/metrics`` is the Prometheus text format, the multiprocess sum of every server process plus
the gauges read from the database at scrape time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from smki.services.context import Home

log = logging.getLogger("smki.admin")


class _DatabaseCollector:
    """Gauges read from the database when Prometheus scrapes (one home, one connection pool)."""

    def __init__(self, home: Callable[[], Home]) -> None:
        self.home = home

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from smki.services.health import gauges

        try:
            values = gauges(self.home())
        except Exception as exc:
            log.warning("metrics: cannot read the database: %s", exc)
            yield GaugeMetricFamily("smki_database_up", "The database answered the last scrape", value=0)
            return
        yield GaugeMetricFamily("smki_database_up", "The database answered the last scrape", value=1)
        for gauge in values:
            family = GaugeMetricFamily(gauge.name, gauge.help, labels=list(gauge.labels))
            for labels, value in gauge.samples:
                family.add_metric(list(labels), value)
            yield family


def create_admin_app(home: Callable[[], Home], *, max_beat_age: float = 30.0, runners: int = 1) -> Starlette:
    lock = threading.Lock()  # one readiness probe at a time (each signs three probes)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "alive"}, headers={"Cache-Control": "no-store"})

    def _ready() -> tuple[int, dict[str, Any]]:
        from smki.observability.metrics import runner_heartbeats
        from smki.services.health import readiness

        with lock:
            report = readiness(home, runner_heartbeats(), max_beat_age=max_beat_age, runners=runners)
        return (200 if report.ready else 503), report.as_json()

    async def readyz(_request: Request) -> Response:
        import anyio.to_thread

        status, body = await anyio.to_thread.run_sync(_ready)
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    def _metrics() -> bytes:
        from prometheus_client import generate_latest

        from smki.observability.metrics import registry

        source = registry()
        body: bytes = generate_latest(source) + generate_latest(_Single(_DatabaseCollector(home)))
        return body

    async def metrics(_request: Request) -> Response:
        import anyio.to_thread
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(await anyio.to_thread.run_sync(_metrics), media_type=CONTENT_TYPE_LATEST)

    from smki.observability.access import AccessLogMiddleware

    app = Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)])
    # Every request leaves an access line, probes and scrapes included (listener "admin"): an operator
    # reading the log sees who polled readiness, and when it said 503.
    app.add_middleware(AccessLogMiddleware, listener="admin")
    return app


class _Single:
    """A registry-shaped wrapper so ``generate_latest`` renders one collector."""

    def __init__(self, collector: _DatabaseCollector) -> None:
        self.collector = collector

    def collect(self) -> Iterator[Any]:
        return self.collector.collect()
