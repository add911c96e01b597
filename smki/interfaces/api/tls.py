"""Mutual TLS for the listeners: the server's SSL context, and the peer certificate in the ASGI scope.

uvicorn 0.54 verifies client certificates (given an ``ssl.SSLContext``) but does not put the
peer's certificate into the request scope. :class:`PeerCertH11Protocol` is uvicorn's h11 protocol
with one addition: once the TLS handshake is done (``connection_made``), it reads the verified peer
certificate from the transport's ``ssl_object`` and adds it to every request's scope as the ASGI
TLS extension, ``scope["extensions"]["tls"]["client_cert_chain"]`` (PEM) plus the DER under
``client_cert_der``. Nothing a client sends can put anything there.

It also bounds how long a stopping server waits for idle connections to close (``shutdown``).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import h11
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from uvicorn.protocols.http.h11_impl import H11Protocol

from smki.observability.access import HEADER, log_unparsed, new_request_id
from smki.services.credentials import ServerFiles

TLS_EXTENSION = "tls"
#: At shutdown, how long closing an idle connection may wait for the client's TLS close_notify
#: before the connection is dropped. An idle kept-alive client answers only when it next reads the
#: socket, and asyncio waits up to 30 s for it (``ssl_shutdown_timeout``): per connection, and
#: uvicorn's stop waits for every connection, so one idle client held a SIGTERM for 30 s.
IDLE_CLOSE_GRACE = 1.0


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
    request too malformed to parse leaves an access line and a request id like any other."""

    #: The listener's name in the access log (:func:`peer_protocol` makes one class per listener).
    listener = "-"

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse (it never reaches the app, so the access
        log's middleware never sees it), with ``X-Request-ID`` and its access-log line."""
        rid = new_request_id()
        body = msg.encode("ascii")
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close"), (HEADER, rid.encode())]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()
        log_unparsed(self.listener, rid, 400, len(body))

    def shutdown(self) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        super().shutdown()  # an idle connection: close_notify sent, the transport closing
        if idle:  # a request in flight finishes first, as before; its connection then closes
            self.loop.call_later(IDLE_CLOSE_GRACE, self.transport.abort)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
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


def peer_protocol(listener: str) -> type[PeerCertH11Protocol]:
    """The protocol class of one listener (its name goes into the access lines it writes itself)."""
    return type(f"PeerCertH11Protocol_{listener}", (PeerCertH11Protocol,), {"listener": listener})
