"""Fixtures for operating smki (issue 12): an empty database on whichever engine is selected."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ADMIN_URL, _admin_execute, _url_for


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Iterator[str]:
    """A URL of a database with no schema at all (SQLite file, or a new PostgreSQL database)."""
    if not ADMIN_URL:
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"smki_e_{uuid.uuid4().hex[:12]}"
    _admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield _url_for(name)
    finally:
        _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
