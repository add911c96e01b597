"""A client that sends its headers and part of a body, then stops, held its request for ever, and a
SIGTERM drain waited its full 60 s for it before killing the process (found by QA). Now a body that
makes no progress for ``[api] body-timeout`` seconds is refused — 408 ``request.timeout`` on the
JSON API and the Portal, the service's own XML on the DCC paths — with a warning line, and a
stopping server refuses a stalled upload after ``DRAIN_BODY_GRACE`` and closes its connection."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
from dataclasses import replace
from urllib.parse import urlsplit

import pytest

from smki.domain import Route
from smki.interfaces.api.settings import ApiSettings
from tests.api.conftest import ClientFiles, LiveListeners, counted, start_listeners


@pytest.fixture
def api_settings(api_settings: ApiSettings) -> ApiSettings:
    return replace(api_settings, body_timeout=0.5)


def stalled_upload(live: LiveListeners, who: ClientFiles, path: str, content_type: str,
                   raw: bytes | None = None) -> ssl.SSLSocket:
    """Headers promising 5,000 bytes, 10 of them, then nothing more (or ``raw``, as it is)."""
    url = urlsplit(live.url(Route.GATEWAY))
    sock = socket.create_connection((url.hostname, url.port), timeout=15)
    tls = who.context().wrap_socket(sock, server_hostname=url.hostname)
    tls.sendall(raw if raw is not None else f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: 5000\r\n\r\n".encode() + b"0123456789")
    return tls


def read_response(tls: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = tls.recv(65536)
        assert chunk, "connection closed inside the body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("path", ["/api/v1/organisation-certificates", "/api/v1/device-batches"])
def test_a_stalled_json_body_is_refused_with_408_and_a_log_line(live: LiveListeners, aro: ClientFiles, path: str,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING), stalled_upload(live, aro, path, "application/json") as tls:
        started = time.monotonic()
        status, headers, body = read_response(tls)
    assert time.monotonic() - started < 10
    assert status == 408
    assert headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "request.timeout"
    assert any("request body stalled" in r.getMessage() and path in r.getMessage() for r in caplog.records)
    assert live.client(aro).get("/api/v1/whoami").status_code == 200  # the listener goes on answering


def test_a_stalled_portal_form_is_refused_with_an_html_408(live: LiveListeners, aro: ClientFiles) -> None:
    with stalled_upload(live, aro, "/portal/aro/apply", "application/x-www-form-urlencoded") as tls:
        status, headers, body = read_response(tls)
    assert status == 408
    assert headers["content-type"].startswith("text/html")
    assert b"request.timeout" in body


def test_a_stalled_ad_hoc_request_gets_the_services_xml(live: LiveListeners, aro: ClientFiles) -> None:
    """The Ad Hoc service answers HTTP 200 even for errors (spec §3.2): a WORKFLOW_ERROR, not JSON."""
    with stalled_upload(live, aro, "/1.0/DeviceCSR", "application/xml") as tls:
        status, headers, body = read_response(tls)
    assert status == 200
    assert headers["content-type"].startswith("application/xml")
    assert b"<Status>WORKFLOW_ERROR</Status>" in body and b"request.timeout" in body


def test_a_stopping_server_does_not_wait_for_a_stalled_upload(home: object, aro: ClientFiles,
                                                             api_settings: ApiSettings) -> None:
    """With the default 30 s body timeout, a stop still ends within a few seconds: the stalled
    upload is refused after ``DRAIN_BODY_GRACE`` and its connection closed after ``IDLE_CLOSE_GRACE``."""
    live = start_listeners(home, replace(api_settings, body_timeout=30.0), runner=False)  # type: ignore[arg-type]
    try:
        tls = stalled_upload(live, aro, "/1.0/PortalCSRBatch/SubmitCSRBatch", "application/xml")
        time.sleep(0.3)  # the request is in the app, waiting for its body
        started = time.monotonic()
        live.listeners.stop()
        live.thread.join(timeout=15)
        assert not live.thread.is_alive(), "the listeners still wait for the stalled upload"
        assert time.monotonic() - started < 8
        status, _, body = read_response(tls)
        assert status == 200 and b"<BatchStatus>WORKFLOW_ERROR</BatchStatus>" in body
        tls.close()
    finally:
        live.stop()


def test_a_request_head_that_never_completes_is_closed(home: object, aro: ClientFiles,
                                                      api_settings: ApiSettings) -> None:
    """uvicorn armed no timer before a connection's first response, and the keep-alive timer stops
    at a request's first byte: a client that connected and sent nothing, or part of a request head
    (slowloris), held its connection for ever. Now ``[api] head-timeout`` closes it, with a 408 if
    part of a head had come — also on a kept-alive connection between requests."""
    live = start_listeners(home, replace(api_settings, head_timeout=0.5), runner=False)  # type: ignore[arg-type]
    try:
        _head_timeout(live, aro)
    finally:
        live.stop()


def _head_timeout(live: LiveListeners, aro: ClientFiles) -> None:
    url = urlsplit(live.url(Route.GATEWAY))

    def connect() -> ssl.SSLSocket:
        raw = socket.create_connection((url.hostname, url.port), timeout=10)
        return aro.context().wrap_socket(raw, server_hostname=url.hostname)

    with connect() as silent:
        assert silent.recv(100) == b""  # closed, nothing said
    with connect() as partial:
        partial.sendall(b"GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        status, headers, body = read_response(partial)
        assert status == 408 and headers["connection"] == "close"
        assert json.loads(body)["error"]["code"] == "request.timeout"
    with connect() as kept:
        kept.sendall(b"GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(kept)[0] == 200
        time.sleep(0.2)
        kept.sendall(b"GET /api/v1/whoami HTTP/1.1\r\nHo")
        assert read_response(kept)[0] == 408


def _dropped(listener: str, reason: str) -> float:
    return counted("smki_connections_dropped", listener=listener, reason=reason)


def test_a_slowloris_flood_is_one_log_line_a_minute_and_counted(home: object, aro: ClientFiles,
                                                                 api_settings: ApiSettings,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Each connection that sends part of a head and stops is answered 408 and counted in
    ``smki_connections_dropped_total{reason="head-timeout"}``; its log line goes through the
    connection log's flood control, as a failed handshake's does: five from one peer are one line
    now (the rest summed up at the minute's end), not five."""
    import logging

    live = start_listeners(home, replace(api_settings, head_timeout=0.3), runner=False)  # type: ignore[arg-type]
    url = urlsplit(live.url(Route.GATEWAY))
    before = _dropped("gateway", "head-timeout")
    try:
        with caplog.at_level(logging.INFO, logger="smki.api"):
            for _ in range(5):
                raw = socket.create_connection((url.hostname, url.port), timeout=10)
                with aro.context().wrap_socket(raw, server_hostname=url.hostname) as partial:
                    partial.sendall(b"GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    assert read_response(partial)[0] == 408
            lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("request head incomplete")]
    finally:
        live.stop()
    assert len(lines) == 1 and "on gateway: no complete request head in 0.3 s" in lines[0], lines
    assert _dropped("gateway", "head-timeout") - before == 5
