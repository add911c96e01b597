"""One FastAPI app per listener: JSON API, DCC XML services, the Portal, behind the listener middleware.

``create_app(ctx)`` builds the app for one listener; ``ctx.route`` (Gateway or SPOTI) is fixed here
and stored as ``app.state.route``. Every route is registered on both listeners: what a route may do
on SPOTI is the RA rules' decision (a Device CSR on SPOTI is refused by
``channel.device-via-gateway``, a read of Device Certificates or device batch results by
``channel.spoti-organisation-access``, both audited), not the absence of a URL.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from smki import __version__
from smki.errors import SmkiError
from smki.interfaces.api.context import ListenerContext
from smki.interfaces.api.devices_api import create_devices_router
from smki.interfaces.api.docs import create_docs_router
from smki.interfaces.api.errors import TrackedSend, count_refusal, error_body, error_response, send_error, status_for
from smki.interfaces.api.head import HeadAsGetMiddleware
from smki.interfaces.api.json_api import PREFIX, create_json_router
from smki.interfaces.api.refusals import Refusals
from smki.interfaces.api.security import BodyRefused, ListenerMiddleware
from smki.interfaces.api.slashes import NoBodyRedirectRoute, SlashRedirectRoute
from smki.interfaces.dcc.routes import (
    DccFallbackRoute,
    create_device_router,
    create_repository_router,
    dcc_refusal,
)
from smki.interfaces.portal.web import PortalContext
from smki.observability.access import AccessLogMiddleware, request_id
from smki.observability.metrics import install as install_metrics
from smki.store.faults import UNAVAILABLE, database_away

log = logging.getLogger("smki.api")
OPENAPI_URL = f"{PREFIX}/openapi.json"
DESCRIPTION = (
    "smki's HTTP interfaces (spec §3). Every request is authenticated by mutual TLS with an SMKI "
    "credential; the route (Gateway or SPOTI) is the listener's. JSON errors are "
    '`{"error": {"code", "message", "rules": [{"id", "reference", "reason"}]}}`.'
)


INTERNAL_MESSAGE = "smki could not complete the request; it has been logged"
INCOMPLETE_MESSAGE = "the client closed the connection before the request body was complete"
#: The answer (503 ``store.unavailable``) when the database went away under a request.
DATABASE_AWAY = "the database is unavailable; try again"


class InternalErrorMiddleware:
    """A fault of smki's own, answered *inside* the access log's middleware.

    Starlette answers an unhandled exception in its outermost layer, outside every middleware added
    here: that 500 had no ``X-Request-ID``, an empty ``error.request_id``, an access-log line of 0
    bytes and an error log line with no request id, and uvicorn printed the traceback again as plain
    text. Here the request id is still set: the error is logged once with it, and the 500 goes out
    through the access log's ``send`` (``Connection: close``, so a kept-alive client opens a new
    connection). A fault after the response has started cannot be answered; it goes on up as before.
    The database going away under a request is no fault of smki's and passes when it is back: a
    503 ``store.unavailable`` and one warning line, as when the credential check cannot read it.
    """

    def __init__(self, app: Any, refusals: Refusals | None = None) -> None:
        self.app = app
        self.refusals = refusals

    async def _answer(self, scope: Any, send: Any, status: int, code: str, message: str) -> None:
        """The error in the path's shape: on the Portal its error page (a browser cannot read JSON;
        it keeps the Portal's security headers), elsewhere the JSON error object. The DCC paths
        keep the JSON 5xx: their XML answers a fault as HTTP 200, which would hide it from alerting.
        If the Portal's page itself cannot be made, the JSON object still goes out."""
        close = [(b"connection", b"close")] if status == 500 else []
        if self.refusals is not None:
            request = Request(scope)
            if self.refusals.on_portal(request):
                try:  # a person reads this page: the request id lets the operator find the log line
                    page = await self.refusals.response(request, status, code,
                                                        f"{message} (request id {request_id.get() or '-'})")
                except Exception:
                    log.warning("the Portal's error page could not be made for a %d", status, exc_info=True,
                                extra={"request_id": request_id.get()})
                else:
                    if close:
                        page.headers["Connection"] = "close"
                    await page(scope, _nothing_to_receive, send)
                    return
        await send_error(send, status, code, message, close)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except ClientDisconnect:
            # The client went away before its body was complete (a dropped upload): its fault, not
            # smki's, so no traceback and no 5xx for the alerts; nobody reads this answer, but the
            # access line and the metrics record a 400, as the JSON routes' body reading does.
            if tracked.started:
                raise
            await send_error(send, 400, "request.incomplete", INCOMPLETE_MESSAGE)
        except Exception as exc:
            if tracked.started:
                raise
            away = database_away(exc)
            if away is not None:
                log.warning("%s %s: the database is unavailable (%s)", scope.get("method", ""), scope.get("path", ""),
                            away, extra={"request_id": request_id.get()})
                await self._answer(scope, send, 503, UNAVAILABLE, DATABASE_AWAY)
                return
            log.error("unhandled error in %s %s", scope.get("method", ""), scope.get("path", ""), exc_info=exc,
                      extra={"request_id": request_id.get()})
            await self._answer(scope, send, 500, "internal.error", INTERNAL_MESSAGE)


async def _nothing_to_receive() -> dict[str, Any]:  # an error page only sends
    return {"type": "http.disconnect"}


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "the request is not valid"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}"[:300] + more


def _reason(cause: BaseException) -> str:
    """Why a body could not be read, in one short line (no client bytes beyond what Python quotes)."""
    return (str(cause).splitlines() or [type(cause).__name__])[0][:200]


_PORTAL_HTTP_MESSAGES = {404: "there is no such Portal page", 405: "this Portal page does not take that method"}


def create_app(ctx: ListenerContext, *, with_portal: bool = True) -> FastAPI:
    app = FastAPI(
        title="smki",
        version=__version__,
        description=DESCRIPTION,
        openapi_url=OPENAPI_URL,
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.route = ctx.route
    portal = PortalContext(ctx.home_factory, ctx.route, wake=ctx.wake_runner) if with_portal else None
    refusals = Refusals(portal)

    async def body_refused(request: Request, exc: BodyRefused) -> Response:
        return await refusals.response(request, exc.status, exc.code, exc.message, limit=getattr(exc, "limit", None))

    @app.exception_handler(SmkiError)
    async def smki_error(request: Request, exc: SmkiError) -> Response:
        count_refusal(exc)
        status = status_for(exc)
        if status < 500:  # a client's error on a DCC XML service (RA staff credentials on the Device
            # CSR services) is that service's XML; smki's own faults stay JSON 5xx, seen by alerting
            xml = dcc_refusal(request.url.path, status, exc.code, exc.message, request.method)
            if xml is not None:
                return xml
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status = 400 if any(e.get("type") == "json_invalid" for e in exc.errors()) else 422
        code = "request.bad-json" if status == 400 else "request.invalid"
        message = _validation_message(exc)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method in ("POST", "PUT", "PATCH") and kind and kind != "application/json" \
                and not kind.endswith("+json"):  # FastAPI reads such a body as no JSON at all
            message = f"the body must be JSON, sent as Content-Type: application/json (not {kind[:60]}); {message}"
        return JSONResponse(error_body(code, message[:400]), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        cause = exc.__cause__
        if isinstance(cause, BodyRefused):  # FastAPI wraps errors reading the body as a 400
            return await body_refused(request, cause)
        if isinstance(cause, ClientDisconnect):
            return JSONResponse(error_body("request.incomplete", INCOMPLETE_MESSAGE), status_code=400)
        if exc.status_code == 400 and cause is not None:
            # FastAPI could not parse the body (JSON that is not UTF-8, say): malformed JSON, as documented
            return JSONResponse(error_body("request.bad-json", f"the body is not valid JSON: {_reason(cause)}"),
                                status_code=400)
        codes = {404: "http.not-found", 405: "http.method-not-allowed"}
        code = codes.get(exc.status_code, "http.error")
        if refusals.on_portal(request):  # a browser's mistyped or forged Portal URL: the Portal's page, headers
            page = await refusals.response(request, exc.status_code, code,
                                           _PORTAL_HTTP_MESSAGES.get(exc.status_code, str(exc.detail)))
            page.headers.update(getattr(exc, "headers", None) or {})  # 405's Allow
            return page
        # A DCC XML service's client reads its own XML, never the JSON error object: a wrong method
        # (GET /services/certificatesearch) is answered as the listener's refusals are there.
        xml = dcc_refusal(request.url.path, exc.status_code, code, str(exc.detail), request.method)
        if xml is not None:
            xml.headers.update(getattr(exc, "headers", None) or {})  # Allow, for a 405
            return xml
        return JSONResponse(error_body(code, str(exc.detail)),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    app.add_exception_handler(BodyRefused, body_refused)  # type: ignore[arg-type]

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc,
                  extra={"request_id": request_id.get()})
        # Starlette re-raises after this answer and uvicorn then closes the connection: say so, so a
        # keep-alive client knows not to send its next request down it (issue 11).
        return JSONResponse(error_body("internal.error", INTERNAL_MESSAGE),
                            status_code=500, headers={"Connection": "close"})

    app.include_router(create_json_router())
    app.include_router(create_docs_router())
    app.include_router(create_devices_router())
    app.include_router(create_device_router())
    app.include_router(create_repository_router())
    if with_portal:
        from smki.interfaces.portal.app import create_portal_router

        app.include_router(create_portal_router(ctx.home_factory, ctx.route, wake=ctx.wake_runner))
    app.router.routes.append(DccFallbackRoute())  # last: only what no route above matched
    app.router.routes.append(NoBodyRedirectRoute())  # and then: no 307 for a request with a body
    app.router.routes.append(SlashRedirectRoute())  # a relative 307 for a safe one, not Starlette's
    app.router.redirect_slashes = False
    app.add_middleware(HeadAsGetMiddleware)  # innermost: the routes see a GET, everything outside the HEAD
    app.add_middleware(ListenerMiddleware, home_factory=ctx.home_factory, max_body=ctx.api.max_body,
                       max_batch_body=ctx.api.max_batch_body, body_timeout=ctx.api.body_timeout,
                       draining=lambda: ctx.stopping, refuse=refusals.send)
    app.add_middleware(InternalErrorMiddleware, refusals=refusals)  # inside the access log: a 500 has the request id
    app.add_middleware(AccessLogMiddleware, listener=ctx.route.value)  # outermost: sees every request
    install_metrics()
    return app


def openapi_document(ctx: ListenerContext) -> dict[str, Any]:
    """The OpenAPI document as served (checked in as ``docs/openapi.json``)."""
    return create_app(ctx, with_portal=False).openapi()
