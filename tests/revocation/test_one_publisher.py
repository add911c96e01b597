"""Work only one node may do runs once across nodes (issue 11, point 4): the cluster-wide lock, and
CRL/ARL scheduling with several schedulers (one per process or node) on one database."""

from __future__ import annotations

import threading
import time

from smki.services.context import Home
from smki.services.revocation import ARL, CRL, RevocationListScheduler
from smki.store import Store
from smki.store.locks import exclusive, lock_key
from tests.conftest import made_before_the_ceremony_published_lists


def test_the_lock_is_held_by_one_at_a_time(home: Home) -> None:
    other = Store.open(str(home.store.engine.url))  # another process's (or node's) connections
    try:
        with exclusive(home.store.engine, "job") as first:
            assert first
            with exclusive(other.engine, "job") as second:
                assert not second  # never waits: told to skip
            with exclusive(other.engine, "another-job") as unrelated:
                assert unrelated
        with exclusive(other.engine, "job") as after:
            assert after  # released at the end of the block
    finally:
        other.close()


def test_lock_keys_are_stable_signed_64_bit() -> None:
    assert lock_key("revocation-lists") == lock_key("revocation-lists") != lock_key("batch-purge")
    assert -(2**63) <= lock_key("revocation-lists") < 2**63


def test_several_schedulers_publish_one_list_per_interval(home: Home) -> None:
    """Four schedulers, as four processes over two nodes, each with its own connections, started
    at once, on a home whose lists are all due: each list is published once, not once per scheduler."""
    made_before_the_ceremony_published_lists(home)
    homes = [Home(home.settings, Store.open(str(home.store.engine.url)), home.secret) for _ in range(4)]
    schedulers = [RevocationListScheduler(h, interval=0.02) for h in homes]
    try:
        gate = threading.Barrier(len(schedulers))

        def start(scheduler: RevocationListScheduler) -> None:
            gate.wait()
            scheduler.start()

        starters = [threading.Thread(target=start, args=(s,)) for s in schedulers]
        for thread in starters:
            thread.start()
        for thread in starters:
            thread.join()
        deadline = time.monotonic() + 30
        while sum(len(s.published) for s in schedulers) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # many more ticks of every scheduler
    finally:
        for scheduler in schedulers:
            scheduler.stop()
        for h in homes:
            h.store.close()
    assert sorted(p.kind for s in schedulers for p in s.published) == [ARL, CRL]
    assert home.store.revocation_list_numbers(CRL) == [1]
    assert home.store.revocation_list_numbers(ARL) == [1]
    assert home.store.verify_audit().ok
