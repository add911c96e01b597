"""RA staff: who may do what (RA operator, RA approver, auditor), checked before every staff action.

Staff are identified by their staff id (the CLI's ``--as`` / ``SMKI_STAFF``; the Portal's login).
An auditor may read but never change anything; a change needs the role the action names.
"""

from __future__ import annotations

from collections.abc import Sequence

from smki.audit import AuditEvent
from smki.errors import SmkiError
from smki.services.context import Home
from smki.store.registry import StaffRecord

STAFF_ROLES = ("ra-operator", "ra-approver", "auditor")


def require_staff(home: Home, staff_id: str | None, role: str) -> StaffRecord:
    """The active staff member ``staff_id`` holding ``role``, or a coded refusal."""
    if not staff_id:
        raise SmkiError("staff.required", "this action is for RA staff: give --as STAFF_ID (or set SMKI_STAFF)")
    record = home.store.registry.staff(staff_id)
    if record is None or not record.active:
        raise SmkiError("staff.unknown", f"{staff_id!r} is not an active RA staff member")
    if role not in record.roles:
        raise SmkiError("staff.role-required", f"{staff_id!r} does not hold the {role} role")
    return record


def add_staff(home: Home, staff_id: str, name: str, roles: Sequence[str], *, actor: str) -> None:
    """Register an RA staff member (a CA/RA administrator's console action)."""
    unknown = sorted(set(roles) - set(STAFF_ROLES))
    if unknown or not roles:
        raise SmkiError("staff.bad-role", f"roles must be among {', '.join(STAFF_ROLES)}")
    if not staff_id or len(staff_id) > 64:
        raise SmkiError("staff.bad-id", "a staff id is 1 to 64 characters")
    with home.store.transaction() as tx:
        tx.registry.add_staff(staff_id, name, roles)
        tx.append_audit([AuditEvent(actor, "staff.added", staff_id, {"name": name, "roles": sorted(set(roles))})])
