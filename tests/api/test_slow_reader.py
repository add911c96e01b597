"""A client that asked for a large response and then stopped reading held its connection, its
request and the buffered response for ever (a streamed response's app waited in ``send``). Now a
response that makes no write progress for ``[api] send-timeout`` seconds drops the connection,
with one log line; a client that keeps reading, however slowly, is not cut off."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import urlsplit

import pytest

from smki.domain import Route
from smki.interfaces.api.docs import DOCS
from smki.interfaces.api.settings import ApiSettings
from smki.services.context import Home
from tests.api.conftest import ClientFiles, LiveListeners, start_listeners

ASSET = f"{DOCS}/assets/swagger-ui-bundle.js"  # about 1.4 MB, answered in one piece
SEND_TIMEOUT = 0.5


@pytest.fixture
def live(home: Home, api_settings: ApiSettings) -> Iterator[LiveListeners]:
    server = start_listeners(home, replace(api_settings, send_timeout=SEND_TIMEOUT), runner=False)
    # Connections inherit the listening socket's send buffer: a small one (not the kernel's, which
    # grows to megabytes on loopback) so that the response waits in smki's buffer, as it does for a
    # distant client once the network's buffers are full.
    server.listeners.sockets[Route.GATEWAY].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    try:
        yield server
    finally:
        server.stop()


def _request(live: LiveListeners, aro: ClientFiles) -> ssl.SSLSocket:
    """The request for the large asset, on a socket with a small receive buffer (so the server's
    buffers, not the client's, fill up when the client stops reading)."""
    url = urlsplit(live.url(Route.GATEWAY))
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(10)
    raw.connect((url.hostname, url.port))
    tls = aro.context().wrap_socket(raw, server_hostname=url.hostname)
    tls.sendall(f"GET {ASSET} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return tls


def _read_all(tls: ssl.SSLSocket, pause: float = 0.0) -> bytes:
    """Everything until the connection ends (an EOF or a reset), ``pause`` seconds between reads."""
    data = b""
    while True:
        try:
            chunk = tls.recv(65536)
        except (ConnectionError, ssl.SSLError):
            return data
        if not chunk:
            return data
        data += chunk
        if b"\r\n\r\n" in data:
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            if len(body) >= length:
                return data
        time.sleep(pause)


def test_a_client_that_stops_reading_is_dropped_and_logged_once(live: LiveListeners, aro: ClientFiles,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    from tests.api.test_stalled_body import _dropped

    before = _dropped("gateway", "send-stalled")
    with caplog.at_level(logging.WARNING, logger="smki.api"), _request(live, aro) as tls:
        time.sleep(SEND_TIMEOUT + 1.5)  # reading nothing
        started = time.monotonic()
        received = _read_all(tls)
        assert time.monotonic() - started < 5
    assert received.startswith(b"HTTP/1.1 200")
    assert len(received) < 1_000_000, "the whole response was still waiting for the client"
    lines = [r.getMessage() for r in caplog.records if "response send stalled" in r.getMessage()]
    assert len(lines) == 1, lines
    assert _dropped("gateway", "send-stalled") - before == 1
    assert lines[0].startswith("response send stalled from 127.0.0.1:")
    assert lines[0].endswith(f" on gateway: the client read nothing of the response for {SEND_TIMEOUT:g} s; "
                             f"connection dropped (GET {ASSET})")
    assert live.client(aro).get("/api/v1/whoami").status_code == 200


def test_a_slow_reader_that_keeps_reading_gets_the_whole_response(live: LiveListeners, aro: ClientFiles,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="smki.api"), _request(live, aro) as tls:
        received = _read_all(tls, pause=0.002)
    assert received.startswith(b"HTTP/1.1 200") and len(received) > 1_000_000
    assert not [r for r in caplog.records if "response send stalled" in r.getMessage()]
