"""Interactive API documentation (Swagger UI) at ``/api/v1/docs`` on each listener, served locally.

The assets (Swagger UI 5, which renders the OpenAPI 3.1 document FastAPI writes) come from the
``openapi-ui-bundles`` package (pinned), never from another host, and the
page keeps the Portal's Content-Security-Policy (scripts and styles from 'self' only): the
configuration is a script file of ours rather than an inline script, the validator badge
(which would call an outside service) is switched off, and the layout is the base one: the
standalone layout's top bar (a box to load any URL, and a logo drawn with an inline ``<style>``
the CSP refuses) is left out. Like every route it needs a credential.

One relaxation, on the docs page only: Swagger UI's stylesheet draws its icons (the expand arrows,
the lock, the copy button) as ``data:`` SVG images, so the page's ``img-src`` also allows ``data:``
(:data:`DOCS_CSP`). A ``data:`` image is inline bytes, never a request to any host; scripts and
styles stay 'self' only, and every other page keeps the Portal's policy.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from smki.interfaces.api.json_api import PREFIX
from smki.interfaces.portal.web import CSP, SECURITY_HEADERS

DOCS = f"{PREFIX}/docs"
DOCS_CSP = CSP.replace("img-src 'self';", "img-src 'self' data:;")
DOCS_HEADERS = {**SECURITY_HEADERS, "Content-Security-Policy": DOCS_CSP}
#: The bundle's files the page uses, and their media types.
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>smki API</title>
<link rel="stylesheet" href="{DOCS}/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="{DOCS}/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{DOCS}/assets/swagger-ui-bundle.js"></script>
<script src="{DOCS}/init.js"></script>
</body>
</html>
"""
INIT = f"""window.onload = function () {{
  window.ui = SwaggerUIBundle({{
    url: "{PREFIX}/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  }});
}};
"""


@cache
def _asset(name: str) -> bytes:
    from openapi_ui_bundles.swagger_ui import static_path

    return (Path(static_path) / name).read_bytes()


def create_docs_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    static = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=86400"}

    @router.get(DOCS)
    def page() -> Response:
        return Response(PAGE, media_type="text/html; charset=utf-8", headers=DOCS_HEADERS)

    @router.get(f"{DOCS}/init.js")
    def init() -> Response:
        return Response(INIT, media_type="text/javascript; charset=utf-8", headers=static)

    @router.get(DOCS + "/assets/{name}")
    def asset(name: str) -> Response:
        media = ASSETS.get(name)
        if media is None:
            return Response(status_code=404, headers=SECURITY_HEADERS)
        return Response(_asset(name), media_type=media, headers=static)

    return router
