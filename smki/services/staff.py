"""RA staff: who may do what (RA operator, RA approver, auditor), checked before every staff action.

Staff are identified by their staff id (the CLI's ``--as`` / ``SMKI_STAFF``; the Portal's login).
What each role permits is the RA's rule ``ra.staff-role`` (``smki.ra.check_staff_role``); this
module only loads the person from the register and turns a failing verdict into a refusal, so the
permission table lives in one place. An auditor may read but never change anything; a refused
attempt to change something is itself audited (``staff.refused``), because an auditor or operator
trying to act beyond their role is exactly what an audit trail is for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from smki.audit import AuditEvent
from smki.errors import SmkiError
from smki.ra import (
    RuleRefusal,
    StaffAction,
    StaffRole,
    check_dual_control,
    check_staff_holds_role,
    check_staff_role,
)
from smki.services.context import Home
from smki.services.typed_text import typed_text
from smki.store.registry import StaffRecord

STAFF_ROLES = tuple(role.value for role in StaffRole)
MAX_STAFF_ID = 64
#: A new staff id: ASCII, as a Party id, so that two ids that look alike are alike (a zero-width
#: character or a Cyrillic a (U+0430) would make a second identity that reads as the first in the audit
#: log, and dual control would take the two for two people); '@' too, for an e-mail address.
_STAFF_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:@-]{{0,{MAX_STAFF_ID - 1}}}")


def staff_roles(record: StaffRecord) -> frozenset[StaffRole]:
    """The roles a stored staff member holds; a role this version does not know grants nothing."""
    known = {role.value: role for role in StaffRole}
    return frozenset(known[r] for r in record.roles if r in known)


def _load(home: Home, staff_id: str | None) -> StaffRecord:
    if not staff_id:
        raise SmkiError("staff.required", "this action is for RA staff: give --as STAFF_ID (or set SMKI_STAFF)")
    record = home.store.registry.staff(staff_id)
    if record is None or not record.active:
        raise SmkiError("staff.unknown", f"{staff_id!r} is not an active RA staff member")
    return record


def require_staff(home: Home, staff_id: str | None, role: str | StaffRole, *, subject: str = "",
                  action: str = "") -> StaffRecord:
    """The active staff member ``staff_id`` holding ``role``, or a coded refusal.

    For actions that need one particular role whatever the permission table says (e.g. the CA
    revocation proposals): rule ``ra.staff-holds-role``. RA register actions use
    :func:`require_action` (rule ``ra.staff-role``) instead. A refusal is audited (``staff.refused``,
    naming the rule) before it is raised, as :func:`require_action`'s are: a person acting beyond
    their role is recorded whichever kind of action they tried.
    """
    record = _load(home, staff_id)
    wanted = StaffRole(role)
    doing = action or f"act as {wanted.value}"
    verdict = check_staff_holds_role(record.staff_id, staff_roles(record), wanted, doing)
    if not verdict.passed:
        with home.store.transaction() as tx:
            tx.append_audit([AuditEvent(record.staff_id, "staff.refused", subject or action or wanted.value, {
                "action": doing, "rule": verdict.rule_id, "reason": verdict.reason, "reference": verdict.reference,
            })])
        # The code is older than the rule and stays, for scripts that test it; the message names the rule.
        raise RuleRefusal(verdict, "staff.role-required", f"{verdict.rule_id}: {verdict.reason}")
    return record


def require_action(home: Home, staff_id: str | None, action: StaffAction, *, subject: str = "") -> StaffRecord:
    """The active staff member ``staff_id`` if a role they hold permits ``action`` (rule ``ra.staff-role``).

    A refusal by the rule is audited before it is raised as ``ra.staff-role``.
    """
    record = _load(home, staff_id)
    verdict = check_staff_role(record.staff_id, staff_roles(record), action)
    if not verdict.passed:
        with home.store.transaction() as tx:
            tx.append_audit([AuditEvent(record.staff_id, "staff.refused", subject or action.value, {
                "action": action.value, "rule": verdict.rule_id, "reason": verdict.reason,
                "reference": verdict.reference,
            })])
        raise RuleRefusal(verdict, "ra.staff-role", verdict.reason)
    return record


def require_second_person(home: Home, staff: StaffRecord, proposed_by: str, *, refused_event: str, subject: str,
                          details: dict[str, Any] | None = None, actor: str | None = None) -> None:
    """Four eyes (rule ``ra.dual-control``): ``staff``, deciding what ``proposed_by`` proposed, must be a
    different person holding the RA approver role. A refusal is audited as ``refused_event`` with the
    rule, its reason and reference (by ``actor``, default the staff id), then raised as ``ra.dual-control``.

    Every RA decision that grants or restores the ability to obtain certificates (an application, the
    reinstatement of a subscriber or an ARO) and every CA revocation goes through this one step.
    """
    verdict = check_dual_control(proposed_by, staff.staff_id, staff_roles(staff))
    if verdict.passed:
        return
    with home.store.transaction() as tx:
        tx.append_audit([AuditEvent(actor or staff.staff_id, refused_event, subject, {
            **(details or {}), "rule": verdict.rule_id, "reason": verdict.reason, "reference": verdict.reference,
            "proposed_by": proposed_by,
        })])
    raise RuleRefusal(verdict, "ra.dual-control", verdict.reason)


def parse_roles(roles: Iterable[str]) -> list[StaffRole]:
    """Staff roles by name, or a ``staff.bad-role`` refusal naming the known ones."""
    parsed = []
    for text in roles:
        try:
            parsed.append(StaffRole(text.strip()))
        except ValueError:
            known = ", ".join(STAFF_ROLES)
            raise SmkiError("staff.bad-role", f"unknown role {text[:40]!r}; roles are {known}") from None
    if not parsed:
        raise SmkiError("staff.bad-role", f"give at least one role: {', '.join(STAFF_ROLES)}")
    return parsed


def add_staff(home: Home, staff_id: str, name: str, roles: Sequence[str | StaffRole], *, actor: str) -> StaffRecord:
    """Register an RA staff member (a CA/RA administrator's console action; no staff role needed).

    This is how the first staff are bootstrapped, so it is deliberately outside ``ra.staff-role``:
    whoever holds the console already holds the database.
    """
    parsed = sorted({r.value for r in parse_roles(str(r) for r in roles)})
    staff_id = staff_id.strip()
    if not _STAFF_ID.fullmatch(staff_id):
        raise SmkiError("staff.bad-id", f"a staff id is 1 to {MAX_STAFF_ID} ASCII letters, digits, '.', '_', ':', "
                                        f"'@' or '-', starting with a letter or digit")
    name = typed_text(name, "the staff member's name", limit=200, code="staff.bad-name")
    # Dual control takes ids that differ only in case for one person (``ra.dual-control``): a second
    # such id would be a second login for the same person, not a second person.
    taken = next((s.staff_id for s in home.store.registry.staff_members()
                  if s.staff_id.casefold() == staff_id.casefold()), None)
    if taken is not None:
        same = "" if taken == staff_id else " (staff ids are the same in any case)"
        raise SmkiError("staff.exists", f"staff member {taken!r} already exists{same}")
    with home.store.transaction() as tx:
        tx.registry.add_staff(staff_id, name, parsed)
        tx.append_audit([AuditEvent(actor, "staff.added", staff_id, {"name": name, "roles": parsed})])
    return StaffRecord(staff_id, name, tuple(parsed), True)


def set_staff_active(home: Home, staff_id: str, active: bool, *, actor: str) -> StaffRecord:
    """Deactivate a staff member who has left (or reactivate one): a console administrator's action,
    as ``add_staff`` is, audited ``staff.deactivated`` / ``staff.reactivated``. An inactive staff
    member can do nothing: every staff check refuses them (``staff.unknown``) and so does the
    Portal's login with their credential (``credential.staff-inactive``). The record stays, since
    the audit log names them."""
    record = _registered(home, staff_id)
    if record.active == active:
        raise SmkiError("staff.unchanged", f"staff member {record.staff_id!r} is already "
                                           f"{'active' if active else 'inactive'}")
    with home.store.transaction() as tx:
        if not tx.registry.change_staff(record.staff_id, active=active):  # pragma: no cover - a record is never deleted
            raise SmkiError("staff.unknown", f"no RA staff member {staff_id!r}")
        tx.append_audit([AuditEvent(actor, "staff.reactivated" if active else "staff.deactivated",
                                    record.staff_id, {"name": record.name, "roles": list(record.roles)})])
    return StaffRecord(record.staff_id, record.name, record.roles, active)


def set_staff_roles(home: Home, staff_id: str, roles: Sequence[str | StaffRole], *, actor: str) -> StaffRecord:
    """Replace a staff member's roles (a console administrator's action), audited ``staff.roles-changed``
    with the roles before and after."""
    parsed = sorted({r.value for r in parse_roles(str(r) for r in roles)})
    record = _registered(home, staff_id)
    if sorted(record.roles) == parsed:
        raise SmkiError("staff.unchanged", f"staff member {record.staff_id!r} already holds {', '.join(parsed)}")
    with home.store.transaction() as tx:
        if not tx.registry.change_staff(record.staff_id, roles=parsed):  # pragma: no cover - never deleted
            raise SmkiError("staff.unknown", f"no RA staff member {staff_id!r}")
        tx.append_audit([AuditEvent(actor, "staff.roles-changed", record.staff_id,
                                    {"before": sorted(record.roles), "after": parsed})])
    return StaffRecord(record.staff_id, record.name, tuple(parsed), record.active)


def _registered(home: Home, staff_id: str) -> StaffRecord:
    """The staff member ``staff_id``, active or not, or ``staff.unknown``."""
    record = home.store.registry.staff(staff_id.strip())
    if record is None:
        raise SmkiError("staff.unknown", f"no RA staff member {staff_id.strip()[:64]!r}")
    return record


def list_staff(home: Home) -> list[StaffRecord]:
    """Every RA staff member, by id."""
    return home.store.registry.staff_members()
