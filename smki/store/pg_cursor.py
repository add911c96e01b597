"""psycopg's cursor for smki's PostgreSQL connections: a batch's statements are never prepared.

smki lets psycopg prepare its statements (``smki.store.engine``: at their second use on a
connection), which saves a single CSR's dozen statements their parse and plan. A batch's look-ups
and updates are another matter: their values are a whole chunk's, and PostgreSQL, after five
executions of a prepared statement, may plan it once without them, which for these meant scans
(``smki.store.driver.PLANNED_WITH_ITS_VALUES`` says what it cost). The statements that carry that
mark are sent unprepared, planned with the values of each execution.
"""

from __future__ import annotations

from typing import Any

import psycopg

from smki.store.driver import PLANNED_WITH_ITS_VALUES


class SmkiCursor(psycopg.Cursor[Any]):
    """A cursor that never prepares a statement marked ``PLANNED_WITH_ITS_VALUES``."""

    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None,
                binary: bool | None = None) -> SmkiCursor:
        if prepare is None and isinstance(query, str) and PLANNED_WITH_ITS_VALUES in query:
            prepare = False
        super().execute(query, params, prepare=prepare, binary=binary)
        return self
