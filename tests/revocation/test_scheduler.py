"""The server's CRL/ARL scheduler publishes what is due, keeps going after a failure, and stops."""

from __future__ import annotations

import time

from smki.services.context import Home
from smki.services.revocation import ARL, CRL, RevocationListScheduler, publish_due
from tests.conftest import made_before_the_ceremony_published_lists


def test_scheduler_finds_nothing_due_after_the_ceremony(home: Home) -> None:
    scheduler = RevocationListScheduler(home, interval=0.05)
    scheduler.start()
    time.sleep(0.3)  # several ticks
    scheduler.stop()
    assert scheduler.published == []
    assert home.store.revocation_list_numbers(CRL) == [1]
    assert home.store.revocation_list_numbers(ARL) == [1]


def test_scheduler_publishes_missing_lists_then_only_when_due(home: Home) -> None:
    made_before_the_ceremony_published_lists(home)
    scheduler = RevocationListScheduler(home, interval=0.05)
    scheduler.start()
    deadline = time.monotonic() + 30
    while len(scheduler.published) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # several more ticks: nothing is due any more
    scheduler.stop()
    assert sorted(p.kind for p in scheduler.published) == [ARL, CRL]
    assert home.store.revocation_list_numbers(CRL) == [1]
    assert home.store.revocation_list_numbers(ARL) == [1]
    assert publish_due(home, actor="test") == []
    assert home.store.verify_audit().ok


def test_scheduler_reports_failures_and_keeps_running(home: Home) -> None:
    errors: list[Exception] = []
    made_before_the_ceremony_published_lists(home)
    broken = Home(settings=home.settings, store=home.store, secret=None)  # cannot sign: no key secret
    scheduler = RevocationListScheduler(broken, interval=0.05, on_error=errors.append)
    scheduler.start()
    deadline = time.monotonic() + 10
    while len(errors) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler.stop()
    assert len(errors) >= 2  # it kept ticking after the first failure
    assert home.store.revocation_list(CRL) is None
