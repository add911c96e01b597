"""The benchmarks' view of a process family (``smki.bench._procstat``): the cheap way, from the
family's own ``children`` lists, must find exactly what a scan of every process finds."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from smki.bench import _procstat


@pytest.fixture
def family() -> list[subprocess.Popen[bytes]]:
    """Two children of this process, one of which has two children of its own (grandchildren)."""
    started = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]),
        subprocess.Popen(["bash", "-c", "sleep 30 & sleep 30 & wait"]),
    ]
    try:
        yield started
    finally:
        for process in started:
            process.kill()
            process.wait()


def _grandchildren_up(parent: int) -> None:
    deadline = time.monotonic() + 10
    while len(_procstat._descendants_by_scan(parent)) < 2:
        assert time.monotonic() < deadline, "the shell's children did not start"
        time.sleep(0.02)


@pytest.mark.skipif(not _procstat._LISTS_CHILDREN, reason="this kernel does not list a thread's children")
def test_children_lists_find_what_a_scan_finds(family: list[subprocess.Popen[bytes]]) -> None:
    _grandchildren_up(family[1].pid)
    me = os.getpid()
    found = _procstat.descendants(me)
    assert found == _procstat._descendants_by_scan(me)
    assert {process.pid for process in family} <= found
    grandchildren = _procstat.descendants(family[1].pid)
    assert len(grandchildren) == 2 and grandchildren <= found


def test_a_process_gone_has_no_family_and_no_memory(family: list[subprocess.Popen[bytes]]) -> None:
    gone = family[0]
    gone.kill()
    gone.wait()
    assert _procstat.descendants(gone.pid) == set()
    assert _procstat.rss_mib(gone.pid) == 0.0 == _procstat.peak_rss_mib(gone.pid)
    assert _procstat.peak_rss_mib(os.getpid()) >= _procstat.rss_mib(os.getpid()) > 0
