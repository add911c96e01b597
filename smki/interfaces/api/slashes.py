"""No redirect of a request that carries a body.

Starlette answers a path that no route matches, but would match with or without a trailing slash,
with a 307 redirect to the other spelling. For a browser's GET that is a kindness (``/portal/staff/``
finds its page). For a POST, PUT, PATCH or DELETE it is not: a client that does not follow
redirects (curl without ``-L``, most SMKI systems' HTTP code) gets a 307 with an empty body and
nothing said, and one that follows sends its body, its certificate and its request again to another
URL. So such a request is refused, 404, in the listener's own shape (JSON, or the Portal's page),
naming the path it should have used. The DCC XML services refuse theirs in their own XML before
this route is reached (:class:`smki.interfaces.dcc.routes.DccFallbackRoute`).
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

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
