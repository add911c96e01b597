"""Checking passes started ahead of the batch that asks for them (``SigningPool.check_ahead``, the
batch runner's head start): taken by the chunks that hold exactly their items, in order, and
otherwise dropped — and whichever way a chunk's check came, its answer is the general path's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.ca.devcsr import device_csr_stream
from smki.services import device_issuance
from smki.services.context import Home
from smki.services.device_issuance import SigningPool
from tests.conftest import ca_home, checks_started

SECRET = b"check-ahead-test-passphrase"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    with ca_home(tmp_path, "", SECRET) as opened:
        yield opened


@pytest.fixture
def pool(home: Home) -> Iterator[SigningPool]:
    with SigningPool.for_home(home, workers=1) as warm:
        warm.warm()
        yield warm


def _chunk(first: int, count: int, tag: str = "c") -> list[Any]:
    return [(first + n, f"{tag}{first + n}", der)
            for n, (_d, _u, der) in enumerate(device_csr_stream(count, first_device=0x00DB770000000000 + first))]


def test_chunks_checked_ahead_are_taken_in_order_by_the_same_items(pool: SigningPool,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = _chunk(0, 3), _chunk(3, 3)
    started = checks_started(pool, monkeypatch)
    pool.check_ahead([first, second])
    assert len(started) == 2
    assert [entry[:2] for entry in pool.check(list(first)).result()] == [(0, "c0"), (1, "c1"), (2, "c2")]
    pool.check(list(second)).result()
    assert len(started) == 2  # both taken, none started again
    pool.check(first).result()
    assert len(started) == 3  # taken once only


def test_a_chunk_with_other_items_drops_the_head_start(pool: SigningPool, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, other = _chunk(0, 3), _chunk(3, 3), _chunk(10, 3)
    started = checks_started(pool, monkeypatch)
    pool.check_ahead([first, second])
    pool.check(other).result()  # another batch ran first
    pool.check(first).result()
    pool.check(second).result()
    assert len(started) == 5  # two ahead (dropped), then each chunk checked anew
    pool.check_ahead([first])
    pool.check_ahead([second])  # a new head start replaces the last
    pool.check(first).result()
    assert len(started) == 8


def test_an_old_head_start_is_not_taken_and_is_dropped(pool: SigningPool, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _chunk(0, 2)
    started = checks_started(pool, monkeypatch)
    pool.check_ahead([first])
    pool.drop_old_checks()  # still fresh: kept
    assert len(pool._ahead) == 1
    monkeypatch.setattr(device_issuance, "CHECK_AHEAD_SECONDS", 0.0)
    pool.check(first).result()
    assert len(started) == 2
    pool.check_ahead([first])
    pool.drop_old_checks()
    assert not pool._ahead


ITEMS = [*_chunk(0, 6), (6, "junk", b"not a CSR"), (7, "empty", b""), (8, "same-device", _chunk(0, 1)[0][2])]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ahead=st.lists(st.lists(st.sampled_from(ITEMS), min_size=1, max_size=4), max_size=3),
       asked=st.lists(st.lists(st.sampled_from(ITEMS), min_size=1, max_size=4), min_size=1, max_size=4),
       take=st.lists(st.booleans(), min_size=4, max_size=4))
def test_a_check_taken_ahead_answers_as_a_new_one(home: Home, pool: SigningPool, ahead: list[list[Any]],
                                                  asked: list[list[Any]], take: list[bool]) -> None:
    """Whatever was started ahead and whatever is then asked (the chunks ahead themselves, in
    order, or others), each answer is ``_check_items``' for the chunk asked, in this process."""
    factory = device_issuance._make_factory(home.settings, SECRET, SigningPool.issuer_der_of(home))
    pool.check_ahead([list(chunk) for chunk in ahead])
    wanted = [list(ahead[n]) if take[n] and n < len(ahead) else list(chunk) for n, chunk in enumerate(asked)]
    for chunk in wanted:
        assert pool.check(chunk).result() == device_issuance._check_items(factory, chunk)
