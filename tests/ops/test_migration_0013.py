"""Migration 0013 (dated Gateway Connections and Registered User roles) on a database that holds
Parties, on SQLite and on PostgreSQL (``SMKI_TEST_DATABASE_URL``): the undated lists become periods
in force from each Party's registration date, the old columns go, and a downgrade puts back what is
in force; a list that is not one refuses the upgrade and changes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from smki.errors import SmkiError
from smki.store import Store
from smki.store.migrate import _config, upgrade
from smki.store.registry import GATEWAY_CONNECTION, REGISTERED_ROLE
from smki.store.types import UTCDateTime

_OLD_PARTIES = sa.table(
    "parties", sa.column("party_id"), sa.column("name"), sa.column("category"),
    sa.column("registered_user_roles"), sa.column("gateway_connections"), sa.column("created_at", UTCDateTime))
REGISTERED = datetime(2024, 5, 6, 23, 30, tzinfo=UTC)


def _party(party_id: str, gateways: str, roles: str) -> dict[str, Any]:
    return {"party_id": party_id, "name": party_id, "category": "large-supplier", "gateway_connections": gateways,
            "registered_user_roles": roles, "created_at": REGISTERED}


def _columns(store: Store) -> set[str]:
    return {c["name"] for c in sa.inspect(store.engine).get_columns("parties")}


def test_0013_carries_connections_and_roles_over_from_the_registration_date(empty_database_url: str) -> None:
    store = Store.open(empty_database_url)
    try:
        upgrade(store.engine, "0012")
        with store.engine.begin() as conn:
            conn.execute(sa.insert(_OLD_PARTIES), [
                _party("P1", '["GW-2", "GW-1"]', '["import-supplier"]'), _party("P2", "[]", "[]")])
        upgrade(store.engine)

        assert {"gateway_connections", "registered_user_roles"}.isdisjoint(_columns(store))
        p1 = store.registry.require_party("P1")
        assert p1.gateway_connections == ("GW-1", "GW-2") and p1.registered_user_roles == ("import-supplier",)
        assert p1.in_force(GATEWAY_CONNECTION, date(2024, 5, 6)) == ("GW-1", "GW-2")
        assert p1.in_force(GATEWAY_CONNECTION, date(2024, 5, 5)) == ()
        assert p1.in_force(REGISTERED_ROLE, date(2024, 5, 5)) == ()
        history = store.registry.party_history("P1")
        assert {(p.value, p.valid_from, p.valid_until, p.added_by) for p in history} == {
            ("GW-1", date(2024, 5, 6), None, "migration-0013"), ("GW-2", date(2024, 5, 6), None, "migration-0013"),
            ("import-supplier", date(2024, 5, 6), None, "migration-0013")}
        assert all("registration date" in (p.added_reason or "") for p in history)
        assert store.registry.require_party("P2").periods == ()

        # Down again: the lists hold what is in force today (a period ended since is left out).
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE party_periods SET valid_until = :d, removed_by = 'op1' WHERE value = 'GW-2'"),
                         {"d": date(2025, 1, 1)})
        _downgrade(store, "0012")
        assert {"gateway_connections", "registered_user_roles"} <= _columns(store)
        with store.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT party_id, gateway_connections, registered_user_roles FROM parties "
                                        "ORDER BY party_id")).all()
        assert [tuple(r) for r in rows] == [("P1", '["GW-1"]', '["import-supplier"]'), ("P2", "[]", "[]")]
    finally:
        store.close()


def test_0013_refuses_a_list_it_cannot_read_and_changes_nothing(empty_database_url: str) -> None:
    store = Store.open(empty_database_url)
    try:
        upgrade(store.engine, "0012")
        with store.engine.begin() as conn:
            conn.execute(sa.insert(_OLD_PARTIES), [_party("P1", "GW-1, GW-2", "[]")])
        with pytest.raises(SmkiError) as info:
            upgrade(store.engine)
        assert info.value.code == "store.migration-data" and "P1" in info.value.message
        assert store.schema_status().current == "0012"
        assert "gateway_connections" in _columns(store)
    finally:
        store.close()


def test_0013_falls_back_to_the_migration_date_when_the_registration_date_is_unreadable(
        empty_database_url: str) -> None:
    """SQLite stores times as text, which a hand edit can spoil; PostgreSQL's timestamptz cannot be."""
    if not empty_database_url.startswith("sqlite"):
        pytest.skip("only SQLite can hold an unreadable registration time")
    store = Store.open(empty_database_url)
    try:
        upgrade(store.engine, "0012")
        with store.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO parties (party_id, name, category, registered_user_roles, "
                                 "gateway_connections, created_at) VALUES ('P1', 'P1', 'dcc', '[]', '[\"GW-1\"]', "
                                 "'not a time')"))
        upgrade(store.engine)
        (period,) = store.registry.party_history("P1")
        assert period.valid_from == datetime.now(UTC).date() and "migration date" in (period.added_reason or "")
    finally:
        store.close()


def _downgrade(store: Store, revision: str) -> None:
    from alembic import command

    from smki.store.engine import WRITE_OPTION

    with store.engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            cfg = _config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
