"""``smki request … --dry-run [--on DATE]``: what a request would get, recording nothing (issue 13 point 7).

The request commands hand over to :func:`dry_run` when ``--dry-run`` is given: the home is opened
for reading only (no passphrase, no key), the rule set in force on DATE (default today) decides
from the register as it is now, each Device CSR is checked as the CA would check it, and the whole
is printed with the date and the rule set. Exit status 0 when everything would be issued, else 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import typer

from smki.interfaces.cli.common import console, open_for_reading
from smki.interfaces.cli.staff_cmd import parse_date
from smki.services.context import Home
from smki.services.ra_state import today
from smki.services.what_if import WhatIf, device_request_on, organisation_request_on


def _run(home: Path, on: str | None, decide: Callable[[Home, object], WhatIf]) -> None:
    day = parse_date(on, "--on") or today()
    opened = open_for_reading(home)
    try:
        result = decide(opened, day)
    finally:
        opened.close()
    console.print(result.render(), highlight=False, markup=False, soft_wrap=True, end="")
    if not result.decision.approved or any(verdict.code is not None for verdict in result.csrs):
        raise typer.Exit(1)


def dry_run_organisation(home: Path, on: str | None, party: str, aro: str, route: str, data: bytes) -> None:
    _run(home, on, lambda h, day: organisation_request_on(h, party, aro, route, data, day))  # type: ignore[arg-type]


def dry_run_device(home: Path, on: str | None, party: str, aro: str, route: str,
                   csrs: Sequence[tuple[str, bytes]]) -> None:
    _run(home, on, lambda h, day: device_request_on(h, party, aro, route, csrs, day))  # type: ignore[arg-type]


def refuse_on_without_dry_run(on: str | None, dry_run: bool) -> None:
    """``--on`` only makes sense for a what-if: a real request is decided today."""
    if on is not None and not dry_run:
        from smki.errors import SmkiError

        raise SmkiError("request.on-needs-dry-run", "--on DATE is a what-if: give --dry-run too")
