"""A time limit on a response the client does not read: no write progress for a while ends it.

A client that asks for a large response (a batch's results, the API docs' script) and stops
reading held the connection, the request and the buffered response for ever: asyncio's TLS layer
puts a response's bytes in the TCP transport's buffer and waits, and an app streaming a response
waits in ``send``. The TCP transport says when its buffer goes over its high-water mark
(``pause_writing``: the kernel's socket buffer is full too) and back under its low-water mark
(``resume_writing``), but says it to its protocol — asyncio's TLS protocol, which keeps it.

:class:`WriteWatch` sits between the two: it passes every call on unchanged, and while the TCP
transport is paused it looks, every ``timeout`` seconds, whether the buffer has shrunk (the client
read something). When it has not, ``stalled`` is called once (the acceptor logs it and drops the
connection). A slow client that keeps reading is never cut off; no timer runs while nothing waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # collections.abc.Buffer from Python 3.12
    from typing_extensions import Buffer


class WriteWatch(asyncio.BufferedProtocol):
    """The TCP transport's protocol in front of ``inner`` (asyncio's TLS protocol)."""

    def __init__(self, inner: asyncio.BufferedProtocol, transport: asyncio.WriteTransport, timeout: float,
                 stalled: Callable[[], None]) -> None:
        self.inner = inner
        self.transport = transport
        self.timeout = timeout
        self.stalled = stalled
        self._timer: asyncio.TimerHandle | None = None
        self._waiting = 0  # bytes unsent when the timer was armed

    def _arm(self) -> None:
        self._waiting = self.transport.get_write_buffer_size()
        self._timer = asyncio.get_running_loop().call_later(self.timeout, self._check)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        """Paused for ``timeout``: still paused (else the timer was disarmed); progress if the
        buffer shrank (while paused nothing is added to it), else stalled."""
        self._timer = None
        if self.transport.is_closing() and self.transport.get_write_buffer_size() == 0:
            return
        if self.transport.get_write_buffer_size() < self._waiting:
            self._arm()
        else:
            self.stalled()

    def pause_writing(self) -> None:
        if self._timer is None:
            self._arm()
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self._disarm()
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.inner.connection_lost(exc)

    def get_buffer(self, sizehint: int) -> Buffer:
        return self.inner.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.inner.buffer_updated(nbytes)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()
