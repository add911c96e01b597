"""Log lines about connections rather than requests (a failed TLS handshake, a client that stopped
reading its response), with repeats summed up so that a flood of them cannot flood the log.

A request always leaves its access line; these events happen where no request does, and a
hostile or broken client can cause thousands a second (a scanner, a load balancer's plain TCP
check, a client with an expired certificate retrying in a loop). So, per process:

* the first event of a kind (listener, peer host, reason) in a window of :data:`WINDOW` seconds
  is logged at once, with the peer's address and port;
* its repeats in that window are counted, and logged as one line when the window ends
  (``TLS handshake failed 41 more times from 10.0.0.7 on gateway in the last 60 s: …``);
* at most :data:`MAX_LINES` kinds are logged one by one per window; events of further kinds
  (many peers at once) are counted into one line per listener at the window's end.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field

#: Seconds over which repeats of one kind of event are summed into one line.
WINDOW = 60.0
#: Kinds of event logged one by one per window; events of any further kind are only counted.
MAX_LINES = 50


@dataclass
class _Window:
    #: (level, event, listener, host, reason) -> repeats not yet logged
    repeats: dict[tuple[int, str, str, str, str], int] = field(default_factory=dict)
    #: (event, listener) -> events of kinds beyond MAX_LINES
    overflow: dict[tuple[str, str], int] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


class ConnectionLog:
    """One process's connection events (both listeners share it: they share one event loop)."""

    def __init__(self, logger: logging.Logger, *, window: float | None = None, max_lines: int | None = None) -> None:
        self.logger = logger
        self.window = WINDOW if window is None else window
        self.max_lines = MAX_LINES if max_lines is None else max_lines
        self._current = _Window()
        self._lock = threading.Lock()

    def report(self, level: int, event: str, listener: str, peer: tuple[str, int] | None, reason: str) -> None:
        """``event`` (``TLS handshake failed``) from ``peer`` on ``listener``, because ``reason``."""
        host, port = (str(peer[0]), peer[1]) if peer else ("?", 0)
        key = (level, event, listener, host, reason)
        with self._lock:
            window = self._current
            if window.timer is None:
                window.timer = asyncio.get_running_loop().call_later(self.window, self.flush)
            if key in window.repeats:
                window.repeats[key] += 1
                return
            if len(window.repeats) >= self.max_lines:
                window.overflow[event, listener] = window.overflow.get((event, listener), 0) + 1
                return
            window.repeats[key] = 0
        where = f"{host}:{port}" if peer else "?"
        self.logger.log(level, "%s from %s on %s: %s", event, where, listener, reason,
                        extra={"listener": listener, "peer": where, "reason": reason})

    def flush(self) -> None:
        """Log the current window's repeats and overflow, and start a new window."""
        with self._lock:
            window, self._current = self._current, _Window()
        if window.timer is not None:
            window.timer.cancel()
        for (level, event, listener, host, reason), count in window.repeats.items():
            if count:
                self.logger.log(level, "%s %d more time%s from %s on %s in the last %g s: %s", event, count,
                                "" if count == 1 else "s", host, listener, self.window, reason,
                                extra={"listener": listener, "peer": host, "reason": reason, "repeats": count})
        for (event, listener), count in window.overflow.items():
            self.logger.warning("%s %d more time%s on %s in the last %g s, from other peers or for other reasons "
                                "(not logged one by one)", event, count, "" if count == 1 else "s", listener,
                                self.window, extra={"listener": listener, "repeats": count})
