"""The SMKI Portal as a FastAPI router, mounted at ``/portal`` on each listener's app.

``create_portal_router(home_factory, route)`` builds the pages for one listener: the route
(Gateway or SPOTI) is fixed here, by whoever mounts the router for that listener, and never read
from the request. The caller's identity comes only from ``request.state.identity``, which the HTTP
layer sets from the verified client certificate (see :mod:`smki.interfaces.portal.identity`).
Static assets are served from this package: no page refers to any other host.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from smki.domain import Route
from smki.errors import SmkiError
from smki.interfaces.portal.aro_pages import add_aro_routes
from smki.interfaces.portal.identity import identity_of
from smki.interfaces.portal.staff_pages import add_staff_routes
from smki.interfaces.portal.web import SECURITY_HEADERS, PortalContext
from smki.services.context import Home

STATIC = {"portal.css": "text/css; charset=utf-8", "portal.js": "text/javascript; charset=utf-8"}


def create_portal_router(home_factory: Callable[[], Home], route: Route, *, wake: Callable[[], None] | None = None,
                         prefix: str = "/portal") -> APIRouter:
    """The Portal's pages for a listener on ``route``; include it with ``app.include_router(router)``.

    ``home_factory`` returns the process's opened :class:`Home` (it may return the same object every
    time; the Portal never closes it). ``wake`` tells the process's batch runner that a batch was
    uploaded or approved (uploaded ZIPs are stored batches the runner issues, like JSON and XML ones).
    """
    if route not in (Route.GATEWAY, Route.SPOTI):
        raise SmkiError("portal.bad-route", "the Portal is served on the Gateway or the SPOTI route only")
    ctx = PortalContext(home_factory, route, prefix=prefix, wake=wake or (lambda: None))
    router = APIRouter(prefix=prefix, include_in_schema=False, route_class=_route_class(ctx))

    @router.get("")
    @router.get("/")
    def index(request: Request) -> Response:
        try:
            identity = identity_of(request)
        except SmkiError as exc:
            return ctx.error_page(request, exc)
        return ctx.redirect(request, "/aro" if identity.kind == "aro" else "/staff")

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return Response("not found", status_code=404, headers=SECURITY_HEADERS)
        data = files("smki.interfaces.portal").joinpath("static", name).read_bytes()
        headers = dict(SECURITY_HEADERS)
        headers["Cache-Control"] = "max-age=3600"
        return Response(data, media_type=STATIC[name], headers=headers)

    add_aro_routes(router, ctx)
    add_staff_routes(router, ctx)
    return router


def _route_class(ctx: PortalContext) -> type[APIRoute]:
    """Routes that show any refusal a page did not handle itself as an error page, never a traceback."""

    class PortalRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    return await handler(request)
                except SmkiError as exc:  # the page reads the form-token key: not on the event loop
                    return await run_in_threadpool(ctx.error_page, request, exc)

            return guarded

    return PortalRoute
