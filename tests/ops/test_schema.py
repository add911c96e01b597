"""Version and schema (issue 12, point 3): ``--version``, ``db status|upgrade``, and no silent migration.

The upgrade test walks every revision shipped in Alembic's script directory, so a later migration
is covered the day it is added: the database is brought to that revision, every table it has gets
a row (values made from the reflected column types, foreign keys pointing at the parent's row),
then ``smki db upgrade`` runs. Every row must still be there, the audit chain must verify, and the
CLI must work on the upgraded database.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from smki import __version__
from smki.store import Store
from smki.store.migrate import head_revision, revisions, upgrade
from tests.cli.helpers import smki, smki_env

#: Columns whose CHECK constraints (or whose format, read by a later migration) a generic value would break.
CHECKED_VALUES = {
    ("certificates", "status"): "I",
    ("certificates", "usage"): "DS",
    ("revocation_lists", "kind"): "CRL",
    ("credentials", "status"): "active",
    ("parties", "gateway_connections"): '["GW-7"]',
    ("parties", "registered_user_roles"): '["import-supplier"]',
    ("party_periods", "kind"): "gateway-connection",
}
#: Tables a migration fills itself (the audit chain's head is one row, made by the first migration).
SKIPPED_TABLES = {"alembic_version", "audit_head", "audit_log"}


def _value(table: sa.Table, column: sa.Column[Any], n: int) -> Any:
    if (table.name, column.name) in CHECKED_VALUES:
        return CHECKED_VALUES[(table.name, column.name)]
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return True
    if isinstance(kind, sa.DateTime):
        return dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    if isinstance(kind, sa.Date):
        return dt.date(2026, 1, 2)
    if isinstance(kind, sa.Integer):
        return n
    if isinstance(kind, sa.Float | sa.Numeric):
        return float(n)
    if isinstance(kind, sa.LargeBinary) or str(kind) in ("BLOB", "BYTEA"):
        return bytes([n % 256]) * 8
    if "JSON" in str(kind):
        return "{}"
    length = getattr(kind, "length", None) or 32
    return f"v{n}-{column.name}"[:length]


def fill_every_table(engine: sa.Engine) -> dict[str, int]:
    """One row in every table of the schema as it is now; returns the row count of each table."""
    meta = sa.MetaData()
    meta.reflect(engine)
    counts: dict[str, int] = {}
    inserted: dict[str, dict[str, Any]] = {}
    with engine.begin() as conn:
        for n, table in enumerate(meta.sorted_tables, start=7):
            if table.name in SKIPPED_TABLES:
                continue
            row: dict[str, Any] = {}
            for column in table.columns:
                fks = list(column.foreign_keys)
                if fks:
                    parent = fks[0].column
                    row[column.name] = inserted[parent.table.name][parent.name]
                elif column.primary_key and isinstance(column.type, sa.Integer) and column.autoincrement is not False:
                    row[column.name] = n
                else:
                    row[column.name] = _value(table, column, n)
            conn.execute(table.insert().values(**row))
            inserted[table.name] = row
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            counts[table.name] = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    return counts


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.mark.parametrize("revision", revisions()[:-1])
def test_upgrade_from_each_earlier_revision_keeps_the_data(tmp_path: Path, empty_database_url: str,
                                                          revision: str) -> None:
    store = Store.open(empty_database_url)
    upgrade(store.engine, revision)
    counts = fill_every_table(store.engine)
    store.close()
    env = smki_env(empty_database_url)
    home = _home(tmp_path)

    refused = smki(["audit", "verify", "--home", str(home)], env)
    assert refused.code == 1
    assert refused.err.strip().splitlines() == [
        f"error: store.schema-outdated: the database schema is at {revision}, this smki needs {head_revision()}: "
        "run 'smki db upgrade'"]
    status = smki(["db", "status", "--home", str(home)], env)
    assert status.code == 1 and f"schema: {revision} " in status.out and "run 'smki db upgrade'" in status.out

    upgraded = smki(["db", "upgrade", "--home", str(home)], env)
    assert upgraded.code == 0, upgraded.err
    assert f"upgraded {revision} -> {head_revision()}" in upgraded.out

    store = Store.open(empty_database_url)
    try:
        assert store.schema_status().up_to_date
        with store.engine.connect() as conn:
            for table, count in counts.items():
                if table in SKIPPED_TABLES:
                    continue
                assert conn.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one() == count, table
        tail = store.audit_tail(1)
        assert tail[-1].action == "store.schema-upgrade"
    finally:
        store.close()
    assert smki(["audit", "verify", "--home", str(home)], env).code == 0
    assert smki(["db", "status", "--home", str(home)], env).code == 0
    again = smki(["db", "upgrade", "--home", str(home)], env)
    assert again.code == 0 and "already current" in again.out


def test_no_command_but_ca_init_and_db_upgrade_migrates(tmp_path: Path, empty_database_url: str) -> None:
    env = smki_env(empty_database_url)
    home = _home(tmp_path)
    for args in (["audit", "verify"], ["staff", "list"], ["cert", "search"], ["crl", "show"], ["serve"]):
        result = smki([*args, "--home", str(home)], env)
        assert result.code == 1, args
        assert "store.not-initialised" in result.err and result.err.count("\n") == 1, (args, result.err)
    store = Store.open(empty_database_url)
    try:
        assert store.schema_status().current is None  # nothing was created behind the operator's back
    finally:
        store.close()
    assert smki(["ca", "init", "--home", str(home)], env).code == 0
    assert smki(["audit", "verify", "--home", str(home)], env).code == 0


def test_a_schema_newer_than_this_smki_is_not_called_out_of_date(tmp_path: Path, empty_database_url: str) -> None:
    """``db status`` said "out of date: run 'smki db upgrade'" of a schema a newer smki made, and
    ``db upgrade`` then refused it (found by an exploratory run)."""
    env = smki_env(empty_database_url)
    home = _home(tmp_path)
    assert smki(["ca", "init", "--home", str(home)], env).code == 0
    store = Store.open(empty_database_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        store.close()
    status = smki(["db", "status", "--home", str(home)], env)
    assert status.code == 1 and "schema: 9999 " in status.out and "unknown to this smki" in status.out
    assert "db upgrade" not in status.out
    upgrade = smki(["db", "upgrade", "--home", str(home)], env)
    assert upgrade.code == 1 and upgrade.err.startswith("error: store.schema-unknown: ")


def test_version_names_the_package_and_the_schema(tmp_path: Path, empty_database_url: str) -> None:
    result = smki(["--version"], smki_env(empty_database_url))
    assert result.code == 0
    assert result.out.strip() == f"smki {__version__} (schema {head_revision()})"


def test_revisions_are_a_single_chain_ending_at_head() -> None:
    chain = revisions()
    assert chain[0] == "0001" and chain[-1] == head_revision()
    assert len(set(chain)) == len(chain)


def test_ca_init_on_another_home_s_older_store_changes_nothing(tmp_path: Path, empty_database_url: str) -> None:
    """A key ceremony given another home's database one release behind migrated it (unaudited: every
    old node then found a newer schema) and only then refused, naming a home that did not exist
    (found by an exploratory run)."""
    env = smki_env(empty_database_url)
    first = _home(tmp_path)
    assert smki(["ca", "init", "--home", str(first)], env).code == 0
    store = Store.open(empty_database_url)
    older = revisions()[-2]
    try:
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": older})
        before = len(store.audit_tail(1000))
    finally:
        store.close()
    second = tmp_path / "second"
    refused = smki(["ca", "init", "--home", str(second)], env)
    assert refused.code == 1 and refused.err.startswith("error: ca.exists: the database already holds an smki store")
    assert not second.exists()
    store = Store.open(empty_database_url)
    try:
        assert store.schema_status().current == older and len(store.audit_tail(1000)) == before
    finally:
        store.close()
