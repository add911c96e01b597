"""PostgreSQL's bulk paths for batch items give the same rows as the general path (issue 15).

A batch's CSRs go in with ``COPY`` and its outcomes are recorded with one ``unnest`` UPDATE per kind
on PostgreSQL; SQLite (and the general path) use ``executemany``. Hypothesis draws batches and
outcome sets (issued, refused, repeated, out of order, some for items already decided) and both
ways must leave the same items and the same counters. The bulk paths are PostgreSQL's own SQL, so
this runs in the PostgreSQL lane (``SMKI_TEST_DATABASE_URL``).
"""

from __future__ import annotations

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


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=_items, data=st.data())
def test_copy_and_set_based_outcomes_match_the_general_path(store: Store, items: list[tuple[str, bytes]],
                                                            data: st.DataObject) -> None:
    if store.dialect != "postgresql":
        pytest.skip("COPY and unnest are PostgreSQL's; SQLite always takes the general path")
    rows = [(i, item_id, csr) for i, (item_id, csr) in enumerate(items)]
    indexes = st.integers(0, len(rows) - 1)
    rounds = data.draw(st.lists(st.tuples(
        st.lists(st.tuples(indexes, st.text("0123456789abcdef", min_size=32, max_size=32)), max_size=6,
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
