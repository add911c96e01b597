"""``driver.read_ahead``: the pages of a result in order, at most one read ahead of the caller."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smki.store.driver import read_ahead


def _ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("smki-read-ahead")]


@given(st.lists(st.integers(), max_size=12), st.data())
def test_pages_come_in_order_and_at_most_one_ahead(keys: list[int], data: st.DataObject) -> None:
    fetched: list[int] = []

    def fetch(key: int) -> tuple[int, str]:
        fetched.append(key)
        return key, threading.current_thread().name

    got = []
    for taken, (key, thread) in enumerate(read_ahead(fetch, keys), start=1):
        assert len(fetched) <= taken + 1  # the caller holds page `taken`; one more may be under way
        assert thread.startswith("smki-read-ahead")  # never in the caller's thread
        got.append(key)
    assert got == keys and fetched == keys
    stop = data.draw(st.integers(0, len(keys)))
    early = read_ahead(fetch, keys)
    for _ in range(stop):
        next(early)
    early.close()  # a client that went away: the read under way is waited for, no thread is left
    assert not _ahead_threads()


def test_a_failed_read_reaches_the_caller_in_its_place() -> None:
    def fetch(key: int) -> int:
        if key == 3:
            raise RuntimeError("the database went away")
        return key

    pages = read_ahead(fetch, [1, 2, 3, 4])
    assert [next(pages), next(pages)] == [1, 2]
    with pytest.raises(RuntimeError, match="went away"):
        next(pages)
    assert not _ahead_threads()
