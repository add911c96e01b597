"""The array literals the batch writer sends PostgreSQL instead of lists (``smki.store.driver``):
the server must read back exactly the values given, and a value the literal cannot carry as it is
(one that would read as NULL, split in two, or need quoting) must be refused, so that the caller
passes the list."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.store import Store
from smki.store.driver import pg_hex_array, pg_int_array, use_c_bytea_dumper

_HEX = "0123456789abcdefABCDEF"


def test_a_value_the_literal_cannot_carry_is_refused() -> None:
    for values in ([], [""], ["NULL"], ["a,b"], ["ab", "c d"], ['"1"'], ["{}"], ["0a", "g"]):
        assert pg_hex_array(values) is None, values
    assert pg_hex_array(["0a", "FF"]) == "{0a,FF}"
    assert pg_int_array([0, -3, 12]) == "{0,-3,12}"


@pytest.fixture
def raw(store: Store):  # type: ignore[no-untyped-def]
    if store.dialect != "postgresql":
        pytest.skip("array literals and COPY dumpers are PostgreSQL's")
    with store.engine.connect() as conn:
        yield conn.connection.driver_connection


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ints=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=50),
       texts=st.lists(st.text(_HEX, min_size=1, max_size=32) | st.text(max_size=8), min_size=1, max_size=50))
def test_the_server_reads_back_what_was_given(raw, ints: list[int], texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    literal = pg_hex_array(texts)
    if literal is None:  # the caller sends the list: that must be because a value is not plain hex
        assert any(not value or any(c not in _HEX for c in value) for value in texts)
        return
    got = raw.execute("SELECT %s::integer[], %s::varchar[]", (pg_int_array(ints), literal)).fetchone()
    assert got == (ints, texts)


def test_the_c_bytea_dumper_is_the_cursors_own(raw) -> None:  # type: ignore[no-untyped-def]
    import psycopg
    from psycopg.pq import Format

    oid = raw.adapters.types["bytea"].oid
    before = raw.adapters.get_dumper_by_oid(oid, Format.BINARY)
    with raw.cursor() as cursor:
        use_c_bytea_dumper(cursor)
        chosen = cursor.adapters.get_dumper_by_oid(oid, Format.BINARY)
        assert chosen is not before
        if psycopg.pq.__impl__ in ("binary", "c"):  # psycopg's C extension is loaded: its dumper it is
            assert chosen.__module__.endswith("_psycopg"), chosen
        cursor.execute("CREATE TEMPORARY TABLE copied (b bytea)")
        values = [b"", b"\x00\xff" * 300, bytes(range(256))]
        with cursor.copy("COPY copied (b) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["bytea"])
            for value in values:
                copy.write_row((value,))
        cursor.execute("SELECT b FROM copied")
        assert [bytes(row[0]) for row in cursor.fetchall()] == values
    assert raw.adapters.get_dumper_by_oid(oid, Format.BINARY) is before  # the connection's own is unchanged
    raw.rollback()
