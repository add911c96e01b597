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
