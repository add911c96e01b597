"""Trailing slashes: a relative redirect for a safe request, none for a request that carries a body.

Starlette answers a path that no route matches, but would match with or without a trailing slash,
with a 307 redirect to the other spelling. For a browser's GET that is a kindness (``/portal/staff/``
finds its page). For a POST, PUT, PATCH or DELETE it is not: a client that does not follow
redirects (curl without ``-L``, most SMKI systems' HTTP code) gets a 307 with an empty body and
nothing said, and one that follows sends its body, its certificate and its request again to another
URL. So such a request is refused, 404, in the listener's own shape (JSON, or the Portal's page),
naming the path it should have used. The DCC XML services refuse theirs in their own XML before
this route is reached (:class:`smki.interfaces.dcc.routes.DccFallbackRoute`).

A safe request (``GET /portal/staff/``) is redirected by :class:`SlashRedirectRoute`, not by
Starlette: Starlette's redirect was an absolute URL made from the request's ``Host`` header (a
cache in front could keep a redirect to another host) and carried none of the Portal's security
headers (found by an exploratory run). Its ``Location`` is the path itself, without the slash.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from smki.interfaces.portal.web import SECURITY_HEADERS

#: Methods a redirect may answer: they carry no body and change nothing.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NoBodyRedirectRoute(BaseRoute):
    """Registered after every other route: matches only what no route did (so a real path, or a
    wrong method on one, never reaches it) — a request with a body whose path ends in ``/``."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            path = scope["path"]
            # Starlette's redirect probe asks every route about the *other* spelling of a path no
            # route matched, in a copy of the scope whose ``raw_path`` is still the request's own:
            # ``POST /api/v1/nothing`` must stay a plain 404, not become a 307 to ``…/nothing/``.
            raw = scope.get("raw_path")
            if path != "/" and path.endswith("/") and (raw is None or raw.endswith(b"/")):
                return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        meant = scope["path"].rstrip("/") or "/"
        raise HTTPException(404, f"no such path: {scope['method']} {meant} has no trailing slash (not followed: "
                                 "a request with a body is never redirected)")


class SlashRedirectRoute(BaseRoute):
    """Registered last, with Starlette's own redirect turned off (``redirect_slashes``): a safe
    request whose path no route matched and ends in ``/`` is redirected (307) to the same path
    without it, by a relative ``Location`` and with the security headers. A path whose redirect
    would read as another host (``//host/``) or that holds a backslash is not redirected (404)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["method"] in SAFE_METHODS:
            raw = scope.get("raw_path") or scope["path"].encode()
            if raw != b"/" and raw.endswith(b"/"):
                return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = (scope.get("raw_path") or scope["path"].encode()).rstrip(b"/")
        if not raw.startswith(b"/") or raw.startswith(b"//") or b"\\" in raw:
            raise HTTPException(404, "no such path")
        query = scope.get("query_string", b"")
        target = (raw + (b"?" + query if query else b"")).decode("latin-1")
        await RedirectResponse(target, status_code=307, headers=SECURITY_HEADERS)(scope, receive, send)
