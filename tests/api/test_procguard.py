"""The process guard works from the C library already loaded: it starts no process of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from smki.services import procguard


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_naming_a_process_and_tying_it_to_its_parent_start_no_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ctypes.util.find_library`` ran ``/sbin/ldconfig -p`` in every signing worker and forkserver,
    and that short-lived child showed up beside them (seen by the environment test of ``smki serve``)."""
    started: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        started.append(args)
        raise AssertionError("the guard started a process")

    import ctypes

    procguard._libc.cache_clear()
    monkeypatch.setattr(subprocess, "Popen", refuse)
    before = Path("/proc/self/comm").read_text()
    signal_before = ctypes.c_int(0)
    assert procguard._libc().prctl(2, ctypes.byref(signal_before), 0, 0, 0) == 0  # PR_GET_PDEATHSIG
    try:
        procguard.set_process_name("smki-guard-test")
        assert Path("/proc/self/comm").read_text().strip() == "smki-guard-test"
        assert procguard.die_with_parent(0)  # signal 0: set, and harmless when the parent goes
    finally:
        procguard.set_process_name(before.strip())
        procguard._libc().prctl(procguard.PR_SET_PDEATHSIG, signal_before.value, 0, 0, 0)
    assert not started
