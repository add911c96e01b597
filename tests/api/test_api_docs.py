"""Interactive API docs (issue 12, point 6): Swagger UI at /api/v1/docs on both listeners, all local."""

from __future__ import annotations

import re
from pathlib import Path

from openapi_ui_bundles.swagger_ui import static_path

from smki.domain import Route
from smki.interfaces.api.docs import DOCS_CSP
from smki.interfaces.portal.web import CSP
from tests.api.conftest import ClientFiles, LiveListeners


def test_swagger_ui_is_served_locally_within_the_csp(live: LiveListeners, aro: ClientFiles) -> None:
    bundle = Path(static_path)
    for route in (Route.GATEWAY, Route.SPOTI):
        client = live.client(aro, route)
        page = client.get("/api/v1/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == DOCS_CSP  # CSP, with data: images (the icons)
        assert DOCS_CSP == CSP.replace("img-src 'self';", "img-src 'self' data:;") != CSP
        assert client.get("/api/v1/docs/init.js").headers["content-security-policy"] == CSP
        assert "<script>" not in page.text and "style=" not in page.text  # nothing inline for the CSP to refuse
        links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert links and all(link.startswith("/api/v1/docs/") for link in links), links  # never another host
        for link in links:
            served = client.get(link)
            assert served.status_code == 200, link
            name = link.rsplit("/", 1)[1]
            if link.startswith("/api/v1/docs/assets/"):
                assert served.content == (bundle / name).read_bytes()
        init = client.get("/api/v1/docs/init.js").text
        assert 'url: "/api/v1/openapi.json"' in init and "validatorUrl: null" in init
        assert client.get("/api/v1/docs/assets/index.j2").status_code == 404  # only the listed files
        assert client.get("/api/v1/docs/assets/..%2F..%2F__init__.py").status_code == 404
    # Without a client certificate the TLS handshake itself is refused, as for every route.
