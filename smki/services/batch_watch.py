"""Word that a batch's status may have changed, for requests that wait for it (long polling).

A client waiting for its batch to complete used to ask for its status again and again: each answer
cost the server a TLS request, the credential check and a read, and completion was seen only at the
next question. ``GET /api/v1/device-batches/{id}?wait=S`` instead waits in the server until the
status changes; this module tells such waits when to read the status again.

The batch runner and the RA's approval and rejection call :func:`changed` whenever they move a job
from one status to another in this process. A waiter registered with :func:`subscribe` is called
back then (from the thread that made the change), and reads the job again. A job run by another
server process or node changes without word here: waiters also read again every few tenths of a
second (``smki.interfaces.api.json_api``), so word is a shortcut, never a condition.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: Re-entrant: the server's SIGTERM handler calls :func:`changed` in the main thread, which may be
#: inside :func:`subscribe` (the event loop's thread) when the signal comes.
_lock = threading.RLock()
_waiters: set[Callable[[], None]] = set()


def subscribe(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` (with no arguments, from the changing thread) after each :func:`changed`,
    until the returned function is called. ``callback`` must be quick and must not raise."""
    with _lock:
        _waiters.add(callback)

    def unsubscribe() -> None:
        with _lock:
            _waiters.discard(callback)

    return unsubscribe


def changed() -> None:
    """A job's status changed in this process (or may have): every waiter reads again."""
    with _lock:
        waiters = list(_waiters)
    for callback in waiters:
        try:
            callback()
        except Exception:  # a waiter whose event loop has closed: it reads again on its own timer
            continue


def waiting() -> int:
    """How many waiters are subscribed (tests, and the check that none is left behind)."""
    with _lock:
        return len(_waiters)
