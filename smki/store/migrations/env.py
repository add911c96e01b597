"""Alembic environment: always run programmatically by ``Store.migrate()`` on its own connection.

The connection arrives in ``config.attributes["connection"]`` already inside a write transaction
(``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so concurrent ``migrate()`` calls
serialise and the whole upgrade commits or rolls back as one.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from smki.store.models import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("smki migrations run through smki.store.Store.migrate(), not the alembic CLI")
_run(_connection)
