"""The TLS handshake of each accepted connection: time-limited, and logged when it fails.

Given an SSL context, asyncio runs the handshake inside ``create_server`` and tells no one when it
fails: a client with no certificate, an untrusted one, an old TLS version, or plain HTTP sent to
the port left no trace at all (asyncio logs it only in debug mode), and a client that opened a
TCP connection and said nothing held it for asyncio's default 60 s.

So the listeners' sockets are served without an SSL context, and :class:`TlsAcceptor` — the
protocol each accepted connection starts with — runs the handshake itself with
``loop.start_tls`` and ``[api] handshake-timeout``. A failure is counted
(``smki_tls_handshake_failures_total``) and logged with the peer, the listener and the reason,
through the process's :class:`~smki.interfaces.api.connlog.ConnectionLog` (repeats summed up).
On success the connection is handed to the HTTP protocol (:class:`~smki.interfaces.api.tls.PeerCertH11Protocol`),
which sees what it saw before: ``connection_made`` with the TLS transport, then the data; and a
:class:`~smki.interfaces.api.sendwatch.WriteWatch` on the TCP transport drops the connection when
a response makes no write progress for ``[api] send-timeout`` (logged once, as a handshake failure is).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from smki.interfaces.api.connlog import ConnectionLog
from smki.interfaces.api.sendwatch import WriteWatch
from smki.observability import metrics

HANDSHAKE_FAILED = "TLS handshake failed"
SEND_STALLED = "response send stalled"
#: OpenSSL reasons (``SSLError.reason``) by the category counted and the words logged.
_REASONS = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": ("no-certificate", "no client certificate"),
    "HTTP_REQUEST": ("plain-http", "plain HTTP sent to the TLS port"),
    "HTTPS_PROXY_REQUEST": ("plain-http", "an HTTP proxy request sent to the TLS port"),
}
_PROTOCOL = {"WRONG_VERSION_NUMBER", "UNSUPPORTED_PROTOCOL", "VERSION_TOO_LOW", "NO_PROTOCOLS_AVAILABLE",
             "NO_SHARED_CIPHER", "UNKNOWN_PROTOCOL", "NO_SHARED_SIGNATURE_ALGORITHMS", "NO_SUITABLE_KEY_SHARE"}


def classify(exc: BaseException, timeout: float) -> tuple[str, str, int]:
    """Why a handshake failed: (metric category, the reason logged, log level).

    A client that closes the connection mid-handshake is logged at ``info`` (a load balancer's
    plain TCP check does exactly that); every other failure is a ``warning``."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "certificate-rejected", f"client certificate not accepted ({exc.verify_message})", logging.WARNING
    if isinstance(exc, ssl.SSLError):
        code = exc.reason or ""
        if code in _REASONS:
            category, text = _REASONS[code]
            return category, f"{text} ({code})", logging.WARNING
        if code in _PROTOCOL:
            return "protocol", f"TLS version or cipher not accepted ({code})", logging.WARNING
        if "ALERT" in code:
            return "client-alert", f"the client ended the handshake ({code})", logging.WARNING
        return "other", f"TLS error ({code or exc})", logging.WARNING
    if isinstance(exc, ConnectionAbortedError):  # asyncio's handshake timer
        return "timeout", f"no complete handshake in {timeout:g} s", logging.WARNING
    if isinstance(exc, ConnectionError):
        return "closed", "the client closed the connection during the handshake", logging.INFO
    return "other", f"{type(exc).__name__}: {exc}", logging.WARNING


class TlsAcceptor(asyncio.Protocol):
    """The first protocol of an accepted connection: its TLS handshake, then the HTTP protocol.

    uvicorn makes one per connection with its protocol arguments (``config``, ``server_state``,
    ``app_state``); :func:`smki.interfaces.api.tls.peer_protocol` makes the subclass of a listener,
    which sets the class attributes below. While the handshake runs it is one of uvicorn's
    connections, so a stopping server closes it at once rather than waiting for the handshake.
    Between the handshake's end and the hand-over it is also the TLS transport's protocol, and keeps
    whatever arrives (data, end of stream, loss) for the HTTP protocol, in order.
    """

    http: type[H11Protocol]
    context: ssl.SSLContext
    listener = "-"
    timeout = 10.0
    send_timeout = 60.0
    events: ConnectionLog

    def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
        self._http = self.http(config=config, server_state=server_state, app_state=app_state, _loop=_loop)
        self._connections: set[Any] = server_state.connections
        self._tcp: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._early: list[tuple[str, Any]] = []  # what the TLS transport delivered before the hand-over
        self._handed_over = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # the ClientHello is for start_tls's protocol, not this one
        self._tcp = transport
        self._connections.add(self)
        self._task = asyncio.get_running_loop().create_task(self._handshake(transport))

    async def _handshake(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        try:
            if transport.is_closing():  # lost before the handshake could start: nothing would end it
                return
            tls = await loop.start_tls(transport, self, self.context, server_side=True,
                                       ssl_handshake_timeout=self.timeout)
        except Exception as exc:  # every failure is the client's: logged, never raised
            category, reason, level = classify(exc, self.timeout)
            metrics.handshake_failed(self.listener, category)
            self.events.report(level, HANDSHAKE_FAILED, self.listener, peer, reason)
            return
        finally:
            self._connections.discard(self)
        if tls is None:  # closed while the handshake ran (the server is stopping)
            return
        tls.set_protocol(self._http)
        self._handed_over = True
        inner = transport.get_protocol()  # asyncio's TLS protocol
        if isinstance(inner, asyncio.BufferedProtocol):  # as it is on every Python smki supports
            transport.set_protocol(WriteWatch(inner, transport, self.send_timeout,
                                              lambda: self._send_stalled(transport, peer)))
        self._http.connection_made(tls)
        for kind, value in self._early:
            if kind == "data":
                self._http.data_received(value)
            elif kind == "eof":
                self._http.eof_received()
            elif kind == "pause":
                self._http.pause_writing()
            elif kind == "resume":
                self._http.resume_writing()
            else:
                self._http.connection_lost(value)
        self._early.clear()

    def _send_stalled(self, transport: asyncio.Transport, peer: tuple[str, int] | None) -> None:
        """No write progress for ``send_timeout``: logged once, and the connection dropped (``abort``:
        a ``close`` would wait to send what the client does not read)."""
        scope = getattr(self._http, "scope", None)
        request = f"{scope['method']} {scope['path']}" if scope else "-"
        metrics.connection_dropped(self.listener, "send-stalled")
        self.events.report(logging.WARNING, SEND_STALLED, self.listener, peer,
                           f"the client read nothing of the response for {self.send_timeout:g} s; connection "
                           f"dropped ({request})")
        transport.abort()

    def data_received(self, data: bytes) -> None:
        self._early.append(("data", data))

    def eof_received(self) -> bool | None:
        self._early.append(("eof", None))
        return None  # over TLS the connection closes after an EOF whatever a protocol answers

    def pause_writing(self) -> None:
        self._early.append(("pause", None))

    def resume_writing(self) -> None:
        self._early.append(("resume", None))

    def connection_lost(self, exc: Exception | None) -> None:
        """Before the hand-over: the handshake failed (``start_tls`` raised, and that is logged) or
        the connection ended between the handshake and the hand-over (passed on)."""
        self._early.append(("lost", exc))

    def shutdown(self) -> None:
        """uvicorn is stopping: a connection still in its handshake is dropped at once."""
        if self._tcp is not None and not self._handed_over:
            self._tcp.abort()
