"""Run the packaged Alembic migrations programmatically (no alembic.ini, no CLI).

Alembic (with Mako) costs ~0.1 s to import, so the check every command makes ("is the schema
current?") does without it: ``is_current`` reads ``alembic_version`` with one query and compares it
with the head declared by the migration files. Alembic is imported only to migrate, or to say how
an out-of-date schema stands (``SchemaStatus``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from smki.store.engine import WRITE_OPTION

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic narrates at INFO (its plugins, "Context impl SQLiteImpl", each step). Imported eagerly it
# was silenced by the logging set-up that followed; imported lazily (after ``smki serve`` set INFO)
# it would print stray lines before an error. Warnings and errors still show.
logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: pg_advisory_xact_lock key ("smki"): concurrent migrate() calls on PostgreSQL take turns.
_PG_LOCK_KEY = 0x736D6B69
_REVISION = re.compile(r'^revision(?::\s*str)?\s*=\s*["\']([^"\']+)["\']', re.MULTILINE)
_DOWN = re.compile(r'^down_revision(?::[^=]*)?=\s*["\']([^"\']+)["\']', re.MULTILINE)


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest revision shipped with this version of smki."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def revisions() -> list[str]:
    """Every shipped revision, oldest first (tests upgrade from each one)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


@cache
def declared_head() -> str | None:
    """The one head the migration files declare (a revision no other names as its down_revision).

    Read from the files' text, without Alembic; None if that is not exactly one revision (then
    ``is_current`` asks Alembic). ``tests/store/test_migrate_check.py`` checks it equals ``head_revision()``.
    """
    found: set[str] = set()
    downs: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        found.update(_REVISION.findall(source))
        downs.update(_DOWN.findall(source))
    heads = found - downs
    return heads.pop() if len(heads) == 1 else None


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands against this version of smki."""

    current: str | None
    head: str | None

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def known(self) -> bool:
        """False when the database is newer than this smki (a downgrade of smki, not of the schema)."""
        return self.current is None or self.current in revisions()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_current(engine: Engine) -> bool:
    """True when the database is at this smki's head revision: one query, no Alembic.

    False means "ask Alembic" (``SchemaStatus``): never migrated, out of date, newer, or unreachable.
    """
    head = declared_head()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            versions = [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]
    except DBAPIError:  # no alembic_version table yet, or no database: the slow path says which
        return False
    return versions == [head]


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade to ``revision`` in one transaction, serialised against other processes doing the same."""
    from alembic import command

    cfg = _config()
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
