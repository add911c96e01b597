"""Request heads whose framing cannot be trusted (found by an exploratory run): both
``Content-Length`` and ``Transfer-Encoding`` (request smuggling behind an HTTP-aware proxy), and a
head over 16 KiB that arrived in one read (h11 limits only a head that arrives in pieces). Each is
refused 400 ``request.malformed`` with ``Connection: close``: nothing after it on the connection is
read as a request."""

from __future__ import annotations

import json
import socket

import pytest

from smki.domain import Route
from smki.interfaces.api.security import MAX_REQUEST_HEAD
from tests.api.conftest import ClientFiles, LiveListeners


def _exchange(live: LiveListeners, who: ClientFiles, data: bytes) -> bytes:
    """Send ``data`` at once over TLS with a client certificate; everything the server answers until it closes."""
    host, port = live.url(Route.GATEWAY).removeprefix("https://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as raw, \
            who.context().wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(data)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return answer


def _responses(answer: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    found = []
    while answer:
        head, _, rest = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        size = int(headers.get("content-length", "0"))
        found.append((int(lines[0].split()[1]), headers, rest[:size]))
        answer = rest[size:]
    return found


WHOAMI = b"GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\n\r\n"


def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(
        live: LiveListeners, aro: ClientFiles) -> None:
    smuggled = (b"POST /api/v1/organisation-certificates HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + WHOAMI)
    [(status, headers, body)] = _responses(_exchange(live, aro, smuggled))  # the GET after it is never answered
    assert status == 400 and headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == "request.malformed" and "Content-Length and Transfer-Encoding" in error["message"]


@pytest.mark.parametrize("size", [MAX_REQUEST_HEAD + 1000, 30_000, 100_000])
def test_a_head_over_the_limit_is_refused_however_it_arrives(live: LiveListeners, aro: ClientFiles, size: int) -> None:
    big = b"GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * size + b"\r\n\r\n" + WHOAMI
    [(status, headers, body)] = _responses(_exchange(live, aro, big))
    assert status == 400 and headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "request.malformed"


def test_a_head_within_the_limit_is_served(live: LiveListeners, aro: ClientFiles) -> None:
    fits = b"GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 12_000 + b"\r\nConnection: close\r\n\r\n"
    [(status, _headers, _body)] = _responses(_exchange(live, aro, fits))
    assert status == 200


def test_on_the_portal_the_refusal_is_the_portal_s_page(live: LiveListeners, aro: ClientFiles) -> None:
    smuggled = (b"POST /portal/aro/csr HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + WHOAMI)
    [(status, headers, body)] = _responses(_exchange(live, aro, smuggled))
    assert status == 400 and headers["connection"] == "close"
    assert headers["content-type"].startswith("text/html") and b"request.malformed" in body
