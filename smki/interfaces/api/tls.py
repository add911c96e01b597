"""Mutual TLS for the listeners: the server's SSL context, and the peer certificate in the ASGI scope.

uvicorn 0.54 verifies client certificates (given an ``ssl.SSLContext``) but does not put the
peer's certificate into the request scope. :class:`PeerCertH11Protocol` is uvicorn's h11 protocol
with one addition: once the TLS handshake is done (``connection_made``), it reads the verified peer
certificate from the transport's ``ssl_object`` and adds it to every request's scope as the ASGI
TLS extension, ``scope["extensions"]["tls"]["client_cert_chain"]`` (PEM) plus the DER under
``client_cert_der``. Nothing a client sends can put anything there.

It also bounds how long a stopping server waits for connections to close once idle or answered
(``shutdown``), and how long a request head may take (``[api] head-timeout``). The TLS handshake,
and the watch on a response's progress, are below this protocol (:mod:`smki.interfaces.api.handshake`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from typing import Any

import h11
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from uvicorn.protocols.http.h11_impl import H11Protocol

from smki.interfaces.api.connlog import ConnectionLog
from smki.interfaces.api.handshake import TlsAcceptor
from smki.interfaces.api.settings import ApiSettings
from smki.observability import metrics
from smki.observability.access import HEADER, log_unparsed, new_request_id
from smki.services.credentials import ServerFiles

TLS_EXTENSION = "tls"
#: At shutdown, how long closing an idle connection may wait for the client's TLS close_notify
#: before the connection is dropped. An idle kept-alive client answers only when it next reads the
#: socket, and asyncio waits up to 30 s for it (``ssl_shutdown_timeout``): per connection, and
#: uvicorn's stop waits for every connection, so one idle client held a SIGTERM for 30 s.
IDLE_CLOSE_GRACE = 1.0
#: At shutdown, how often a connection with a request in flight looks whether its answer is out.
_ANSWER_POLL = 0.25
log = logging.getLogger("smki.api")
HEAD_INCOMPLETE = "request head incomplete"


def _error_json(code: str, message: str, request_id: str = "") -> str:
    """The JSON error object for a refusal made before any request reached the app."""
    return json.dumps({"error": {"code": code, "message": message, "rules": [], "request_id": request_id}})


def _head_timeout_response(seconds: float) -> bytes:
    """The 408 for an incomplete head, written raw: h11 cannot answer a request it has not read."""
    body = _error_json("request.timeout", f"the request head was not complete in {seconds:g} s")
    return ("HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncache-control: no-store\r\n"
            f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n{body}").encode()


def server_ssl_context(files: ServerFiles) -> ssl.SSLContext:
    """TLS 1.2+ server context that *requires* a client certificate chaining to the credentials CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(files.certificate), str(files.key))
    context.load_verify_locations(cafile=str(files.ca))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class PeerCertH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, publishing the verified client certificate to the app; at shutdown
    an idle connection is closed at once rather than after up to 30 s (``IDLE_CLOSE_GRACE``); a
    request head that does not arrive in ``head_timeout`` closes the connection; a request too
    malformed to parse leaves an access line and a request id like any other."""

    #: The listener's name in the access log (:func:`peer_protocol` makes one class per listener).
    listener = "-"
    #: Seconds a connection may take to send a complete request head (request line and headers),
    #: from its start or from the previous response; then it is closed (408 if part of a head had come).
    head_timeout = 30.0
    #: The process's connection events (one line per kind a minute: :mod:`.connlog`).
    events: ConnectionLog

    _head_timer: asyncio.TimerHandle | None = None

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        """No complete request head in ``head_timeout``: uvicorn sets no timer until a first response
        is sent, and the keep-alive timer stops at a request's first byte, so a client that connected
        and sent nothing, or part of a head (slowloris), held its connection for ever. A partial head
        is answered 408 ``request.timeout``; a silent connection is closed as an idle one."""
        self._head_timer = None
        if self.transport.is_closing():
            return
        waiting = self.cycle is not None and not self.cycle.response_complete
        if waiting:  # a request's head did arrive meanwhile; its own timers apply
            return
        partial = bool(self.conn.trailing_data[0])
        if partial:  # a slowloris flood is one line per peer a minute, as failed handshakes are
            metrics.connection_dropped(self.listener, "head-timeout")
            self.events.report(logging.WARNING, HEAD_INCOMPLETE, self.listener, self.client,
                               f"no complete request head in {self.head_timeout:g} s; closed with 408")
            self.transport.write(_head_timeout_response(self.head_timeout))
        self.transport.close()
        self.loop.call_later(IDLE_CLOSE_GRACE, self.transport.abort)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a new request's head arrived
            self._disarm_head_timer()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()
        if self.cycle is cycle and not self.transport.is_closing():  # waiting for the next request's head
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A request too malformed to reach the app (a head over h11's 16 KiB, a header line without a
        colon, an unreadable ``Content-Length``): uvicorn answered it in plain text, where every
        other refusal is the JSON error object (``request.malformed``); and, never reaching the app,
        it had no access-log line (the middleware's) nor ``X-Request-ID``: it has both here."""
        rid = new_request_id()
        body = _error_json("request.malformed", "the request is not valid HTTP/1.1", rid).encode()
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
                   (b"content-length", str(len(body)).encode()), (b"connection", b"close"), (HEADER, rid.encode())]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()
        log_unparsed(self.listener, rid, 400, len(body))

    def shutdown(self) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        super().shutdown()  # an idle connection: close_notify sent, the transport closing
        if idle:
            self.loop.call_later(IDLE_CLOSE_GRACE, self.transport.abort)
        else:  # a request in flight finishes first, as before; its connection then closes
            self._abort_when_answered()

    def _abort_when_answered(self) -> None:
        """Once the in-flight request's answer is written and the connection closing, the same grace
        as an idle one: a client that stopped reading (a stalled upload answered 408) would otherwise
        hold the stop for the 30 s TLS close wait. An answer still being written is left to finish."""
        if self.transport.is_closing() and self.transport.get_write_buffer_size() == 0:
            self.loop.call_later(IDLE_CLOSE_GRACE, self.transport.abort)
        elif self in self.connections:
            self.loop.call_later(_ANSWER_POLL, self._abort_when_answered)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()
            tls: dict[str, Any] = {
                "client_cert_der": der,
                "client_cert_chain": [pem],
                "tls_version": ssl_object.version(),
                "cipher_suite": (ssl_object.cipher() or ("",))[0],
            }
            inner = self.app

            async def with_peer(scope: Any, receive: Any, send: Any) -> None:
                if scope.get("type") in ("http", "websocket"):
                    scope.setdefault("extensions", {})[TLS_EXTENSION] = tls
                await inner(scope, receive, send)

            self.app = with_peer


def peer_protocol(listener: str, api: ApiSettings, context: ssl.SSLContext,
                  events: ConnectionLog) -> type[TlsAcceptor]:
    """The protocol uvicorn starts each connection of one listener with: the TLS handshake
    (:class:`TlsAcceptor`), then the HTTP protocol, both with the listener's name (it goes into
    the log lines they write themselves) and the ``[api]`` time limits."""
    http = type(f"PeerCertH11Protocol_{listener}", (PeerCertH11Protocol,), {
        "listener": listener, "head_timeout": api.head_timeout, "events": events})
    return type(f"TlsAcceptor_{listener}", (TlsAcceptor,), {
        "http": http, "context": context, "listener": listener, "timeout": api.handshake_timeout,
        "send_timeout": api.send_timeout, "events": events})
