"""A TLS handshake that failed left no trace (asyncio logs it only in debug mode), and a client that
opened a TCP connection and never began the handshake held it for asyncio's default 60 s. Now
each failure is a log line naming the peer, the listener and the reason — repeats of one summed
up in a line at the end of the window, so a flood cannot flood the log — and is counted in
``smki_tls_handshake_failures_total``; ``[api] handshake-timeout`` bounds a handshake."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from smki.domain import Route
from smki.interfaces.api import connlog
from smki.interfaces.api.settings import ApiSettings
from smki.services.context import Home
from tests.api.conftest import ClientFiles, LiveListeners, counted, start_listeners
from tests.api.test_http_identity import _foreign_client

WINDOW = 1.0


@pytest.fixture
def live(home: Home, api_settings: ApiSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveListeners]:
    monkeypatch.setattr(connlog, "WINDOW", WINDOW)
    server = start_listeners(home, replace(api_settings, handshake_timeout=0.5), runner=False)
    try:
        yield server
    finally:
        server.stop()


def _address(live: LiveListeners, route: Route = Route.GATEWAY) -> tuple[str, int]:
    url = urlsplit(live.url(route))
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


def _handshake(live: LiveListeners, context: ssl.SSLContext, route: Route = Route.GATEWAY) -> None:
    """A handshake (and, TLS 1.3 finishing the client's side first, one read) that must fail."""
    host, port = _address(live, route)
    with socket.create_connection((host, port), timeout=10) as raw, pytest.raises((ssl.SSLError, ConnectionError)), \
            context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(b"GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        assert tls.recv(100) == b"", "the request was answered"
        raise ConnectionError("closed")


def _failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("TLS handshake failed")]


def _wait_for(caplog: pytest.LogCaptureFixture, count: int, seconds: float = 5.0) -> list[logging.LogRecord]:
    deadline = time.monotonic() + seconds
    while len(_failures(caplog)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return _failures(caplog)


def _counted(listener: str, reason: str) -> float:
    return counted("smki_tls_handshake_failures", listener=listener, reason=reason)


def _no_certificate(live: LiveListeners) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(live.ca))


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_each_kind_of_failed_handshake_is_one_line_with_peer_listener_and_reason(
        live: LiveListeners, aro: ClientFiles, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cert_path, key_path = _foreign_client(tmp_path)
    foreign = ssl.create_default_context(cafile=str(live.ca))
    foreign.load_cert_chain(str(cert_path), str(key_path))
    old = aro.context()
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    before = _counted("spoti", "no-certificate")
    with caplog.at_level(logging.INFO, logger="smki.api"):
        _handshake(live, _no_certificate(live), Route.SPOTI)
        _handshake(live, foreign)
        _handshake(live, old)
        with socket.create_connection(_address(live), timeout=10) as plain:
            plain.sendall(b"GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"HTTP/1.1 200" not in plain.recv(1000)
        lines = [(r.levelname, r.getMessage()) for r in _wait_for(caplog, 4)]
    assert len(lines) == 4, lines
    no_cert, foreign_cert, version, plain_http = lines
    assert no_cert[0] == "WARNING"
    assert no_cert[1].startswith("TLS handshake failed from 127.0.0.1:")
    assert " on spoti: no client certificate (PEER_DID_NOT_RETURN_A_CERTIFICATE)" in no_cert[1]
    assert " on gateway: client certificate not accepted (" in foreign_cert[1]
    assert " on gateway: TLS version or cipher not accepted (" in version[1]
    assert " on gateway: plain HTTP sent to the TLS port" in plain_http[1]
    assert _counted("spoti", "no-certificate") == before + 1
    assert live.client(aro).get("/api/v1/whoami").status_code == 200  # the listener goes on serving


def test_a_silent_connection_is_closed_after_the_handshake_timeout(live: LiveListeners,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="smki.api"), \
            socket.create_connection(_address(live), timeout=10) as silent:
        started = time.monotonic()
        assert silent.recv(100) == b""  # closed by the server, nothing said
        waited = time.monotonic() - started
        lines = [r.getMessage() for r in _wait_for(caplog, 1)]
    assert 0.4 < waited < 3
    assert len(lines) == 1 and lines[0].endswith(" on gateway: no complete handshake in 0.5 s"), lines


def test_repeated_failures_are_one_line_then_one_line_summing_them_up(live: LiveListeners,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="smki.api"):
        for _ in range(12):
            _handshake(live, _no_certificate(live))
        lines = [r.getMessage() for r in _wait_for(caplog, 2, seconds=WINDOW + 5)]
    assert len(lines) == 2, lines
    assert lines[0].startswith("TLS handshake failed from 127.0.0.1:")
    assert lines[1] == (f"TLS handshake failed 11 more times from 127.0.0.1 on gateway in the last {WINDOW:g} s: "
                        "no client certificate (PEER_DID_NOT_RETURN_A_CERTIFICATE)")


def test_a_flood_from_many_kinds_is_capped_and_counted(live: LiveListeners, caplog: pytest.LogCaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """More kinds (peers, reasons) in one window than ``MAX_LINES``: the rest in one line."""
    monkeypatch.setattr(live.listeners.events, "max_lines", 1)
    with caplog.at_level(logging.INFO, logger="smki.api"):
        _handshake(live, _no_certificate(live))
        for _ in range(3):
            with socket.create_connection(_address(live), timeout=10) as plain:
                plain.sendall(b"GET / HTTP/1.1\r\n\r\n")
                plain.recv(100)
        lines = [r.getMessage() for r in _wait_for(caplog, 2, seconds=WINDOW + 5)]
    assert len(lines) == 2, lines
    assert lines[1] == (f"TLS handshake failed 3 more times on gateway in the last {WINDOW:g} s, from other peers "
                        "or for other reasons (not logged one by one)")


def test_a_stopping_server_drops_a_connection_still_in_its_handshake(home: Home, api_settings: ApiSettings) -> None:
    """A connection mid-handshake is one of the server's connections: a stop drops it at once
    rather than waiting out ``handshake-timeout``."""
    live = start_listeners(home, replace(api_settings, handshake_timeout=30.0), runner=False)
    try:
        with socket.create_connection(_address(live), timeout=10) as silent:
            time.sleep(0.2)
            started = time.monotonic()
            live.listeners.stop()
            live.thread.join(timeout=15)
            assert not live.thread.is_alive() and time.monotonic() - started < 5
            with pytest.raises(ConnectionError):
                if silent.recv(100) == b"":
                    raise ConnectionResetError("closed")
    finally:
        live.stop()
