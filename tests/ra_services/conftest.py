"""A CA home with an RA register: staff, a fully-qualified Party, its ARO, and helpers.

The CA hierarchy is made once per test (key generation is quick; the database is per test so the
register and audit log start empty on SQLite and PostgreSQL alike).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from smki.services.context import Home
from smki.services.registry import (
    StatusChange,
    add_party,
    nominate_aro,
    screen_aro,
    set_party_entity,
    set_party_status,
    verify_aro,
)
from smki.services.staff import add_staff
from tests.conftest import ca_home

SECRET = b"test-passphrase-123"
ENTITY = "90B3D51F30010000"  # P1's Entity Identifier
OTHER_ENTITY = "90B3D51F30020000"  # P2's


@pytest.fixture
def home(tmp_path: Path, database_url: str) -> Iterator[Home]:
    with ca_home(tmp_path, database_url, SECRET, actor="operator:test") as opened:
        yield opened


@pytest.fixture
def staffed(home: Home) -> Home:
    """Staff: op1 (operator), op2 (operator), ap1 and ap2 (approvers), aud (auditor), boss (both)."""
    add_staff(home, "op1", "Olive Operator", ["ra-operator"], actor="admin")
    add_staff(home, "op2", "Otto Operator", ["ra-operator"], actor="admin")
    add_staff(home, "ap1", "April Approver", ["ra-approver"], actor="admin")
    add_staff(home, "ap2", "Abe Approver", ["ra-approver"], actor="admin")
    add_staff(home, "aud", "Audrey Auditor", ["auditor"], actor="admin")
    add_staff(home, "boss", "Bo Both", ["ra-operator", "ra-approver"], actor="admin")
    return home


def qualified_party(home: Home, party_id: str = "P1", entity: str = ENTITY, *, gateway: bool = True,
                    uept: bool = True, srept: bool = True) -> None:
    """A Party with SREPT, UEPT, a Gateway Connection and a supplier Entity Identifier (by op1); the
    connection and Registered User role are in force from the UEPT date."""
    add_party(home, party_id, f"{party_id} Energy", "large-supplier", staff_id="op1")
    change = StatusChange(
        srept_passed=date(2019, 6, 1) if srept else None,
        uept_completed=date(2019, 9, 1) if uept else None,
        add_gateways=("GW-1",) if gateway else (),
        add_registered_roles=("import-supplier",),
        effective=date(2019, 9, 1),
    )
    set_party_status(home, party_id, change, staff_id="op1")
    set_party_entity(home, party_id, entity, ["2"], staff_id="op1")


def verified_aro(home: Home, aro_id: str = "A1", party_id: str = "P1") -> None:
    nominate_aro(home, aro_id, party_id, "Ann Officer", "Sam SRO", staff_id="op1")
    verify_aro(home, aro_id, "passport + utility bill", staff_id="op1", on=date(2020, 1, 2))
    screen_aro(home, aro_id, date(2020, 1, 3), "BS 7858:2019", staff_id="op1")


def audit_actions(home: Home, start: int = 1) -> list[str]:
    """The audit log's actions from ``start`` on, in order."""
    return [row.action for row in home.store.audit_rows(start)]


def audit_after(home: Home, seq: int) -> list[tuple[str, str, dict[str, object]]]:
    """(actor, action, details) of each audit record after ``seq``."""
    return [(r.actor, r.action, r.details_dict) for r in home.store.audit_rows(seq + 1)]


def head(home: Home) -> int:
    """The sequence number of the newest audit record."""
    return home.store.audit_head()[0]
