"""Applications for Authorised Subscriber status, decided under dual control (four eyes).

The life of an application (one per Party and Certificate Policy):

* ``open`` — an RA operator records the application (``apply``) and its evidence, e.g. the RAPP
  §5.5 evidence of need (``add_evidence``);
* ``proposed`` — an RA operator runs the rules (``propose``): the engine's decision, rule by rule,
  is stored as the proposal. New evidence after that sends the application back to ``open``, so
  nobody approves on evidence the proposer never saw;
* ``approved`` / ``refused`` — a *different* person, an RA approver, decides (rule
  ``ra.dual-control``). Approval re-runs the rules on the approval date with the register as it is
  then and is refused if any rule fails; the final decision is stored beside the proposal, and the
  Party's standing for the policy becomes ``approved``.

Every step, and every refusal of a step, is audited with the decision it rests on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from smki.audit import AuditEvent
from smki.domain import CertificatePolicy
from smki.errors import SmkiError
from smki.ra import (
    DOCUMENT_EVIDENCE,
    Decision,
    RuleRefusal,
    StaffAction,
    SubscriberStanding,
    check_evidence_submitter,
    decide_application,
    refused_by_approver,
    render_explanation,
)
from smki.services.context import Home
from smki.services.ra_state import (
    application_state,
    evidence_basis,
    load_application,
    load_party,
    party_state,
    today,
)
from smki.services.registry import check_id, parse_policy
from smki.services.staff import require_action, require_second_person, staff_roles
from smki.services.typed_text import typed_text
from smki.store.registry import ApplicationRecord, StaffRecord

if TYPE_CHECKING:  # not at run time: smki.services.requests brings the issuance path and cryptography
    from smki.services.requests import Requester

OPEN = "open"
PROPOSED = "proposed"
APPROVED = "approved"
REFUSED = "refused"
UNDECIDED = (OPEN, PROPOSED)

_MAY_APPLY = frozenset({SubscriberStanding.NONE, SubscriberStanding.REFUSED, SubscriberStanding.WITHDRAWN})
"""[design] A Party applies afresh if it never applied, was refused, or was withdrawn; a suspended
subscriber is reinstated instead (``smki party subscriber --standing approved``)."""


DOCUMENT = DOCUMENT_EVIDENCE
"""The evidence kind of a document an ARO uploads (rule ``ra.aro-document-only``)."""


def _acting(home: Home, staff_id: str | None, aro: Requester | None, action: StaffAction,
            subject: str) -> tuple[str, dict[str, Any]]:
    """Who does a register step, and what its audit record says of how.

    RA staff need a role permitting ``action`` (rule ``ra.staff-role``, audited when refused); an
    ARO has already been authenticated by its SMKI credential and acts for its own Party only
    (:func:`_own_party`).
    """
    if aro is None:
        return require_action(home, staff_id, action, subject=subject).staff_id, {}
    return aro.actor, {"aro": aro.aro_id, "route": aro.route.value}


def _own_party(aro: Requester | None, party_id: str, subject: str) -> None:
    """An ARO sees another Party's application as not found, so nothing about it leaks."""
    if aro is not None and aro.party_id != party_id:
        raise SmkiError("ra.application-not-found", f"no {subject} for this Party")


def _audit(home: Home, actor: str, action: str, subject: str, details: dict[str, Any]) -> None:
    with home.store.transaction() as tx:
        tx.append_audit([AuditEvent(actor, action, subject, details)])


def _subject(record: ApplicationRecord) -> str:
    return f"application:{record.application_id}"


def _require_status(record: ApplicationRecord, *allowed: str) -> None:
    if record.status not in allowed:
        raise SmkiError("ra.application-status",
                        f"application {record.application_id} is {record.status}, not {' or '.join(allowed)}")


def apply(home: Home, party_id: str, policy: str | CertificatePolicy, *, staff_id: str | None = None,
          aro: Requester | None = None) -> ApplicationRecord:
    """Record a Party's application for Authorised Subscriber status for one Certificate Policy.

    An RA operator records it (``staff_id``), or the Party's own ARO opens it (``aro``, e.g. in the Portal).
    """
    parsed = parse_policy(policy)
    actor, how = _acting(home, staff_id, aro, StaffAction.MANAGE_REGISTER, party_id)
    _own_party(aro, party_id, f"Party {party_id}")
    party = load_party(home, party_id)
    standing = SubscriberStanding(party.subscriptions.get(parsed.value, SubscriberStanding.NONE.value))
    pending = [a for a in home.store.registry.applications(party_id=party_id)
               if a.policy == parsed.value and a.status in UNDECIDED]
    if pending:
        raise SmkiError("ra.application-open",
                        f"{party_id} already has application {pending[0].application_id} open for {parsed.value}")
    if standing not in _MAY_APPLY:
        raise SmkiError("ra.already-subscriber", f"{party_id} is already {standing.value} as a {parsed.value} "
                        "subscriber")
    with home.store.transaction() as tx:
        application_id = tx.registry.add_application(party_id, parsed.value)
        tx.registry.set_subscription(party_id, parsed.value, SubscriberStanding.APPLIED.value)
        tx.append_audit([AuditEvent(actor, "application.opened", f"application:{application_id}", {
            "party": party_id, "policy": parsed.value, "standing_before": standing.value, **how,
        })])
    return load_application(home, application_id)


def add_evidence(home: Home, application_id: int | str, kind: str, reference: str, *, staff_id: str | None = None,
                 aro: Requester | None = None, on: date | None = None) -> ApplicationRecord:
    """Attach evidence (e.g. ``installation-need`` under RAPP §5.5) to an undecided application.

    An RA operator records any kind (``staff_id``); the Party's own ARO uploads documents only
    (``aro``, kind ``document``). Evidence added after a proposal withdraws the proposal: the
    application must be proposed again.
    """
    kind = check_id(kind, "an evidence kind")[:40]
    text = typed_text(reference, "an evidence reference", limit=500, code="ra.bad-text")
    subject = f"application {application_id}"
    actor, how = _acting(home, staff_id, aro, StaffAction.RECORD_EVIDENCE, f"application:{application_id}")
    record = load_application(home, application_id)
    _own_party(aro, record.party_id, subject)
    verdict = check_evidence_submitter(kind, by_aro=aro is not None)
    if not verdict.passed:
        _audit(home, actor, "application.evidence-refused", _subject(record), {
            "kind": kind, "rule": verdict.rule_id, "reason": verdict.reason, "reference": verdict.reference, **how,
        })
        raise RuleRefusal(verdict, verdict.rule_id, verdict.reason)
    _require_status(record, *UNDECIDED)
    when = on or today()
    with home.store.transaction() as tx:
        evidence_id = tx.registry.add_evidence(record.application_id, kind, text, actor, when)
        if record.status == PROPOSED:
            tx.registry.update_application(record.application_id, expect_status=PROPOSED, status=OPEN,
                                           proposal=None, proposed_by=None, proposed_at=None)
        tx.append_audit([AuditEvent(actor, "application.evidence-added", _subject(record), {
            "evidence_id": evidence_id, "kind": kind, "reference": text, "on": when.isoformat(),
            "proposal_withdrawn": record.status == PROPOSED, **how,
        })])
    return load_application(home, record.application_id)


@dataclass(frozen=True)
class Decided:
    """An application after a step, with the decision the engine made at that step."""

    application: ApplicationRecord
    decision: Decision


def decide_on(home: Home, record: ApplicationRecord, on: date | None = None) -> Decision:
    """What the rules say about an application on ``on`` (default today), with the register as it
    is now, rule by rule: recomputed, never stored."""
    day = on or today()
    party = party_state(load_party(home, record.party_id), day)
    return decide_application(application_state(record), party, day, evidence_basis=evidence_basis(home))


def propose(home: Home, application_id: int | str, *, staff_id: str | None, on: date | None = None) -> Decided:
    """An RA operator runs the rules and records the result as the proposal for an approver.

    A proposal the rules refuse is still recorded (the approver will then refuse it); the caller
    shows the failing rules.
    """
    staff = require_action(home, staff_id, StaffAction.PROPOSE, subject=f"application:{application_id}")
    record = load_application(home, application_id)
    _require_status(record, OPEN)
    decision = decide_on(home, record, on or today())
    with home.store.transaction() as tx:
        tx.registry.update_application(record.application_id, expect_status=OPEN, status=PROPOSED,
                                       proposed_by=staff.staff_id, proposed_at=datetime.now(UTC),
                                       proposal=decision.to_dict())
        tx.append_audit([AuditEvent(staff.staff_id, "application.proposed", _subject(record), {
            "party": record.party_id, "policy": record.policy, "outcome": decision.outcome.value,
            "ruleset": decision.ruleset, "failed": list(decision.failed_ids), "decision": decision.to_dict(),
        })])
    return Decided(load_application(home, record.application_id), decision)


def _four_eyes(home: Home, record: ApplicationRecord, staff_id: str | None) -> StaffRecord:
    """The deciding approver, after ``ra.staff-role`` and ``ra.dual-control`` (both audited)."""
    subject = _subject(record)
    staff = require_action(home, staff_id, StaffAction.DECIDE, subject=subject)
    _require_status(record, PROPOSED)
    require_second_person(home, staff, record.proposed_by or "", refused_event="application.dual-control-refused",
                          subject=subject)
    return staff


def approve(home: Home, application_id: int | str, *, staff_id: str | None, on: date | None = None) -> Decided:
    """A different RA approver approves: the rules are run again on the approval date and must all pass.

    On success the Party becomes an approved Authorised Subscriber for the policy. If any rule
    fails, the attempt is audited and refused (``ra.refused``) and the application stays proposed,
    for the approver to refuse or for an operator to add evidence.
    """
    record = load_application(home, application_id)
    approver = _four_eyes(home, record, staff_id).staff_id
    decision = decide_on(home, record, on or today())
    if not decision.approved:
        _audit(home, approver, "application.approval-refused", _subject(record), {
            "party": record.party_id, "policy": record.policy, "ruleset": decision.ruleset,
            "failed": list(decision.failed_ids), "decision": decision.to_dict(),
        })
        raise decision.refusal()
    with home.store.transaction() as tx:
        tx.registry.update_application(record.application_id, expect_status=PROPOSED, status=APPROVED,
                                       decided_by=approver, decided_at=datetime.now(UTC),
                                       decision=decision.to_dict())
        tx.registry.set_subscription(record.party_id, record.policy, SubscriberStanding.APPROVED.value)
        tx.append_audit([AuditEvent(approver, "application.approved", _subject(record), {
            "party": record.party_id, "policy": record.policy, "proposed_by": record.proposed_by,
            "ruleset": decision.ruleset, "decision": decision.to_dict(),
        })])
    return Decided(load_application(home, record.application_id), decision)


def refuse(home: Home, application_id: int | str, reason: str, *, staff_id: str | None,
           on: date | None = None) -> Decided:
    """A different RA approver refuses, giving a reason: the rules' view on that date is stored with
    ``ra.approver-judgement`` failing on that reason, so the refusal always names the rule it rests on."""
    reason = typed_text(reason, "the reason for refusing", limit=500, code="ra.reason-required")
    record = load_application(home, application_id)
    staff = _four_eyes(home, record, staff_id)
    approver = staff.staff_id
    # The stored refusal names the rule it rests on (ra.approver-judgement), whatever the rules say.
    decision = refused_by_approver(decide_on(home, record, on or today()), record.proposed_by or "", approver,
                                   staff_roles(staff), reason)
    stored = {**decision.to_dict(), "reason": reason}
    with home.store.transaction() as tx:
        tx.registry.update_application(record.application_id, expect_status=PROPOSED, status=REFUSED,
                                       decided_by=approver, decided_at=datetime.now(UTC), decision=stored)
        tx.registry.set_subscription(record.party_id, record.policy, SubscriberStanding.REFUSED.value)
        tx.append_audit([AuditEvent(approver, "application.refused", _subject(record), {
            "party": record.party_id, "policy": record.policy, "proposed_by": record.proposed_by,
            "reason": reason, "ruleset": decision.ruleset, "failed": list(decision.failed_ids),
            "decision": decision.to_dict(),
        })])
    return Decided(load_application(home, record.application_id), decision)


def queue(home: Home) -> list[ApplicationRecord]:
    """Applications waiting for the RA: open (for evidence and a proposal) or proposed (for a decision)."""
    return [a for a in home.store.registry.applications() if a.status in UNDECIDED]


def applications(home: Home, party_id: str | None = None) -> list[ApplicationRecord]:
    """Every application (of one Party, if given)."""
    return home.store.registry.applications(party_id=party_id)


def stored_decisions(record: ApplicationRecord) -> tuple[Decision | None, Decision | None]:
    """The proposal and the final decision as stored (either may be absent)."""
    proposal = None if record.proposal is None else Decision.from_dict(record.proposal)
    final = None if record.decision is None else Decision.from_dict(record.decision)
    return proposal, final


def _when(value: datetime | None) -> str:
    return "?" if value is None else value.strftime("%Y-%m-%d %H:%M:%SZ")


def explain(home: Home, application_id: int | str) -> str:
    """The application, its evidence, and each stored decision rule by rule (``smki ra explain``)."""
    record = load_application(home, application_id)
    proposal, final = stored_decisions(record)
    lines = [
        f"Application {record.application_id}: {record.policy} Authorised Subscriber status for "
        f"{record.party_id} — {record.status}",
        f"Opened {_when(record.created_at)}",
    ]
    if record.evidence:
        lines.append("Evidence:")
        lines.extend(f"  - {e.kind}: {e.reference} (recorded by {e.recorded_by} on {e.recorded_on.isoformat()})"
                     for e in record.evidence)
    else:
        lines.append("Evidence: none recorded")
    text = "\n".join(lines) + "\n"
    if proposal is None:
        text += "\nNot yet proposed.\n"
    else:
        text += f"\n== Proposal by {record.proposed_by} at {_when(record.proposed_at)} ==\n"
        text += render_explanation(proposal)
    if final is not None and record.decision is not None:
        text += f"\n== Decision: {record.status} by {record.decided_by} at {_when(record.decided_at)} ==\n"
        if record.decision.get("reason"):
            text += f"Reason given: {record.decision['reason']}\n"
        text += render_explanation(final)
    return text
