"""The access log and request ids: one log line per HTTP request, on every listener.

:class:`AccessLogMiddleware` is the outermost ASGI layer of each listener's app. It gives every
request an id (returned as ``X-Request-ID`` and, through :data:`request_id`, put in JSON error
bodies), times it, counts the response bytes, and as the response's last chunk goes out writes one line
to the ``smki.access`` logger::

    {"time": "...", "level": "info", "logger": "smki.access", "message": "GET /api/v1/whoami 200",
     "listener": "gateway", "method": "GET", "path": "/api/v1/whoami", "status": 200,
     "duration_ms": 3.2, "bytes": 187, "subject": "aro:A1@P1", "request_id": "5f0c9d2e8a7b41c3"}

The subject is the authenticated credential's actor (``aro:<ARO>@<Party>``, ``system:…``,
``staff:…``), or ``-`` when the request was refused before it was identified. The same figures
feed the request metrics (:mod:`smki.observability.metrics`).

This runs for every request, so it does only what the line and the metrics need (measured by
``smki bench access-log``, see docs/performance.md): the line is screened for secrets where it is
made, once (a :class:`~smki.observability.logs.ScreenedRecord`, which the handler's redacting
filter passes as it is, rather than every field scanned again), its record goes straight to the
logger's handlers (no caller lookup: the line does not show one), nothing of it is made when the
level is above ``info``, and the metric children are looked up once per listener, route and
status.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

from smki.observability import metrics
from smki.observability.logs import ScreenedRecord, redact, safe_path

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEADER = b"x-request-id"
#: The id of the request being handled (empty outside a request).
request_id: ContextVar[str] = ContextVar("smki_request_id", default="")
log = logging.getLogger("smki.access")


def new_request_id() -> str:
    return os.urandom(8).hex()  # what secrets.token_hex(8) returns, without its two calls' overhead


def _subject(scope: Scope) -> str:
    identity = scope.get("state", {}).get("api_identity")
    actor = getattr(identity, "actor", None)
    return str(actor) if actor else "-"


def _route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/v1/certificates/{serial}``), to keep metric labels few."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, *, listener: str) -> None:
        self.app = app
        self.listener = listener

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = new_request_id()
        token = request_id.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 500
        sent = 0
        recorded = False

        def record() -> None:
            """Count and log the request once. Done just before the response's last chunk goes out, so
            a client that has its answer can already see it in /metrics and the log (and a process
            killed right after answering has counted it); from ``finally`` when no complete response
            was sent."""
            nonlocal recorded
            recorded = True
            seconds = time.perf_counter() - started
            metrics.observe_request(self.listener, _route_template(scope), status, seconds)
            if log.isEnabledFor(logging.INFO):
                self._write(scope, rid, status, seconds, sent)

        async def logging_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (HEADER, rid.encode())]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                if not message.get("more_body", False) and not recorded:
                    record()
            await send(message)

        try:
            await self.app(scope, receive, logging_send)
        finally:
            request_id.reset(token)
            if not recorded:
                record()

    def _write(self, scope: Scope, rid: str, status: int, seconds: float, sent: int) -> None:
        """The access-log line, screened here: the client's method and path (:func:`safe_path`) and
        the credential's subject go through :func:`redact`; the rest is numbers, the listener's
        name and our id."""
        path = safe_path(scope.get("path", ""), scope.get("query_string", b""))
        method = redact(scope.get("method", ""))
        record = ScreenedRecord(log.name, logging.INFO, __file__, 0, f"{method} {path} {status}", None, None)
        vars(record).update(listener=self.listener, method=method, path=path, status=status,
                            duration_ms=round(seconds * 1000, 2), bytes=sent, subject=redact(_subject(scope)),
                            request_id=rid)
        log.handle(record)


def log_unparsed(listener: str, rid: str, status: int, sent: int) -> None:
    """The access line of a request too malformed to parse (the HTTP server answered it 400 itself,
    before any app saw it): counted and logged like every other, method and path ``-``."""
    metrics.observe_request(listener, "unparsed", status, 0.0)
    if log.isEnabledFor(logging.INFO):
        record = ScreenedRecord(log.name, logging.INFO, __file__, 0, f"- - {status}", None, None)
        vars(record).update(listener=listener, method="-", path="-", status=status, duration_ms=0.0, bytes=sent,
                            subject="-", request_id=rid)
        log.handle(record)
