"""Fixtures shared by the whole suite: a fresh database per test, on SQLite or PostgreSQL.

``SMKI_TEST_DATABASE_URL`` (set by ``scripts/with-postgres.sh``) selects PostgreSQL: each test then
gets its own database, cloned from a migrated template made once per test worker, so tests never
see each other's rows and the suite runs the same on both engines.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from smki.services.context import Home
from smki.store import Store

if TYPE_CHECKING:
    from smki.services.device_issuance import SigningPool

ADMIN_URL = os.environ.get("SMKI_TEST_DATABASE_URL", "")


def _admin_execute(statement: str) -> None:
    engine = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def _url_for(name: str) -> str:
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _pg_template(worker_id: str) -> Iterator[str | None]:
    if not ADMIN_URL:
        yield None
        return
    name = f"smki_tpl_{worker_id}_{uuid.uuid4().hex[:8]}"
    _admin_execute(f'CREATE DATABASE "{name}"')
    store = Store.open(_url_for(name))
    store.migrate()
    store.close()
    yield name
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(tmp_path: Path, _pg_template: str | None) -> Iterator[str]:
    """A URL of an empty, migrated database that only this test uses."""
    if _pg_template is None:
        path = tmp_path / "smki.db"
        store = Store.open(f"sqlite:///{path}")
        store.migrate()
        store.close()
        yield f"sqlite:///{path}"
        return
    name = f"smki_t_{uuid.uuid4().hex[:12]}"
    _admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{_pg_template}"')
    try:
        yield _url_for(name)
    finally:
        _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store.open(database_url)
    try:
        yield opened
    finally:
        opened.close()


@contextmanager
def ca_home(tmp_path: Path, database_url: str, secret: bytes, *, actor: str = "test") -> Iterator[Home]:
    """A home with a CA hierarchy (the key ceremony run for this test), opened and closed after."""
    from smki.config import Settings
    from smki.services.ca_admin import initialise_ca
    from smki.services.context import open_home

    settings = Settings(home=tmp_path / "home", database_url=database_url)
    initialise_ca(settings, secret, actor=actor)
    opened = open_home(settings.home, secret)
    try:
        yield opened
    finally:
        opened.close()


def made_before_the_ceremony_published_lists(home: Home) -> None:
    """Make ``home`` what an earlier smki's ``ca init`` left: a hierarchy and no CRL or ARL yet (the
    ceremony publishes the first ones now). A server started on such a home still publishes them."""
    import shutil

    from sqlalchemy import delete

    from smki.store.models import revocation_lists

    with home.store.engine.begin() as connection:
        connection.execute(delete(revocation_lists))
    shutil.rmtree(home.settings.home / "crl")


def checks_started(pool: SigningPool, monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """Every checking pass ``pool``'s processes are asked for from now on, as the chunk it was given
    (by ``check`` or ``check_ahead``; a check taken from those started ahead starts none)."""
    from smki.services import device_issuance

    started: list[list[Any]] = []
    submit = pool._executor.submit

    def counted(fn: Any, *args: Any) -> Any:
        if fn is device_issuance._check_chunk:
            started.append(args[0])
        return submit(fn, *args)

    monkeypatch.setattr(pool._executor, "submit", counted)
    return started
