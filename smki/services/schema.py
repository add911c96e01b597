"""The database schema as an operator sees it: where it stands, and the one step that upgrades it.

Only ``smki ca init`` (a new home) and ``smki db upgrade`` change the schema; everything else opens
the home with :func:`smki.services.context.open_home`, which refuses a schema that is not current.
An upgrade is recorded in the audit log (from which revision to which), so the chain shows when the
database changed shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from smki.config import load_settings
from smki.store.migrate import SchemaStatus, head_revision


@dataclass(frozen=True)
class SchemaReport:
    database: str  # the URL with any password hidden
    status: SchemaStatus


def redacted_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def schema_report(home: Path | str) -> SchemaReport:
    from smki.services.context import require_database_file
    from smki.store import Store

    settings = load_settings(home)
    require_database_file(settings)  # a status never creates the database it reports on
    store = Store.open(settings.resolved_database_url)
    try:
        return SchemaReport(redacted_url(settings.resolved_database_url), store.schema_status())
    finally:
        store.close()


def upgrade_schema(home: Path | str, *, actor: str) -> tuple[SchemaStatus, SchemaStatus]:
    """Upgrade to this smki's head; returns the status before and after. A no-op when current."""
    from smki.audit import AuditEvent
    from smki.errors import SmkiError
    from smki.services.context import require_database_file
    from smki.store import Store

    settings = load_settings(home)
    require_database_file(settings)
    store = Store.open(settings.resolved_database_url)
    try:
        before = store.schema_status()
        if before.current is None:  # an upgrade builds on a register; an empty one beside a CA is none
            raise SmkiError("store.not-initialised",
                            "the database has no smki schema, so there is nothing to upgrade: 'smki ca init' "
                            "makes a new home, 'smki backup restore' brings back one that was lost")
        if not before.known:
            raise SmkiError("store.schema-unknown",
                            f"the database schema is at {before.current}, newer than this smki ({before.head})")
        store.migrate()
        after = store.schema_status()
        if before.current != after.current:
            with store.transaction() as tx:
                tx.append_audit([AuditEvent(actor, "store.schema-upgrade", after.current or "",
                                            {"from": before.current, "to": after.current})])
        return before, after
    finally:
        store.close()


def code_schema_revision() -> str | None:
    """The schema revision this version of smki works with."""
    return head_revision()
