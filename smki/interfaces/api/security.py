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
"""

from __future__ import annotations

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


class BodyTooLarge(Exception):
    pass


def portal_identity(identity: ApiIdentity) -> PortalIdentity | None:
    if identity.kind == "staff":
        return PortalIdentity("staff", staff_id=identity.name)
    if identity.kind == "aro":
        return PortalIdentity("aro", party_id=identity.party_id, aro_id=identity.aro_id)
    return None  # an Authorised System uses the web services, not the Portal's pages


class ListenerMiddleware:
    def __init__(self, app: ASGIApp, *, home_factory: Callable[[], Home], max_body: int, max_batch_body: int) -> None:
        self.app = app
        self.home_factory = home_factory
        self.max_body = max_body
        self.max_batch_body = max_batch_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = scope.get("extensions", {}).get(TLS_EXTENSION) or {}
        der = tls.get("client_cert_der")
        if not der:
            await send_error(send, 401, "credential.missing", "a client certificate (SMKI credential) is required")
            return
        try:
            identity = await anyio.to_thread.run_sync(resolve_identity, self.home_factory(), der)
        except SmkiError as exc:
            await send_error(send, status_for(exc), exc.code, exc.message)
            return
        except Exception as exc:  # the register could not be read: refuse rather than guess
            away = database_away(exc)
            if away is None:
                log.exception("identity check failed")
            else:  # a line per request while the database is away, not a traceback each
                log.warning("identity check failed: the database is unavailable (%s)", away)
            await send_error(send, 503, "store.unavailable", "the credential could not be checked; try again")
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
                    await send_error(send, 400, "request.bad-length", "Content-Length is not a number")
                    return
                if declared > limit:
                    await _too_large(send, limit)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        tracked = TrackedSend(send)
        try:
            await self.app(scope, limited_receive, tracked)
        except BodyTooLarge:
            if not tracked.started:
                await _too_large(send, limit)


async def _too_large(send: Send, limit: int) -> None:
    await send_error(send, 413, "request.too-large", f"the request body is over the limit of {limit} bytes")

