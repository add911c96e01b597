"""A client that drops its connection halfway through uploading a body is the client's fault: the
XML services (which read their bodies themselves) logged it as an unhandled error with a traceback
and counted a 500, firing the "smki answers 5xx" alert (found by exploratory QA). Now it is a 400
``request.incomplete`` in the access log and the metrics, and no error line."""

from __future__ import annotations

import logging
import socket
import time
from urllib.parse import urlsplit

import pytest

from smki.domain import Route
from tests.api.conftest import ClientFiles, LiveListeners

PATHS = ["/1.0/PortalCSRBatch/SubmitCSRBatch", "/1.0/DeviceCSR", "/services/certificatesearch",
         "/api/v1/device-batches"]


def _drop_halfway(live: LiveListeners, who: ClientFiles, path: str) -> None:
    url = urlsplit(live.url(Route.GATEWAY))
    raw = socket.create_connection((url.hostname, url.port))
    with who.context().wrap_socket(raw, server_hostname=url.hostname) as tls:
        tls.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
                    f"Content-Length: 20000\r\n\r\n".encode() + b"<SubmitCSRBatch" + b" " * 9000)
        time.sleep(0.3)


@pytest.mark.parametrize("path", PATHS)
def test_a_dropped_upload_is_a_400_not_a_logged_500(live: LiveListeners, aro: ClientFiles, path: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        _drop_halfway(live, aro, path)
        deadline = time.monotonic() + 10
        while not (access := [r for r in caplog.records if r.name == "smki.access" and r.path == path]):  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "no access line for the dropped request"
            time.sleep(0.05)
    assert [r.status for r in access] == [400]  # type: ignore[attr-defined]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    # The listener goes on answering.
    assert live.client(aro).get("/api/v1/whoami").status_code == 200
