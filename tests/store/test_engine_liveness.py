"""PostgreSQL connections are checked for liveness without a round trip per checkout: a connection
in use a moment ago is handed out as it is, one idle for a while is pinged, and one the server has
ended is replaced without the caller seeing an error."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from smki.store import engine as engines


@pytest.fixture
def pg_url(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("the liveness check is PostgreSQL's (SQLite has no server to lose)")
    return database_url


def test_a_busy_pool_does_not_ping_and_an_idle_connection_is_pinged(pg_url: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engines.create_store_engine(pg_url)
    pings: list[object] = []
    real = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(conn) or real(conn))
    try:
        for _ in range(10):
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar_one() == 1
        assert pings == []
        monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 0.0)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert len(pings) == 1
    finally:
        engine.dispose()


def test_a_connection_the_server_ended_is_replaced(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engines.create_store_engine(pg_url)
    other = engines.create_store_engine(pg_url)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with other.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            conn.commit()
        monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 0.0)
        with engine.connect() as conn:  # the pooled connection is dead: pinged, discarded, replaced
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        engine.dispose()
        other.dispose()
