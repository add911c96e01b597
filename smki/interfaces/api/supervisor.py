"""``smki serve --workers N``: the parent keeps N server processes running (issue 11, point 2).

The parent binds the sockets and forks the workers; it serves nothing itself, so it has little to
crash on. When a worker dies (a crash, the OOM killer, ``kill -9``) the others keep serving the
shared sockets and the parent starts a replacement, after a back-off that doubles while workers
keep dying young (``RESTART_MIN`` up to ``RESTART_MAX`` seconds; a worker that lived
``STABLE_AFTER`` seconds resets it), logging each exit and restart. A batch the dead worker owned is
taken over by another process (``smki.services.batch_jobs``: at once when its pid is gone on this
host, otherwise when its heartbeat lapses).

SIGTERM or SIGINT drains: each worker stops accepting, finishes its open requests, hands its running
batch back at the next chunk boundary, and exits; a worker still running after ``drain_seconds`` is
killed. Each worker dies with the parent (``PR_SET_PDEATHSIG``), so even ``kill -9`` of the parent
leaves no worker behind.

Companions are further processes kept alive the same way (the admin listener, issue 12): the
parent runs no thread of its own, so every fork — first start or restart — copies a process with
one thread (forking a process that has other threads can copy a lock one of them held, and the
child deadlocks on it). ``on_exit`` hears of every process that ended (the metrics forget its
live gauges).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess

log = logging.getLogger("smki.serve")

RESTART_MIN = 0.5
RESTART_MAX = 30.0
STABLE_AFTER = 60.0
DRAIN_SECONDS = 60.0


@dataclass
class _Slot:
    """One process position: what fills it, the process filling it now, when it may be refilled."""

    name: str
    spawn: Callable[[], BaseProcess]
    worker: bool = True
    process: BaseProcess | None = None
    started: float = 0.0
    delay: float = RESTART_MIN
    restart_at: float | None = None
    restarts: int = 0


@dataclass
class Supervisor:
    """Keeps ``count`` processes made by ``spawn`` alive until told to stop."""

    spawn: Callable[[], BaseProcess]
    count: int
    drain_seconds: float = DRAIN_SECONDS
    poll: float = 0.2
    report: Callable[[str], None] = field(default=lambda text: log.warning("%s", text))
    slots: list[_Slot] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    #: (name, spawn) of further processes to keep alive beside the workers (the admin listener).
    companions: list[tuple[str, Callable[[], BaseProcess]]] = field(default_factory=list)
    #: Called with the pid of every process that ended (before its replacement starts).
    on_exit: Callable[[int], None] | None = None

    def _start(self, slot: _Slot) -> None:
        if threading.active_count() > 1:  # never expected: the parent starts no thread
            self.report(f"warning: forking {slot.name} with {threading.active_count()} threads running")
        process = slot.spawn()
        process.start()
        slot.process, slot.started, slot.restart_at = process, time.monotonic(), None

    def pids(self) -> list[int]:
        return [s.process.pid for s in self.slots if s.process is not None and s.process.pid is not None]

    def workers(self) -> list[int]:
        """The pids of the server processes (not the companions)."""
        return [s.process.pid for s in self.slots
                if s.worker and s.process is not None and s.process.pid is not None]

    def stop(self, *_args: object) -> None:
        """Begin draining (a signal handler): every worker gets SIGTERM."""
        self.stopping.set()
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def run(self) -> None:
        self.slots = [_Slot(f"server process {number}", self.spawn) for number in range(self.count)]
        self.slots += [_Slot(name, spawn, worker=False) for name, spawn in self.companions]
        for slot in self.slots:
            self._start(slot)
        while not self.stopping.is_set():
            self.stopping.wait(self.poll)
            if not self.stopping.is_set():
                self._tend()
        self._drain()

    def _tend(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            process = slot.process
            if process is not None and not process.is_alive():
                process.join(0)
                lived = now - slot.started
                if lived >= STABLE_AFTER:
                    slot.delay = RESTART_MIN
                self.report(f"{slot.name} (pid {process.pid}) exited with code {process.exitcode} "
                            f"after {lived:.1f} s; restarting it in {slot.delay:g} s")
                if self.on_exit is not None and process.pid is not None:
                    self.on_exit(process.pid)
                slot.process, slot.restart_at = None, now + slot.delay
                slot.delay = min(RESTART_MAX, slot.delay * 2)
            if slot.process is None and slot.restart_at is not None and now >= slot.restart_at:
                self._start(slot)
                slot.restarts += 1
                assert slot.process is not None
                self.report(f"{slot.name} restarted (pid {slot.process.pid})")

    def _drain(self) -> None:
        also = "".join(f" and the {slot.name}" for slot in self.slots if not slot.worker and slot.process is not None)
        self.report(f"stopping: draining {len(self.workers())} server process(es){also}, "
                    f"at most {self.drain_seconds:g} s")
        deadline = time.monotonic() + self.drain_seconds
        for slot in self.slots:
            if slot.process is not None:
                slot.process.join(max(0.0, deadline - time.monotonic()))
        for slot in self.slots:
            process = slot.process
            if process is not None and process.pid is not None and process.is_alive():
                self.report(f"server process pid {process.pid} did not drain in {self.drain_seconds:g} s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.join(5)
        self.report("stopped")
