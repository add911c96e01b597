"""The every-command schema check (``is_current``) reads one row and the migration files' text,
without Alembic; it must agree with Alembic about the head and about a database's state."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from smki.store import Store
from smki.store.migrate import current_revision, declared_head, head_revision, is_current


def test_the_declared_head_is_alembics_head() -> None:
    assert declared_head() is not None and declared_head() == head_revision()


def test_is_current_follows_the_database(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert not is_current(store.engine)  # never migrated: no alembic_version table
        store.migrate()
        assert is_current(store.engine) and current_revision(store.engine) == head_revision()
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        assert not is_current(store.engine)
    finally:
        store.close()


def test_a_new_sqlite_database_has_4k_pages_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    """``SQLITE_PAGE_SIZE`` applies to a database made from now on; one made with the 16 KiB pages
    an earlier smki chose keeps them (WAL mode cannot change it) and is still migrated and written,
    with its WAL checkpointed at the same size in bytes."""
    import sqlite3

    from smki.store.engine import SQLITE_PAGE_SIZE

    new = Store.open(f"sqlite:///{tmp_path / 'new.db'}")
    old_path = tmp_path / "old.db"
    made_before = sqlite3.connect(old_path)
    made_before.execute("PRAGMA page_size=16384")
    made_before.execute("PRAGMA journal_mode=WAL")
    made_before.execute("CREATE TABLE before_4k (x INTEGER)")
    made_before.close()
    old = Store.open(f"sqlite:///{old_path}")
    try:
        assert SQLITE_PAGE_SIZE == 4096
        for store, size in ((new, SQLITE_PAGE_SIZE), (old, 16384)):
            store.migrate()
            with store.engine.begin() as conn:
                assert conn.execute(text("PRAGMA page_size")).scalar() == size
                assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 64 * 1024 * 1024 // size
                assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert is_current(store.engine)
    finally:
        new.close()
        old.close()


def test_0011_rewrites_sqlites_certificate_checks_without_in_lists_and_back(tmp_path: Path) -> None:
    """Migration 0011 edits SQLite's schema text in place: the constraints must still refuse what
    they refused (on a table holding rows), and a downgrade must give 0001's text back exactly."""
    import sqlite3

    from alembic import command
    from sqlalchemy.exc import IntegrityError

    from smki.store.engine import WRITE_OPTION
    from smki.store.migrate import _config, upgrade

    store = Store.open(f"sqlite:///{tmp_path / 'x.db'}")

    def schema() -> str:
        with store.engine.connect() as conn:
            return str(conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'certificates'")).scalar())

    def refuses(column: str, value: str) -> bool:
        try:
            with store.engine.begin() as conn:
                conn.execute(text(f"UPDATE certificates SET {column} = :v WHERE serial = 'ab'"), {"v": value})
        except IntegrityError:
            return True
        return False

    try:
        upgrade(store.engine, "0010")
        made_by_0001 = schema()
        assert "status IN ('P', 'I', 'N', 'E', 'R')" in made_by_0001
        with store.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO certificates (serial, kind, usage, issuer_key_id, device_id, status, not_before, "
                "not_after, der, issued_at, changed_at) VALUES ('ab', 'device', 'DS', 'k', x'00db000000000001', "
                "'I', '2026-01-01', '2027-01-01', x'30', '2026-01-01', '2026-01-01')"))
        upgrade(store.engine)
        assert " IN (" not in schema()
        assert refuses("status", "X") and refuses("usage", "XX") and refuses("status", "i")
        assert not refuses("status", "R") and not refuses("usage", "KA")
        with store.engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                cfg = _config()
                cfg.attributes["connection"] = conn
                command.downgrade(cfg, "0010")
        assert schema() == made_by_0001
        assert refuses("status", "X") and refuses("usage", "XX")
    finally:
        store.close()
    checked = sqlite3.connect(tmp_path / "x.db")
    assert checked.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    checked.close()
