"""Reinstating a suspended Authorised Subscriber or ARO, under dual control (four eyes).

Reinstatement gives a Party (or one of its AROs) back the ability to obtain certificates, so, like
an application for Authorised Subscriber status and the revocation of a CA certificate, one person
cannot do it alone:

* an RA operator **proposes** it (``smki party subscriber --standing approved``, ``smki aro
  reinstate``): the target must be suspended now, and one proposal per target waits at a time;
* a *different* person, an RA approver, **approves** or **refuses** it (``smki ra reinstatements
  approve|refuse``; rule ``ra.dual-control``, its refusal audited). Approval checks again that the
  target is still suspended, then reinstates it and decides the proposal in one transaction.

Proposals are items of the ``dual_control`` table, as CA revocation proposals are. Suspending,
withdrawing and revoking stay single-person (:mod:`smki.services.registry`): they only take a
capability away, and must be quick when a key or a person is in doubt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smki.audit import AuditEvent
from smki.domain import CertificatePolicy
from smki.errors import NotFound, SmkiError
from smki.ra import AroStatus, StaffAction, SubscriberStanding
from smki.services.context import Home
from smki.services.ra_state import load_aro, load_party
from smki.services.registry import check_id, parse_policy
from smki.services.staff import require_action, require_second_person
from smki.services.typed_text import typed_text
from smki.store.registry import DualControlRecord

SUBSCRIBER = "subscriber-reinstate"
"""The ``dual_control`` action of a proposal to reinstate a suspended subscriber (subject: the Party)."""
ARO = "aro-reinstate"
"""The ``dual_control`` action of a proposal to reinstate a suspended ARO (subject: the ARO)."""
ACTIONS = (SUBSCRIBER, ARO)
_EVENT_PREFIX = {SUBSCRIBER: "subscriber", ARO: "aro"}


@dataclass(frozen=True)
class Reinstatement:
    """A reinstatement proposal as staff see it: who or what, why, and where it stands."""

    item: int
    kind: str  # subscriber / aro
    subject: str  # the Party or the ARO
    policy: str | None  # the Certificate Policy, for a subscriber
    reason: str | None
    status: str  # pending / approved / refused
    proposed_by: str
    decided_by: str | None

    @classmethod
    def of(cls, record: DualControlRecord) -> Reinstatement:
        return cls(record.id, _EVENT_PREFIX[record.action], record.subject, record.payload.get("policy"),
                   record.payload.get("reason"), record.status, record.proposed_by, record.decided_by)


def _reason(reason: str | None) -> str | None:
    return None if not reason or not reason.strip() else typed_text(reason, "the reason", limit=500,
                                                                     code="ra.bad-text")


def _standing(home: Home, party_id: str, policy: CertificatePolicy) -> SubscriberStanding:
    party = load_party(home, party_id)
    return SubscriberStanding(party.subscriptions.get(policy.value, SubscriberStanding.NONE.value))


def _require_suspended_subscriber(home: Home, party_id: str, policy: CertificatePolicy) -> None:
    current = _standing(home, party_id, policy)
    if current is not SubscriberStanding.SUSPENDED:
        raise SmkiError("ra.bad-standing",
                        f"{party_id} is {current.value} as a {policy.value} subscriber; approved follows only "
                        "suspended (a withdrawn or refused subscriber applies again)")


def _require_suspended_aro(home: Home, aro_id: str) -> str:
    aro = load_aro(home, aro_id)
    if aro.status != AroStatus.SUSPENDED.value:
        raise SmkiError("ra.bad-status", f"ARO {aro_id} is {aro.status}; active follows only suspended "
                        "(a revoked ARO is nominated anew)")
    return aro.party_id


def _propose(home: Home, action: str, subject: str, payload: dict[str, Any], staff_id: str) -> Reinstatement:
    for item in home.store.registry.dual_control_items("pending"):
        if item.action == action and item.subject == subject and item.payload.get("policy") == payload.get("policy"):
            raise SmkiError("ra.already-proposed",
                            f"reinstatement proposal {item.id} for {subject} is awaiting an RA approver")
    with home.store.transaction() as tx:
        item_id = tx.registry.propose_dual_control(action, subject, payload, staff_id)
        tx.append_audit([AuditEvent(staff_id, f"{_EVENT_PREFIX[action]}.reinstatement-proposed", subject,
                                    {"item": item_id, **payload})])
    return reinstatement(home, item_id)


def propose_subscriber_reinstatement(home: Home, party_id: str, policy: str | CertificatePolicy, *,
                                     staff_id: str | None, reason: str | None = None) -> Reinstatement:
    """An RA operator proposes reinstating a suspended Authorised Subscriber for one Certificate Policy."""
    parsed = parse_policy(policy)
    party_id = check_id(party_id, "a Party id")
    text = _reason(reason)
    staff = require_action(home, staff_id, StaffAction.PROPOSE, subject=party_id)
    _require_suspended_subscriber(home, party_id, parsed)
    return _propose(home, SUBSCRIBER, party_id, {"policy": parsed.value, "reason": text}, staff.staff_id)


def propose_aro_reinstatement(home: Home, aro_id: str, *, staff_id: str | None,
                              reason: str | None = None) -> Reinstatement:
    """An RA operator proposes reinstating a suspended ARO."""
    aro_id = check_id(aro_id, "an ARO id")
    text = _reason(reason)
    staff = require_action(home, staff_id, StaffAction.PROPOSE, subject=aro_id)
    party_id = _require_suspended_aro(home, aro_id)
    return _propose(home, ARO, aro_id, {"party": party_id, "reason": text}, staff.staff_id)


def reinstatement(home: Home, item_id: int) -> Reinstatement:
    """One reinstatement proposal, or ``ra.not-found``."""
    item = home.store.registry.dual_control(item_id)
    if item is None or item.action not in ACTIONS:
        raise NotFound("ra.not-found", f"no reinstatement proposal {item_id}")
    return Reinstatement.of(item)


def reinstatements(home: Home, *, pending_only: bool = True) -> list[Reinstatement]:
    """Reinstatement proposals, oldest first (those awaiting an approver unless ``pending_only`` is False)."""
    items = home.store.registry.dual_control_items("pending" if pending_only else None)
    return [Reinstatement.of(i) for i in items if i.action in ACTIONS]


def decide_reinstatement(home: Home, item_id: int, *, staff_id: str | None, approve: bool,
                         reason: str | None = None) -> Reinstatement:
    """A different RA approver approves (the target is reinstated) or refuses a reinstatement proposal.

    Refused by ``ra.staff-role`` (not an approver) or ``ra.dual-control`` (the proposer), both audited;
    an approval whose target is no longer suspended is refused and the proposal stays pending, for
    an approver to refuse.
    """
    subject = f"reinstatement:{item_id}"
    staff = require_action(home, staff_id, StaffAction.DECIDE, subject=subject)
    proposal = reinstatement(home, item_id)
    if proposal.status != "pending":
        raise SmkiError("ra.already-decided", f"reinstatement proposal {item_id} was already {proposal.status}")
    prefix = proposal.kind
    require_second_person(home, staff, proposal.proposed_by, refused_event=f"{prefix}.dual-control-refused",
                          subject=proposal.subject, details={"item": item_id})
    text = _reason(reason)
    details: dict[str, Any] = {"item": item_id, "proposed_by": proposal.proposed_by, "reason": proposal.reason}
    if not approve:
        with home.store.transaction() as tx:
            tx.registry.decide_dual_control(item_id, "refused", staff.staff_id)
            tx.append_audit([AuditEvent(staff.staff_id, f"{prefix}.reinstatement-refused", proposal.subject,
                                        {**details, "refusal": text})])
        return reinstatement(home, item_id)
    if proposal.kind == "subscriber":
        policy = parse_policy(proposal.policy or "")
        _require_suspended_subscriber(home, proposal.subject, policy)
        details.update(policy=policy.value, to=SubscriberStanding.APPROVED.value)
    else:
        details["party"] = _require_suspended_aro(home, proposal.subject)
        details["to"] = AroStatus.ACTIVE.value
    details["from"] = "suspended"
    with home.store.transaction() as tx:
        tx.registry.decide_dual_control(item_id, "approved", staff.staff_id)
        # Suspended → approved/active is checked again by the UPDATE: a withdrawal or revocation another
        # transaction committed since the checks above is never undone (this one rolls back whole).
        if proposal.kind == "subscriber":
            changed = tx.registry.change_subscription(proposal.subject, details["policy"],
                                                      SubscriberStanding.SUSPENDED.value, details["to"])
        else:
            changed = tx.registry.change_aro_status(proposal.subject, AroStatus.SUSPENDED.value, details["to"])
        if not changed:
            raise SmkiError("ra.bad-standing" if proposal.kind == "subscriber" else "ra.bad-status",
                            f"{proposal.subject} is no longer suspended; the proposal stays, for an approver to refuse")
        tx.append_audit([AuditEvent(staff.staff_id, f"{prefix}.reinstated", proposal.subject, details)])
    return reinstatement(home, item_id)
