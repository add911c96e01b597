"""What a benchmark reads about processes from ``/proc``: CPU time and resident memory.

On these shared machines wall-clock figures move with everything else that runs; the CPU a
process spent is its own work, so the benchmarks report both (where the time goes, per phase).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
        return handle.read().rpartition(")")[2].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far; 0 if it is gone."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


#: Whether the kernel lists each thread's children (``/proc/PID/task/TID/children``, Linux 3.5+
#: with CONFIG_PROC_CHILDREN): then a process's family is found from its own entries.
_LISTS_CHILDREN = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def descendants(root: int) -> set[int]:
    """Every live descendant of ``root`` (pool workers are a fork server's children, not ours).

    Benchmarks call this every 50-100 ms while they measure, from a thread of the machine they
    measure. Read from the family's own ``children`` lists it costs a few file reads; the fallback
    reads the ``stat`` of every process on the machine, ~1.8 ms of CPU with 100 processes — at
    20 samples a second, 4% of a core taken from the run.
    """
    if not _LISTS_CHILDREN:
        return _descendants_by_scan(root)
    family: set[int] = set()
    frontier = {root}
    while frontier:
        found: set[int] = set()
        for pid in frontier:
            found |= _children(pid)
        frontier = found - family
        family |= frontier
    return family


def _children(pid: int) -> set[int]:
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:  # gone
        return set()
    children: set[int] = set()
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as handle:
                children.update(int(child) for child in handle.read().split())
        except (OSError, ValueError):  # the thread or process ended meanwhile
            continue
    return children


def _descendants_by_scan(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(_stat_fields(int(entry))[1])
            except (OSError, IndexError, ValueError):
                continue
    family: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - family
        family |= frontier
    return family


def _status_mib(pid: int, field: str) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0.0


def written_bytes(pid: int | str = "self") -> int:
    """Bytes the process has written so far (``/proc/PID/io`` ``wchar``: every write call, to files,
    pipes and sockets alike); 0 if it cannot be read."""
    try:
        with open(f"/proc/{pid}/io", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def rss_mib(pid: int) -> float:
    """Current resident memory (VmRSS) in MiB; 0 if the process is gone."""
    return _status_mib(pid, "VmRSS:")


def peak_rss_mib(pid: int) -> float:
    """The most resident memory the process has had (VmHWM, the kernel's own peak), in MiB; 0 if gone."""
    return _status_mib(pid, "VmHWM:")


@dataclass
class Watch:
    """CPU seconds spent by a server process, by its descendants, and by other given processes
    (e.g. PostgreSQL backends) between ``start`` and ``stop``; the server's and the largest
    descendant's peak RSS, sampled every ``every`` seconds meanwhile."""

    server: int
    others: list[int] = field(default_factory=list)
    every: float = 0.05
    server_cpu: float = 0.0
    workers_cpu: float = 0.0
    others_cpu: float = 0.0
    server_peak_mib: float = 0.0
    worker_peak_mib: float = 0.0
    _start: dict[int, float] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Watch:
        self._start = {pid: cpu_seconds(pid) for pid in {self.server, *descendants(self.server), *self.others}}
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while True:
            self.server_peak_mib = max(self.server_peak_mib, rss_mib(self.server))
            for pid in descendants(self.server):
                self.worker_peak_mib = max(self.worker_peak_mib, rss_mib(pid))
                self._last[pid] = cpu_seconds(pid) or self._last.get(pid, 0.0)
            if self._stop.wait(self.every):
                return

    def stop(self) -> Watch:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        workers = descendants(self.server)
        for pid in workers:
            self._last[pid] = cpu_seconds(pid)
        self.server_cpu = cpu_seconds(self.server) - self._start.get(self.server, 0.0)
        self.workers_cpu = sum(cpu - self._start.get(pid, 0.0) for pid, cpu in self._last.items())
        self.others_cpu = sum(cpu_seconds(pid) - self._start.get(pid, 0.0) for pid in self.others)
        return self
