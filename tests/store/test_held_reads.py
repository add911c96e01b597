"""One request's reads on one held connection (``store.held_reads``) read exactly what reads on
connections of their own read — every write committed before a read included — with one checkout."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, text

from smki.audit import AuditEvent
from smki.store import Store
from smki.store.reads import holding, read_connection

PARTY, ARO, STAFF = "P1", "A1", "S1"


def _setup(store: Store) -> None:
    with store.transaction() as tx:
        if store.registry.party(PARTY) is None:
            tx.registry.add_party(PARTY, "Party One", "large-supplier")
            tx.registry.add_aro(ARO, PARTY, "Ann", "SRO")
            tx.registry.add_staff(STAFF, "Sam", ["ra-operator"])
        tx.append_audit([AuditEvent("test", "test.setup", PARTY)])


def _reads(store: Store) -> tuple[Any, ...]:
    return (store.registry.party(PARTY), store.registry.aro(ARO), store.registry.staff(STAFF),
            store.registry.party("nobody"), store.count_device_certificates(b"\x00" * 8))


def _general(store: Store) -> tuple[Any, ...]:
    """The same reads in a fresh context: no held connection, a checkout each."""
    return contextvars.Context().run(_reads, store)


def _toggle_role(tx: Any) -> None:
    """Start the Party's Registered User role, or end it if it is held."""
    held = any(p.valid_until is None for p in tx.registry.held_periods(PARTY))
    write = tx.registry.end_period if held else tx.registry.start_period
    write(PARTY, "registered-role", "import-supplier", on=date(2020, 1, 1), by=STAFF)


WRITES: list[Callable[[Any], None]] = [
    _toggle_role,
    lambda tx: tx.registry.update_party(PARTY, srept_passed=date(2020, 1, 1)),
    lambda tx: tx.registry.set_subscription(PARTY, "device", "approved"),
    lambda tx: tx.registry.set_subscription(PARTY, "device", "suspended"),
    lambda tx: tx.registry.update_aro(ARO, status="suspended"),
    lambda tx: tx.registry.update_aro(ARO, status="active"),
]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.sampled_from(range(len(WRITES))), max_size=6))
def test_held_reads_see_what_fresh_connections_see_after_every_write(store: Store, steps: list[int]) -> None:
    _setup(store)
    with store.held_reads():
        assert holding(store.engine)
        assert _reads(store) == _general(store)
        for step in steps:
            with store.transaction() as tx:  # a write on its own connection, committed
                WRITES[step](tx)
                tx.append_audit([AuditEvent("test", "test.write", PARTY)])
            assert _reads(store) == _general(store)
    assert not holding(store.engine)


def test_a_request_s_reads_take_one_checkout(store: Store) -> None:
    _setup(store)
    checkouts: list[object] = []
    event.listen(store.engine, "checkout", lambda *_args: checkouts.append(1))
    with store.held_reads():
        for _ in range(3):
            _reads(store)
        with store.held_reads():  # re-entrant: nothing more
            _reads(store)
    assert len(checkouts) == 1
    _reads(store)
    assert len(checkouts) == 1 + 5  # outside: a checkout per read, as before


def test_a_read_inside_a_read_gets_a_connection_of_its_own(store: Store) -> None:
    _setup(store)
    with store.held_reads(), read_connection(store.engine) as outer:
        rows = outer.execute(text("SELECT party_id FROM parties"))
        with read_connection(store.engine) as inner:
            assert inner is not outer
            assert store.registry.aro(ARO) is not None
        assert [r[0] for r in rows] == [PARTY]


def test_a_held_connection_ends_each_read_s_transaction(store: Store) -> None:
    _setup(store)
    with store.held_reads():
        with read_connection(store.engine) as conn:
            conn.execute(text("SELECT 1"))
            held = conn
        assert not held.in_transaction()
        store.registry.party(PARTY)
        assert not held.in_transaction()


def test_reads_keep_the_connection_s_prepared_statements(store: Store) -> None:
    """On PostgreSQL a read ends without a ROLLBACK, at which psycopg would drop every statement it
    has prepared on the connection: a pooled connection's statements stay prepared however many
    reads, held or not, come and go (the batch runner's poll, a readiness probe, a page)."""
    if store.dialect != "postgresql":
        pytest.skip("psycopg's prepared statements are PostgreSQL's")
    from smki.store.batches import batch_reads

    _setup(store)
    for _ in range(14):  # psycopg prepares a statement at its sixth use on a connection (of the two in turn)
        _reads(store)
        batch_reads(store).job(1)
        store.ping()
        with store.held_reads():
            _reads(store)
    pooled = [store.engine.connect() for _ in range(store.engine.pool.checkedin())]  # type: ignore[attr-defined]
    try:
        prepared = {s for conn in pooled
                    for s in conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars()}
    finally:
        for conn in pooled:
            conn.close()
    tables = {word for s in prepared for word in s.split() if word in ("parties", "aros", "batch_jobs", "staff")}
    assert tables == {"parties", "aros", "batch_jobs", "staff"}, prepared


def test_a_batch_s_statements_are_never_prepared_a_single_csr_s_are(store: Store) -> None:
    """A statement carrying ``PLANNED_WITH_ITS_VALUES`` (a batch's packed look-ups and its outcomes'
    ``unnest`` updates) is planned with its values at every execution: prepared, PostgreSQL would
    after five executions plan it without them, and chose scans. A single CSR's look-up, of one
    value, is prepared at its second use."""
    if store.dialect != "postgresql":
        pytest.skip("psycopg's prepared statements are PostgreSQL's")
    from smki.store.driver import pg_fixed_width_any

    devices = [(0x00DB000000000000 + n).to_bytes(8, "big") for n in range(5)]
    with read_connection(store.engine) as conn:
        for _ in range(12):
            for values in (devices, devices[:1]):  # the batch's packed form, then one Device's plain one
                any_of, params = pg_fixed_width_any(values, 8)  # type: ignore[misc]
                conn.exec_driver_sql(f"SELECT count(*) FROM certificates WHERE device_id = {any_of}", params).all()
        prepared = conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars().all()
    assert not [s for s in prepared if "generate_series" in s], prepared
    assert [s for s in prepared if "device_id = ($1)" in s], prepared
