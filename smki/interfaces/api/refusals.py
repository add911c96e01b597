"""A refusal made before a route's own handler runs, in the shape the path's client reads.

The listener middleware refuses some requests before any route runs (no or a refused credential,
a body over the limit or stalled, an unreadable ``Content-Length``), and the app answers a body
refused while a handler read it (and, on the DCC paths, a wrong method). Those refusals used to
be JSON on every path; a DCC client and a browser cannot read JSON:

* **DCC Device CSR services** (``/1.0/...``, spec §3.2): the Ad Hoc service answers HTTP 200 even
  for errors, with a ``DeviceCertificateSigningResponse``; the batch services the same way with
  their own message (``SubmitCSRBatchStatus``, ``CSRBatchResult``). A body over the limit is the
  codec's ``MessageTooLarge`` (``FORMAT_ERROR`` ``FM:AA1``); every other refusal is a
  ``WORKFLOW_ERROR`` with the code ``dcc_error_for`` gives it (``WF:AA9`` for a credential refused
  or a stalled body) and ``<smki code>: <message>`` as its text.
* **DCC Repository** (``/services/...``, spec §3.1): its own refusals are HTTP statuses with an
  empty ``application/xml`` body (401, 402, 403 for the apikey), and so are these.
* **Portal** (``/portal``): the Portal's error page, with the same status.
* Everything else: the JSON error object (:mod:`smki.interfaces.api.errors`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from smki.errors import SmkiError
from smki.interfaces.api.errors import error_body
from smki.interfaces.dcc.routes import dcc_refusal
from smki.interfaces.portal.limits import human_size
from smki.interfaces.portal.web import PortalContext

Scope = MutableMapping[str, Any]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Refusals:
    """Answers refusals for one listener's app; ``portal`` is None when the app has no Portal."""

    def __init__(self, portal: PortalContext | None) -> None:
        self.portal = portal

    async def response(self, request: Request, status: int, code: str, message: str, *,
                       limit: int | None = None) -> Response:
        """The refusal as a response for ``request``'s path; ``limit`` is a size limit (bytes) passed."""
        path = request.url.path
        headers = {"Connection": "close"} if status == 408 else {}  # a stalled client is not kept
        xml = dcc_refusal(path, status, code, message, request.method)
        if xml is not None:
            xml.headers.update(headers)
            return xml
        portal = self.portal
        if portal is not None and self.on_portal(request):
            shown = message
            if limit is not None:
                shown = f"what you sent is over this page's limit of {human_size(limit)}"
            page = await run_in_threadpool(portal.error_page, request, SmkiError(code, shown), status_code=status)
            page.headers.update(headers)
            return page
        return JSONResponse(error_body(code, message), status_code=status,
                            headers={"Cache-Control": "no-store", **headers})

    def on_portal(self, request: Request) -> bool:
        """Whether ``request`` is for one of the Portal's paths (its refusals are the Portal's page)."""
        path = request.url.path
        return self.portal is not None and (path == self.portal.prefix or path.startswith(self.portal.prefix + "/"))

    async def send(self, scope: Scope, send: Send, status: int, code: str, message: str,
                   limit: int | None = None) -> None:
        """The middleware's ``refuse``: answer through ``send`` before the app has run."""
        response = await self.response(Request(scope), status, code, message, limit=limit)
        await response(scope, _no_receive, send)


async def _no_receive() -> MutableMapping[str, Any]:  # a response only sends
    return {"type": "http.disconnect"}
