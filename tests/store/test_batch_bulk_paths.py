"""PostgreSQL's bulk paths for batch items give the same rows as the general path (issue 15).

A batch's CSRs go in with ``COPY`` and its outcomes are recorded with one ``unnest`` UPDATE per kind
on PostgreSQL; SQLite (and the general path) use ``executemany``. Hypothesis draws batches and
outcome sets (issued, refused, repeated, out of order, some for items already decided) and both
ways must leave the same items and the same counters. The bulk paths are PostgreSQL's own SQL, so
this runs in the PostgreSQL lane (``SMKI_TEST_DATABASE_URL``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.audit import AuditEvent
from smki.store import Store
from smki.store.batches import NewItem, _add_items, _record_outcomes, batch_reads, batch_writes

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def _job(store: Store, items: list[NewItem], *, copy: bool) -> int:
    with store.transaction() as tx:
        job_id = batch_writes(tx).add_job(ref=f"r-{copy}-{id(items)}-{datetime.now(UTC).timestamp()}", party_id="P1",
                                          aro_id="A1", system=None, route="gateway", interface="json",
                                          client_ref="c", status="PENDING", items=[], now=NOW,
                                          expires_at=NOW + timedelta(days=30))
        _add_items(tx._conn, job_id, items, copy=copy)
        tx.append_audit([AuditEvent("test", "batch.accepted", str(job_id))])
    return job_id


def _state(store: Store, job_id: int) -> tuple[object, ...]:
    reads = batch_reads(store)
    job = reads.job(job_id)
    assert job is not None
    items = [(i.idx, i.item_id, i.csr, i.outcome, i.serial, i.error_code, i.error_text)
             for i in reads.iter_items(job_id)]
    return items, job.processed, job.issued, job.rejected


_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=12)
_items = st.lists(st.tuples(_text, st.binary(min_size=1, max_size=40)), min_size=1, max_size=12)
#: Serials as the workers make them, and (rarely) text that the array literal of the set-based path
#: cannot carry, which must take the list instead: an element that would read as NULL, split, or quote.
_serials = (st.text("0123456789abcdefABCDEF", min_size=32, max_size=32)
            | st.sampled_from(["NULL", "null", "a,b", "", '"x"', "{}", "zz", "a b", "\\"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=_items, data=st.data())
def test_copy_and_set_based_outcomes_match_the_general_path(store: Store, items: list[tuple[str, bytes]],
                                                            data: st.DataObject) -> None:
    if store.dialect != "postgresql":
        pytest.skip("COPY and unnest are PostgreSQL's; SQLite always takes the general path")
    rows = [(i, item_id, csr) for i, (item_id, csr) in enumerate(items)]
    indexes = st.integers(0, len(rows) - 1)
    rounds = data.draw(st.lists(st.tuples(
        st.lists(st.tuples(indexes, _serials), max_size=6,
                 unique_by=lambda t: t[0]),
        st.lists(st.tuples(indexes, st.sampled_from(["csr.malformed", "csr.device-limit"]), _text), max_size=6,
                 unique_by=lambda t: t[0])), min_size=1, max_size=3))
    states = []
    for bulk in (False, True):
        job_id = _job(store, rows, copy=bulk)
        for issued, refused in rounds:
            with store.transaction() as tx:
                _record_outcomes(tx._conn, job_id, None, issued, refused, NOW, set_based=bulk)
        states.append(_state(store, job_id))
    assert states[0] == states[1]
    items_state = states[0][0]
    assert [row[:3] for row in items_state] == [tuple(r) for r in rows]  # type: ignore[union-attr]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(1, 30), data=st.data())
def test_pending_items_and_result_rows_read_by_index_range(store: Store, count: int, data: st.DataObject) -> None:
    """``pending_items`` and ``iter_result_rows`` read a range of indices at a time (so PostgreSQL
    never sorts the whole rest of a batch per page): paged either way they must give exactly the
    items a plain filter gives — every undecided item after ``after``, in order, ``limit`` at a time,
    however the decided ones (a resumed batch) are spread."""
    rows: list[NewItem] = [(i, f"id-{i}", bytes([i % 256]) * 3) for i in range(count)]
    job_id = _job(store, rows, copy=store.dialect == "postgresql")
    decided = data.draw(st.sets(st.integers(0, count - 1)))
    with store.transaction() as tx:
        _record_outcomes(tx._conn, job_id, None, [(i, f"{i:032x}") for i in sorted(decided)], [], NOW)
    limit = data.draw(st.integers(1, 8))
    reads = batch_reads(store)
    pages, after = [], data.draw(st.integers(-1, count))
    start = after
    while page := reads.pending_items(job_id, after=after, limit=limit):
        assert len(page) <= limit
        pages.append(page)
        after = page[-1][0]
    undecided = [(idx, item_id, csr) for idx, item_id, csr in rows if idx > start and idx not in decided]
    assert [item for page in pages for item in page] == undecided
    assert all(len(page) == limit for page in pages[:-1])  # only the last page may be short
    results = list(reads.iter_result_rows(job_id, page=limit))
    assert [(r.idx, r.item_id, r.outcome) for r in results] == [
        (idx, item_id, "ok" if idx in decided else None) for idx, item_id, _csr in rows]


_COLUMNS = ("kind", "usage", "issuer_key_id", "device_id", "entity_id", "role", "status", "not_before", "not_after",
            "der", "issued_at", "batch_id", "changed_at")


def _stored(store: Store, serial: str) -> tuple[object, ...]:
    from smki.store.driver import driver_rows

    rows = driver_rows(store.engine, f"SELECT {', '.join(_COLUMNS)} FROM certificates WHERE serial = ?", (serial,))
    assert len(rows) == 1
    return tuple(rows[0])


_times = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(usage=st.sampled_from(["DS", "KA"]), status=st.sampled_from(["I", "N"]), times=st.tuples(_times, _times, _times),
       der=st.binary(min_size=1, max_size=300), batch=st.none() | _text, driver_times=st.booleans())
def test_one_certificate_inserted_plainly_is_stored_as_a_copy_stores_it(
        store: Store, usage: str, status: str, times: tuple[datetime, datetime, datetime], der: bytes,
        batch: str | None, driver_times: bool) -> None:
    """One certificate (an Ad Hoc or JSON request) goes in with a plain INSERT on PostgreSQL, a batch's
    with COPY: the same row either way, and a repeated serial refused with the same code."""
    if store.dialect != "postgresql":
        pytest.skip("COPY is PostgreSQL's; SQLite always inserts")
    from smki.errors import SmkiError

    not_before, not_after, issued = times
    stamp = time.time_ns() // 1000
    devices = [(stamp * 4 + n).to_bytes(8, "big") for n in range(4)]  # new Devices: no in-use clash

    def row(serial: str, device: bytes, when: Callable[[datetime], object]) -> tuple[object, ...]:
        return (serial, "device", usage, "k" * 40, device, None, None, status, when(not_before), when(not_after), der,
                when(issued), batch, when(issued))

    plain, copied, other = f"a{stamp}", f"b{stamp}", f"c{stamp}"
    with store.transaction() as tx:
        when = tx.driver_time if driver_times else _as_given
        tx.copy_certificates([row(plain, devices[0], when)], count=1, driver_times=driver_times)
        tx.copy_certificates([row(copied, devices[1], when), row(other, devices[2], when)], count=2,
                             driver_times=driver_times)
        tx.append_audit([AuditEvent("test", "test.certificates", plain)])
    ours, theirs = _stored(store, plain), _stored(store, copied)
    assert ours[:3] + ours[4:] == theirs[:3] + theirs[4:]  # all but the Device ID, which differs on purpose
    assert (ours[3], theirs[3]) == (devices[0], devices[1])
    for rows in ([row(plain, devices[3], _as_given)],
                 [row(copied, devices[3], _as_given), row(f"d{stamp}", devices[3][::-1], _as_given)]):
        with pytest.raises(SmkiError) as refused, store.transaction() as tx:
            tx.copy_certificates(rows, count=len(rows))
            tx.append_audit([AuditEvent("test", "test.certificates", plain)])
        assert refused.value.code == "store.duplicate-serial"


def _as_given(value: datetime) -> object:
    return value


def test_recording_outcomes_keeps_each_item_on_its_page(store: Store) -> None:
    """Migration 0012 leaves half of each batch-items page free (PostgreSQL): a row's outcome version
    then fits beside the old one, a heap-only update that adds no index entry. Read from the rows'
    own addresses: every item's ``ctid`` block is the same before and after its outcome, for a batch
    whose items fill many pages (each ~400 bytes, as a Device CSR is)."""
    if store.dialect != "postgresql":
        pytest.skip("fillfactor and ctid are PostgreSQL's")
    from sqlalchemy import text

    rows = [(i, f"item-{i:05d}", bytes([i % 251]) * 400) for i in range(600)]
    job_id = _job(store, rows, copy=True)

    def blocks() -> list[int]:
        with store.engine.connect() as conn:
            return [int(str(ctid).strip("()").split(",")[0]) for ctid in conn.execute(text(
                "SELECT ctid FROM batch_items WHERE batch_id = :j ORDER BY idx"), {"j": job_id}).scalars()]

    before = blocks()
    assert len(set(before)) > 20  # many pages, each loaded only half full
    for start in range(0, len(rows), 200):  # as the runner commits: a chunk at a time
        with store.transaction() as tx:
            _record_outcomes(tx._conn, job_id, None, [(i, f"{i:032x}") for i in range(start, start + 150)],
                             [(i, "csr.malformed", "x") for i in range(start + 150, start + 200)], NOW)
    assert blocks() == before
    assert _state(store, job_id)[1:] == (600, 450, 150)
