"""The listener's front door, before any route runs: who is calling, and how much they may send.

A pure ASGI middleware, so it also guards the Portal and the XML services:

* **Identity.** The client certificate comes from the TLS extension that
  :class:`~smki.interfaces.api.tls.PeerCertH11Protocol` puts in the scope; nothing in the request
  (headers, query, body) is consulted. :func:`smki.services.credentials.resolve_identity` checks it
  against smki's records on every request, so a revoked credential or a suspended ARO is refused at
  once (401/403 with the ``credential.*`` code). The identity is then placed in the request state
  as ``api_identity`` (for the API) and ``identity`` (a ``PortalIdentity``, for the Portal).
* **Body size.** ``Content-Length`` over the limit is refused before reading; a chunked body is
  counted as it streams and refused the moment it passes the limit (413 ``request.too-large``).
  Batch submissions get the larger batch limit.
* **Body time.** A client that sends its headers and then stops sending the body (a stalled or
  malicious upload) would hold its request, and a stopping server, for ever: a body that makes no
  progress for ``body_timeout`` seconds is refused (408 ``request.timeout``, ``Connection: close``,
  a warning line), and once the server is stopping (``draining()``) ``DRAIN_BODY_GRACE`` is enough.

A refusal made here goes out in the shape the path's client reads (``refuse``: JSON, the DCC
services' XML, the Portal's HTML page; :mod:`smki.interfaces.api.refusals`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread

from smki.errors import SmkiError
from smki.interfaces.api.errors import TrackedSend, send_error, status_for
from smki.interfaces.api.tls import TLS_EXTENSION
from smki.interfaces.portal.identity import PortalIdentity
from smki.interfaces.portal.limits import MAX_EVIDENCE_UPLOAD
from smki.observability.access import request_id
from smki.services.context import Home
from smki.services.credentials import ApiIdentity, resolve_identity
from smki.store.faults import database_away

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("smki.api")

#: Paths that take a whole batch of CSRs, and so the larger body limit.
BATCH_PATHS = ("/1.0/PortalCSRBatch/SubmitCSRBatch", "/api/v1/device-batches", "/portal/aro/batches")
#: The Portal's evidence upload, which takes a document of up to MAX_EVIDENCE_UPLOAD (10 MB): the
#: general limit (256 KiB) refused most PDFs with a JSON 413 before the page could say anything.
EVIDENCE_PATH = re.compile(r"/portal/aro/applications/[^/]+/evidence")
EVIDENCE_BODY = MAX_EVIDENCE_UPLOAD + 64 * 1024  # the document, the description and the multipart framing


#: Once the server is stopping, how long a request body may go without progress before it is
#: refused: a SIGTERM drain waits this long (not ``body_timeout``) for a stalled upload.
DRAIN_BODY_GRACE = 2.0
#: How often a request waiting for its body looks whether the server has begun stopping.
_DRAIN_POLL = 0.5

#: ``refuse(scope, send, status, code, message, limit)``: answers a refusal in the path's shape
#: (``limit``: the size limit in bytes a body went over, else None).
Refuse = Callable[[Scope, Send, int, str, str, int | None], Awaitable[None]]


class BodyRefused(Exception):
    """Reading the request body was stopped: raised from ``receive``, answered by the app's handler."""

    status = 400
    code = "request.invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BodyTooLarge(BodyRefused):
    status = 413
    code = "request.too-large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over the limit of {limit} bytes")
        self.limit = limit


class BodyTimeout(BodyRefused):
    status = 408
    code = "request.timeout"


async def _json_refusal(_scope: Scope, send: Send, status: int, code: str, message: str, _limit: int | None) -> None:
    await send_error(send, status, code, message)


def portal_identity(identity: ApiIdentity) -> PortalIdentity | None:
    if identity.kind == "staff":
        return PortalIdentity("staff", staff_id=identity.name)
    if identity.kind == "aro":
        return PortalIdentity("aro", party_id=identity.party_id, aro_id=identity.aro_id)
    return None  # an Authorised System uses the web services, not the Portal's pages


#: The most a request head (request line and headers) may hold: h11's limit for a head that arrives
#: in pieces, applied here to one that arrives whole, which h11 took whatever its size.
MAX_REQUEST_HEAD = 16 * 1024


def framing_problem(scope: Scope) -> str | None:
    """Why a request's head cannot be taken as it stands, or None.

    * Both ``Content-Length`` and ``Transfer-Encoding``: the two disagree on where the body ends,
      and a proxy in front that reads the other one sees another request in what follows (request
      smuggling). RFC 9112 §6.3 lets a server refuse it, and then the connection must close.
    * A head over ``MAX_REQUEST_HEAD``.
    """
    size = len(scope.get("method", "")) + len(scope.get("raw_path") or b"") + len(scope.get("query_string", b""))
    lengths = encodings = 0
    for name, value in scope.get("headers", ()):
        size += len(name) + len(value) + 4
        if name == b"content-length":
            lengths += 1
        elif name == b"transfer-encoding":
            encodings += 1
    if lengths and encodings:
        return "a request with both Content-Length and Transfer-Encoding has no one length (RFC 9112 §6.3)"
    if size > MAX_REQUEST_HEAD:
        return f"the request head is over {MAX_REQUEST_HEAD // 1024} KiB"
    return None


def _closing(send: Send) -> Send:
    """``send`` with ``Connection: close`` on the response: nothing after it on the connection is read."""
    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)
    return closing


class ListenerMiddleware:
    def __init__(self, app: ASGIApp, *, home_factory: Callable[[], Home], max_body: int, max_batch_body: int,
                 body_timeout: float = 30.0, draining: Callable[[], bool] = lambda: False,
                 refuse: Refuse = _json_refusal) -> None:
        self.app = app
        self.home_factory = home_factory
        self.max_body = max_body
        self.max_batch_body = max_batch_body
        self.body_timeout = body_timeout
        self.draining = draining
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = framing_problem(scope)
        if problem is not None:  # answered in the listener's shape, and the connection closed after it
            await self.refuse(scope, _closing(send), 400, "request.malformed", problem, None)
            return
        tls = scope.get("extensions", {}).get(TLS_EXTENSION) or {}
        der = tls.get("client_cert_der")
        if not der:
            await self.refuse(scope, send, 401, "credential.missing",
                              "a client certificate (SMKI credential) is required", None)
            return
        try:
            identity = await anyio.to_thread.run_sync(resolve_identity, self.home_factory(), der)
        except SmkiError as exc:
            await self.refuse(scope, send, status_for(exc), exc.code, exc.message, None)
            return
        except Exception as exc:  # the register could not be read: refuse rather than guess
            away = database_away(exc)
            if away is None:
                log.exception("identity check failed")
            else:  # a line per request while the database is away, not a traceback each
                log.warning("identity check failed: the database is unavailable (%s)", away)
            await self.refuse(scope, send, 503, "store.unavailable", "the credential could not be checked; try again",
                              None)
            return
        state = scope.setdefault("state", {})
        state["api_identity"] = identity
        portal = portal_identity(identity)
        if portal is not None:
            state["identity"] = portal

        path = scope.get("path", "")
        limit = self.max_batch_body if path.startswith(BATCH_PATHS) else self.max_body
        if EVIDENCE_PATH.fullmatch(path):
            limit = max(limit, EVIDENCE_BODY)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self.refuse(scope, send, 400, "request.bad-length", "Content-Length is not a number", None)
                    return
                if declared > limit:
                    await self.refuse_body(scope, send, BodyTooLarge(limit))
                    return
        received = 0
        body_done = False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body only ``http.disconnect`` is left to wait for: no time limit
                return await receive()
            message = await self._next_body_message(scope, receive, received)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        tracked = TrackedSend(send)
        try:
            await self.app(scope, limited_receive, tracked)
        except BodyRefused as exc:  # only when the app did not answer it itself
            if not tracked.started:
                await self.refuse_body(scope, send, exc)

    async def refuse_body(self, scope: Scope, send: Send, exc: BodyRefused) -> None:
        await self.refuse(scope, send, exc.status, exc.code, exc.message, getattr(exc, "limit", None))

    async def _next_body_message(self, scope: Scope, receive: Receive, received: int) -> Message:
        """The next piece of the body, or :class:`BodyTimeout` once none came for ``body_timeout``
        seconds (``DRAIN_BODY_GRACE`` once the server is stopping). Cancelling uvicorn's
        ``receive`` while it waits loses nothing: what arrives meanwhile is kept for the next call."""
        loop = asyncio.get_running_loop()
        since = loop.time()
        while True:
            allowed = min(self.body_timeout, DRAIN_BODY_GRACE) if self.draining() else self.body_timeout
            left = since + allowed - loop.time()
            if left <= 0:
                log.warning("request body stalled: no data for %.1f s after %d bytes of %s %s; refused with 408",
                            loop.time() - since, received, scope.get("method", ""), scope.get("path", ""),
                            extra={"request_id": request_id.get()})
                raise BodyTimeout(f"the request body made no progress for {allowed:g} s")
            try:
                async with asyncio.timeout(min(left, _DRAIN_POLL)):
                    return await receive()
            except TimeoutError:
                continue

