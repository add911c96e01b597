"""The RA register as use cases: Parties, their dated status evidence, Entity Identifiers, subscriber
standing, and the AROs who act for them.

Every change is made by a named RA staff member whose role permits it (rule ``ra.staff-role``) and
is committed with an audit record saying who changed what, from what, to what. Inputs are
checked here, so the store only ever sees valid values, and bad input is a one-line coded refusal.

Standing and ARO status are read live by every request (``smki.services.requests``), so a
suspension made here takes effect on the very next request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from smki.audit import AuditEvent
from smki.domain import CertificatePolicy, RemotePartyRole
from smki.errors import SmkiError
from smki.eui64 import eui64_hyphenated, parse_eui64
from smki.ra import AroStatus, PartyCategory, RegisteredUserRole, StaffAction, SubscriberStanding
from smki.services.context import Home
from smki.services.ra_state import load_aro, load_party, today
from smki.services.staff import require_action
from smki.services.typed_text import typed_text
from smki.store.registry import (
    GATEWAY_CONNECTION,
    REGISTERED_ROLE,
    AroRecord,
    PartyPeriodRecord,
    PartyRecord,
)

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
CA_ROLES = frozenset({RemotePartyRole.ROOT, RemotePartyRole.ISSUING_AUTHORITY})
"""Roles that name the CAs themselves; never recorded for a Party (the RA rule refuses them too)."""


def check_id(value: str, what: str) -> str:
    """A register identifier: 1-64 letters, digits, ``.``, ``_``, ``:`` or ``-``, starting alphanumeric."""
    text = value.strip()
    if not _ID.fullmatch(text):
        raise SmkiError("ra.bad-id", f"{what} {text[:40]!r} must be 1-64 letters, digits, '.', '_', ':' or '-'")
    return text


def _text(value: str, what: str, limit: int = 200) -> str:
    return typed_text(value, what, limit=limit, code="ra.bad-text")


def parse_category(value: str) -> PartyCategory:
    """A SEC Party category by its name (``large-supplier``…), or ``ra.bad-category``."""
    try:
        return PartyCategory(value.strip().lower())
    except ValueError:
        known = ", ".join(c.value for c in PartyCategory)
        raise SmkiError("ra.bad-category", f"unknown Party category {value[:40]!r} (known: {known})") from None


def parse_policy(value: str | CertificatePolicy) -> CertificatePolicy:
    """A Certificate Policy: ``organisation`` (or ``org``) or ``device``."""
    text = str(value).strip().lower()
    if text == "org":
        return CertificatePolicy.ORGANISATION
    try:
        return CertificatePolicy(text)
    except ValueError:
        raise SmkiError("ra.bad-policy", f"unknown Certificate Policy {text[:40]!r} (organisation or device)") from None


def parse_role(value: str | int) -> RemotePartyRole:
    """A Remote Party Role by number (``2``, ``127``) or name (``supplier``); CA roles are refused."""
    text = str(value).strip()
    role: RemotePartyRole | None = None
    if text.isascii() and text.isdigit() and int(text) in {r.value for r in RemotePartyRole}:
        role = RemotePartyRole(int(text))
    else:
        wanted = text.lower().replace("-", "_").replace(" ", "_")
        role = next((r for r in RemotePartyRole if r.name.lower() == wanted), None)
    if role is None:
        known = ", ".join(f"{r.value} {r.name.lower()}" for r in RemotePartyRole)
        raise SmkiError("ra.bad-role", f"unknown Remote Party Role {text[:40]!r} (known: {known})")
    if role in CA_ROLES:
        raise SmkiError("ra.role-not-assignable",
                        f"role {role.ou} ({role.name.lower()}) names a CA, never a Party's Entity Identifier")
    return role


def _audit(tx: Any, actor: str, action: str, subject: str, details: dict[str, Any]) -> None:
    tx.append_audit([AuditEvent(actor, action, subject, details)])


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


# --- Parties -----------------------------------------------------------------------------------


def add_party(home: Home, party_id: str, name: str, category: str, *, staff_id: str | None) -> PartyRecord:
    """Register a SEC Party (RA operator)."""
    party_id = check_id(party_id, "a Party id")
    name = _text(name, "a Party name")
    parsed = parse_category(category)
    staff = require_action(home, staff_id, StaffAction.MANAGE_REGISTER, subject=party_id)
    if home.store.registry.party(party_id) is not None:
        raise SmkiError("ra.party-exists", f"Party {party_id!r} already exists")
    with home.store.transaction() as tx:
        tx.registry.add_party(party_id, name, parsed.value)
        _audit(tx, staff.staff_id, "party.added", party_id, {"name": name, "category": parsed.value})
    return load_party(home, party_id)


def show_party(home: Home, party_id: str) -> PartyRecord:
    """A Party with its Entity Identifiers and subscriptions (or ``ra.party-not-found``)."""
    return load_party(home, party_id)


def list_parties(home: Home) -> list[PartyRecord]:
    """Every registered Party, by id."""
    return home.store.registry.parties()


@dataclass(frozen=True)
class StatusChange:
    """A change to a Party's dated status evidence. ``None`` fields are left as they are.

    ``clear_*`` removes a date (the evidence was recorded in error or has lapsed); gateways and
    Registered User roles are added and dropped individually so one change never has to restate
    the whole set. Each addition starts a period, each removal ends one, on ``effective`` (default
    today; a past date records what held earlier, never a future one), with ``reason``. Adding one
    already held with an ``effective`` date restates when its period began (e.g. a connection that
    migration 0013 carried over from its Party's registration date but was live long before).
    """

    srept_passed: date | None = None
    clear_srept: bool = False
    uept_completed: date | None = None
    clear_uept: bool = False
    add_gateways: tuple[str, ...] = ()
    drop_gateways: tuple[str, ...] = ()
    add_registered_roles: tuple[str, ...] = ()
    drop_registered_roles: tuple[str, ...] = ()
    effective: date | None = None
    reason: str | None = None


def _new_date(current: date | None, given: date | None, clear: bool) -> date | None:
    return None if clear else (given if given is not None else current)


@dataclass(frozen=True)
class _PeriodChange:
    kind: str
    value: str
    action: str  # "started": a period starts; "ended": the open one ends; "restated": its start moves
    previous_start: date | None = None  # a restated period's start before


def _period_changes(before: PartyRecord, kind: str, add: Sequence[str], drop: Sequence[str],
                    restate_on: date | None) -> list[_PeriodChange]:
    """What adding ``add`` and dropping ``drop`` changes: dropping one not held changes nothing, nor
    does adding one held, unless ``restate_on`` (an explicit effective date) differs from the day
    its period began; one both added and dropped is refused."""
    both = sorted(set(add) & set(drop))
    if both:
        raise SmkiError("ra.bad-change", f"{both[0]} is both added and removed")
    began = {p.value: p.valid_from for p in before.periods if p.kind == kind and p.valid_until is None}
    return ([_PeriodChange(kind, v, "started") for v in sorted(set(add) - set(began))]
            + [_PeriodChange(kind, v, "restated", began[v]) for v in sorted(set(add) & set(began))
               if restate_on is not None and began[v] != restate_on]
            + [_PeriodChange(kind, v, "ended") for v in sorted(set(drop) & set(began))])


def _check_period(history: Sequence[PartyPeriodRecord], change: _PeriodChange, on: date) -> None:
    """A start must follow every earlier period of the value; an end must not precede its start."""
    mine = [p for p in history if p.kind == change.kind and p.value == change.value]
    what = "DCC Gateway Connection" if change.kind == GATEWAY_CONNECTION else "Registered User role"
    if change.action != "ended":
        ended = max((p.valid_until for p in mine if p.valid_until is not None), default=None)
        if ended is not None and on < ended:
            raise SmkiError("ra.bad-period", f"{what} {change.value} was in force until {ended.isoformat()}: "
                                             f"it cannot start again on {on.isoformat()}, before that")
        return
    started = next((p.valid_from for p in mine if p.valid_until is None), None)
    if started is not None and on < started:  # None: ended meanwhile, and end_period says so
        raise SmkiError("ra.bad-period", f"{what} {change.value} is in force from {started.isoformat()}: "
                                         f"it cannot end on {on.isoformat()}, before it began")


def set_party_status(home: Home, party_id: str, change: StatusChange, *, staff_id: str | None) -> PartyRecord:
    """Record a Party's SREPT, UEPT, Registered User roles and DCC Gateway Connections (RA operator).

    Connections and roles are dated periods: an addition is in force from ``change.effective``
    (default today), a removal ends its period that day; the history is kept, so a decision for a
    past date reads what held then (``smki.services.ra_state.party_state``)."""
    if change.clear_srept and change.srept_passed is not None:
        raise SmkiError("ra.bad-change", "give either an SREPT date or --no-srept, not both")
    if change.clear_uept and change.uept_completed is not None:
        raise SmkiError("ra.bad-change", "give either a UEPT date or --no-uept, not both")
    add_gw = [check_id(g, "a DCC Gateway Connection id") for g in change.add_gateways]
    drop_gw = [check_id(g, "a DCC Gateway Connection id") for g in change.drop_gateways]
    add_ru = [RegisteredUserRole.parse(r).value for r in change.add_registered_roles]
    drop_ru = [check_id(r, "a Registered User role") for r in change.drop_registered_roles]
    reason = None if change.reason is None else _text(change.reason, "the reason")
    for fact in (change.srept_passed, change.uept_completed, change.effective):
        if fact is not None and fact > today():
            raise SmkiError("ra.future-date", f"evidence dated {fact.isoformat()} has not happened yet")
    if (change.effective is not None or reason is not None) and not (add_gw or drop_gw or add_ru or drop_ru):
        raise SmkiError("ra.bad-change", "an effective date or reason goes with a Gateway Connection or "
                                         "Registered User role added or removed")
    effective = change.effective or today()
    staff = require_action(home, staff_id, StaffAction.MANAGE_REGISTER, subject=party_id)
    before = load_party(home, party_id)
    periods = (_period_changes(before, GATEWAY_CONNECTION, add_gw, drop_gw, change.effective)
               + _period_changes(before, REGISTERED_ROLE, add_ru, drop_ru, change.effective))
    gateways = (set(before.gateway_connections) | set(add_gw)) - set(drop_gw)
    registered = (set(before.registered_user_roles) | set(add_ru)) - set(drop_ru)
    srept = _new_date(before.srept_passed, change.srept_passed, change.clear_srept)
    uept = _new_date(before.uept_completed, change.uept_completed, change.clear_uept)
    after = {
        "srept_passed": _iso(srept),
        "uept_completed": _iso(uept),
        "gateway_connections": sorted(gateways),
        "registered_user_roles": sorted(registered),
    }
    previous = {
        "srept_passed": _iso(before.srept_passed),
        "uept_completed": _iso(before.uept_completed),
        "gateway_connections": sorted(before.gateway_connections),
        "registered_user_roles": sorted(before.registered_user_roles),
    }
    if after == previous and not periods:
        raise SmkiError("ra.no-change", f"nothing to change for Party {party_id}")
    with home.store.transaction() as tx:
        history = tx.registry.held_periods(party_id)
        for period in periods:
            _check_period(history, period, effective)
        tx.registry.update_party(party_id, srept_passed=srept, uept_completed=uept)
        writes = {"started": tx.registry.start_period, "ended": tx.registry.end_period,
                  "restated": tx.registry.restate_period}
        for period in periods:
            writes[period.action](party_id, period.kind, period.value, on=effective, by=staff.staff_id,
                                  reason=reason)
        details: dict[str, Any] = {
            "from": {k: v for k, v in previous.items() if after[k] != v},
            "to": {k: v for k, v in after.items() if previous[k] != v},
        }
        if periods:
            details["periods"] = [{"kind": p.kind, "value": p.value, p.action: effective.isoformat(),
                                   **({} if p.previous_start is None else {"from": p.previous_start.isoformat()})}
                                  for p in periods]
            details["reason"] = reason
        _audit(tx, staff.staff_id, "party.status-set", party_id, details)
    return load_party(home, party_id)


def party_history(home: Home, party_id: str) -> list[PartyPeriodRecord]:
    """Every period of a Party's Gateway Connections and Registered User roles: since when, until
    when, who recorded each and why (or ``ra.party-not-found``)."""
    load_party(home, party_id)
    return home.store.registry.party_history(party_id)


def set_party_entity(home: Home, party_id: str, entity: str, roles: Iterable[str | int], *,
                     staff_id: str | None) -> PartyRecord:
    """Give a Party an Entity Identifier and the Remote Party Roles it may hold under it (RA operator).

    Recording an existing Entity Identifier again replaces its roles; an Entity Identifier belongs
    to one Party only (``ra.entity-taken``).
    """
    entity_id = parse_eui64(entity)
    parsed = sorted({parse_role(r) for r in roles})
    if not parsed:
        raise SmkiError("ra.bad-role", "give at least one Remote Party Role (--role)")
    staff = require_action(home, staff_id, StaffAction.MANAGE_REGISTER, subject=party_id)
    before = load_party(home, party_id)
    with home.store.transaction() as tx:
        tx.registry.set_entity(party_id, entity_id, [int(r) for r in parsed])
        _audit(tx, staff.staff_id, "party.entity-set", party_id, {
            "entity_id": eui64_hyphenated(entity_id),
            "from": list(before.entities.get(entity_id, ())),
            "roles": [int(r) for r in parsed],
        })
    return load_party(home, party_id)


_STANDING_CHANGES: dict[SubscriberStanding, tuple[frozenset[SubscriberStanding], StaffAction, str]] = {
    SubscriberStanding.SUSPENDED: (
        frozenset({SubscriberStanding.APPROVED}), StaffAction.SUSPEND, "subscriber.suspended"),
    SubscriberStanding.WITHDRAWN: (
        frozenset({SubscriberStanding.APPROVED, SubscriberStanding.SUSPENDED}), StaffAction.SUSPEND,
        "subscriber.withdrawn"),
}
"""[design] Which standing may follow which, who may do it, and what the audit calls it. Suspending
and withdrawing only take a capability away, so one operator or approver does it at once, alone:
a second person would only delay stopping a subscriber whose key or conduct is in doubt, and
nothing is granted. Reinstating gives the capability back, so it is never done here by one person:
an RA operator proposes it and a different RA approver approves it (``ra.dual-control``,
:mod:`smki.services.reinstatement`), and only from *suspended* — a withdrawn or refused subscriber
applies again (``smki apply``)."""

REINSTATE_UNDER_DUAL_CONTROL = ("reinstating is under dual control: an RA operator proposes it and a different "
                                "RA approver approves it (smki ra reinstatements approve ITEM)")


def set_subscriber_standing(home: Home, party_id: str, policy: str | CertificatePolicy, standing: str, *,
                            staff_id: str | None, reason: str | None = None) -> PartyRecord:
    """Suspend or withdraw a Party's Authorised Subscriber status for one Certificate Policy.

    Reinstatement is not done here but under dual control (:mod:`smki.services.reinstatement`).
    """
    parsed_policy = parse_policy(policy)
    try:
        wanted = SubscriberStanding(standing.strip().lower())
    except ValueError:
        wanted = SubscriberStanding.NONE
    if wanted is SubscriberStanding.APPROVED:
        raise SmkiError("ra.dual-control-required", REINSTATE_UNDER_DUAL_CONTROL)
    if wanted not in _STANDING_CHANGES:
        raise SmkiError("ra.bad-standing", "a standing may be set to suspended or withdrawn here "
                        "(reinstating is proposed, then approved by a different RA approver)")
    allowed_from, action, event = _STANDING_CHANGES[wanted]
    staff = require_action(home, staff_id, action, subject=party_id)
    before = load_party(home, party_id)
    current = SubscriberStanding(before.subscriptions.get(parsed_policy.value, SubscriberStanding.NONE.value))
    if current not in allowed_from:
        shown = ", ".join(sorted(s.value for s in allowed_from))
        raise SmkiError("ra.bad-standing",
                        f"{party_id} is {current.value} as a {parsed_policy.value} subscriber; "
                        f"{wanted.value} follows only {shown}")
    with home.store.transaction() as tx:
        tx.registry.set_subscription(party_id, parsed_policy.value, wanted.value)
        _audit(tx, staff.staff_id, event, party_id, {
            "policy": parsed_policy.value, "from": current.value, "to": wanted.value, "reason": reason,
        })
    return load_party(home, party_id)


# --- AROs --------------------------------------------------------------------------------------


def nominate_aro(home: Home, aro_id: str, party_id: str, name: str, sro: str, *,
                 staff_id: str | None) -> AroRecord:
    """Record an ARO nominated by the Party's SRO (RA operator). It cannot act until verified."""
    aro_id = check_id(aro_id, "an ARO id")
    name = _text(name, "the ARO's name")
    sro = _text(sro, "the nominating SRO")
    staff = require_action(home, staff_id, StaffAction.MANAGE_REGISTER, subject=aro_id)
    load_party(home, party_id)
    if home.store.registry.aro(aro_id) is not None:
        raise SmkiError("ra.aro-exists", f"ARO {aro_id!r} already exists")
    with home.store.transaction() as tx:
        tx.registry.add_aro(aro_id, party_id, name, sro)
        _audit(tx, staff.staff_id, "aro.nominated", aro_id, {"party": party_id, "name": name, "sro": sro})
    return load_aro(home, aro_id)


def verify_aro(home: Home, aro_id: str, check: str, *, staff_id: str | None, on: date | None = None) -> AroRecord:
    """Record that the RA verified the ARO's identity: what was checked, when, and by whom."""
    check = _text(check, "what was checked")
    when = on or today()
    if when > today():
        raise SmkiError("ra.future-date", f"a verification dated {when.isoformat()} has not happened yet")
    staff = require_action(home, staff_id, StaffAction.MANAGE_REGISTER, subject=aro_id)
    aro = load_aro(home, aro_id)
    with home.store.transaction() as tx:
        tx.registry.update_aro(aro_id, identity_verified=when, identity_check=check, verified_by=staff.staff_id)
        _audit(tx, staff.staff_id, "aro.verified", aro_id, {
            "party": aro.party_id, "check": check, "on": when.isoformat(),
            "previous": _iso(aro.identity_verified),
        })
    return load_aro(home, aro_id)


def screen_aro(home: Home, aro_id: str, screened_on: date, standard: str, *, staff_id: str | None) -> AroRecord:
    """Record the ARO's security screening (BS 7858:2019 or equivalent, required from MP127)."""
    standard = _text(standard, "the screening standard", 100)
    if screened_on > today():
        raise SmkiError("ra.future-date", f"screening dated {screened_on.isoformat()} has not happened yet")
    staff = require_action(home, staff_id, StaffAction.MANAGE_REGISTER, subject=aro_id)
    aro = load_aro(home, aro_id)
    with home.store.transaction() as tx:
        tx.registry.update_aro(aro_id, screened=screened_on, screening_standard=standard)
        _audit(tx, staff.staff_id, "aro.screened", aro_id, {
            "party": aro.party_id, "on": screened_on.isoformat(), "standard": standard,
        })
    return load_aro(home, aro_id)


_ARO_CHANGES: dict[AroStatus, tuple[frozenset[AroStatus], StaffAction, str]] = {
    AroStatus.SUSPENDED: (frozenset({AroStatus.ACTIVE}), StaffAction.SUSPEND, "aro.suspended"),
    AroStatus.REVOKED: (frozenset({AroStatus.ACTIVE, AroStatus.SUSPENDED}), StaffAction.SUSPEND, "aro.revoked"),
}
"""[design] As for subscribers: suspending or revoking only takes a capability away, so it is quick and
single-person (operator or approver); reinstating a suspended ARO is proposed by an RA operator and
approved by a different RA approver (:mod:`smki.services.reinstatement`); a revoked ARO is never
reinstated (nominate anew)."""


def set_aro_status(home: Home, aro_id: str, status: AroStatus | str, *, staff_id: str | None,
                   reason: str | None = None) -> AroRecord:
    """Suspend or revoke an ARO; takes effect on the ARO's very next request.

    Reinstatement is not done here but under dual control (:mod:`smki.services.reinstatement`).
    """
    try:
        wanted = AroStatus(str(status))
    except ValueError:
        raise SmkiError("ra.bad-status", "an ARO is active, suspended or revoked") from None
    if wanted is AroStatus.ACTIVE:
        raise SmkiError("ra.dual-control-required", REINSTATE_UNDER_DUAL_CONTROL)
    allowed_from, action, event = _ARO_CHANGES[wanted]
    staff = require_action(home, staff_id, action, subject=aro_id)
    aro = load_aro(home, aro_id)
    current = AroStatus(aro.status)
    if current not in allowed_from:
        shown = ", ".join(sorted(s.value for s in allowed_from))
        raise SmkiError("ra.bad-status", f"ARO {aro_id} is {current.value}; {wanted.value} follows only {shown}")
    with home.store.transaction() as tx:
        tx.registry.update_aro(aro_id, status=wanted.value)
        _audit(tx, staff.staff_id, event, aro_id, {
            "party": aro.party_id, "from": current.value, "to": wanted.value, "reason": reason,
        })
    return load_aro(home, aro_id)


def list_aros(home: Home, party_id: str | None = None) -> list[AroRecord]:
    """Every ARO (of one Party, if given), by id."""
    if party_id is not None:
        load_party(home, party_id)
    return home.store.registry.aros(party_id)


def roles_text(roles: Sequence[int]) -> str:
    """``02 supplier, 7F other``: Remote Party Roles as an operator reads them."""
    shown = []
    for number in roles:
        try:
            role = RemotePartyRole(number)
            shown.append(f"{role.ou} {role.name.lower()}")
        except ValueError:
            shown.append(str(number))
    return ", ".join(shown)
