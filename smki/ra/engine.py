"""The RA policy engine: decide applications and requests under the rule set in force, and explain.

Pure: the caller passes the Party's and ARO's state and the date; nothing here reads a clock, a
file or a database. Every rule of the rule set is evaluated, never stopping at the first failure,
so a refusal lists *every* failing rule with its reason and SEC reference, and a stored decision
(:meth:`Decision.to_dict`) can be re-explained later without the state it was made from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from smki.domain import CertificatePolicy, Route
from smki.errors import SmkiError
from smki.ra.rules import (
    ACCESS_RULES,
    APPROVAL_RULES,
    DEVICE_COUNT_RULES,
    DEVICE_RULES,
    EVIDENCE_RULES,
    POLICY_RULES,
    REPOSITORY_RULES,
    RESERVED_ROLE_RULES,
    REVOCATION_RULES,
    STAFF_RULES,
    AccessContext,
    ApprovalContext,
    DeviceCountContext,
    EligibilityContext,
    EvidenceContext,
    RepositoryContext,
    ReservedRoleContext,
    RevocationContext,
    RuleContext,
    RuleResult,
    StaffAction,
    StaffContext,
)
from smki.ra.rulesets import RULESETS, RuleSet, ruleset_for
from smki.ra.state import (
    Application,
    AroState,
    CertificateRequestFacts,
    EvidenceBasis,
    PartyState,
    StaffRole,
)

DECISION_FORMAT = 1
"""Version of :meth:`Decision.to_dict`'s layout; bump it (and read old ones) if it ever changes."""


class Outcome(StrEnum):
    """What the RA decided."""

    APPROVE = "approve"
    REFUSE = "refuse"


class DecisionKind(StrEnum):
    """Whether a decision is on an application for subscriber status, on a certificate request, or
    on a read of certificates (``access``)."""

    APPLICATION = "application"
    REQUEST = "request"
    ACCESS = "access"


@dataclass(frozen=True)
class Decision:
    """A decision with its full rule-by-rule explanation and the rule set it was made under."""

    outcome: Outcome
    ruleset: str
    decided_on: date
    results: tuple[RuleResult, ...]
    kind: DecisionKind
    subject: str
    evidence_basis: EvidenceBasis = EvidenceBasis.INSTALLATION_NEED

    @property
    def approved(self) -> bool:
        """True when every rule passed."""
        return self.outcome is Outcome.APPROVE

    @property
    def failed(self) -> tuple[RuleResult, ...]:
        """The rules that failed, in evaluation order (empty when approved)."""
        return tuple(r for r in self.results if not r.passed)

    @property
    def failed_ids(self) -> tuple[str, ...]:
        """Ids of the rules that failed: what a refusal reports to the requester."""
        return tuple(r.rule_id for r in self.failed)

    def refusal(self) -> PolicyRefusal:
        """The error to raise for a refused decision (a ``ra.refused`` SmkiError carrying the decision)."""
        if self.approved:
            raise SmkiError("ra.not-refused", "an approved decision has no refusal")
        return PolicyRefusal(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record of the decision, for the store and for ``smki ra explain``."""
        return {
            "format": DECISION_FORMAT,
            "kind": self.kind.value,
            "subject": self.subject,
            "outcome": self.outcome.value,
            "ruleset": self.ruleset,
            "decided_on": self.decided_on.isoformat(),
            "evidence_basis": self.evidence_basis.value,
            "results": [
                {"rule_id": r.rule_id, "passed": r.passed, "reason": r.reason, "reference": r.reference}
                for r in self.results
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Rebuild a stored decision; a malformed or inconsistent record is ``ra.decision-invalid``."""
        try:
            return _decision_from_dict(data)
        except SmkiError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SmkiError("ra.decision-invalid", f"not a stored decision: {exc}") from None


class PolicyRefusal(SmkiError):
    """A request or application refused by the RA rules; carries the decision for its explanation."""

    def __init__(self, decision: Decision) -> None:
        ids = ", ".join(decision.failed_ids)
        super().__init__("ra.refused", f"refused under rule set {decision.ruleset} by {ids}")
        self.decision = decision

    def __reduce__(self) -> tuple[type[PolicyRefusal], tuple[Decision]]:  # type: ignore[override]
        return (type(self), (self.decision,))


class RuleRefusal(SmkiError):
    """A refusal by one RA rule outside a Decision (``repository.srept-passed``, ``ra.dual-control``,
    ``ra.staff-role``…); carries the rule's result, so every interface can show the rule, its reason
    and its SEC reference without looking the rule up again.

    ``code`` and ``message`` default to ``ra.refused`` and "refused by <rule>: <reason>"; a service
    whose refusal had its own stable code before it carried the rule (``ra.dual-control``,
    ``staff.role-required``) passes that code and message, so clients matching on them see no change.
    """

    def __init__(self, result: RuleResult, code: str = "ra.refused", message: str | None = None) -> None:
        super().__init__(code, f"refused by {result.rule_id}: {result.reason}" if message is None else message)
        self.result = result

    def __reduce__(self) -> tuple[type[RuleRefusal], tuple[RuleResult, str, str]]:  # type: ignore[override]
        return (type(self), (self.result, self.code, self.message))


def _invalid(message: str) -> SmkiError:
    return SmkiError("ra.decision-invalid", message)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{what} must be text")
    return value


def _decision_from_dict(data: Mapping[str, Any]) -> Decision:
    if not isinstance(data, Mapping):
        raise _invalid("a stored decision is a mapping")
    if data.get("format") != DECISION_FORMAT:
        raise _invalid(f"unsupported decision format {data.get('format')!r}")
    raw_results = data["results"]
    if not isinstance(raw_results, list):
        raise _invalid("results must be a list")
    results = []
    for raw in raw_results:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("passed"), bool):
            raise _invalid("each result needs rule_id, passed (true/false), reason and reference")
        results.append(
            RuleResult(
                rule_id=_text(raw["rule_id"], "rule_id"),
                passed=raw["passed"],
                reason=_text(raw["reason"], "reason"),
                reference=_text(raw["reference"], "reference"),
            )
        )
    outcome = Outcome(_text(data["outcome"], "outcome"))
    if outcome is not _outcome(results):
        raise _invalid(f"outcome {outcome.value} does not follow from the rule results")
    return Decision(
        outcome=outcome,
        ruleset=_text(data["ruleset"], "ruleset"),
        decided_on=date.fromisoformat(_text(data["decided_on"], "decided_on")),
        results=tuple(results),
        kind=DecisionKind(_text(data["kind"], "kind")),
        subject=_text(data["subject"], "subject"),
        evidence_basis=EvidenceBasis.parse(_text(data["evidence_basis"], "evidence_basis")),
    )


def _outcome(results: Iterable[RuleResult]) -> Outcome:
    return Outcome.APPROVE if all(r.passed for r in results) else Outcome.REFUSE


def _evaluate(rule_ids: Iterable[str], context: RuleContext) -> tuple[RuleResult, ...]:
    # Every rule runs, whatever the earlier ones said: a refusal must name all its reasons.
    return tuple(POLICY_RULES[rule_id].evaluate(context) for rule_id in rule_ids)


def _chosen(on: date, ruleset: RuleSet | None) -> RuleSet:
    return ruleset if ruleset is not None else ruleset_for(on, RULESETS)


def _decided(rules: RuleSet, on: date, results: tuple[RuleResult, ...], kind: DecisionKind, subject: str,
             basis: EvidenceBasis = EvidenceBasis.INSTALLATION_NEED) -> Decision:
    """The decision the ``results`` of ``rules`` make: approved exactly when every rule passed."""
    return Decision(outcome=_outcome(results), ruleset=rules.name, decided_on=on, results=results, kind=kind,
                    subject=subject, evidence_basis=basis)


def decide_application(
    application: Application,
    party: PartyState,
    on: date,
    *,
    evidence_basis: EvidenceBasis | str = EvidenceBasis.INSTALLATION_NEED,
    ruleset: RuleSet | None = None,
) -> Decision:
    """Decide an application for Authorised Subscriber status under the rule set in force on ``on``.

    ``ruleset`` overrides the choice by date, for what-if questions ("under MP127, would…?");
    the decision still names the rule set actually used.
    """
    basis = EvidenceBasis.parse(evidence_basis)
    if application.party_id != party.party_id:
        raise SmkiError(
            "ra.party-mismatch",
            f"application {application.application_id} is for {application.party_id}, not {party.party_id}",
        )
    rules = _chosen(on, ruleset)
    context = RuleContext(
        party=party, on=on, policy=application.policy, evidence_basis=basis, application=application
    )
    results = _evaluate(rules.for_application(application.policy), context)
    subject = (f"application {application.application_id}: {application.policy.value} Authorised "
               f"Subscriber status for {party.party_id}")
    return _decided(rules, on, results, DecisionKind.APPLICATION, subject, basis)


def decide_request(
    facts: CertificateRequestFacts,
    party: PartyState,
    aro: AroState,
    on: date,
    *,
    evidence_basis: EvidenceBasis | str = EvidenceBasis.INSTALLATION_NEED,
    ruleset: RuleSet | None = None,
) -> Decision:
    """Decide a certificate request (any route) before any key is touched.

    Applies the rule set's request rules for the request's Certificate Policy: channel rules,
    subscriber standing, the Party's standing facts (SREPT; from MP074 UEPT and a Gateway
    Connection for Device), the ARO rules and, for Organisation CSRs, the entity and role rules.
    The ARO need not belong to ``party``: ``aro.belongs-to-party`` refuses it if not.
    """
    basis = EvidenceBasis.parse(evidence_basis)
    rules = _chosen(on, ruleset)
    context = RuleContext(
        party=party, on=on, policy=facts.policy, evidence_basis=basis, request=facts, aro=aro
    )
    results = _evaluate(rules.for_request(facts.policy), context)
    subject = (f"{facts.policy.value} certificate request from {party.party_id} by ARO {aro.aro_id} "
               f"via {facts.route.value}")
    return _decided(rules, on, results, DecisionKind.REQUEST, subject, basis)


def decide_access(route: Route, policy: CertificatePolicy, subject: str, on: date, *,
                  ruleset: RuleSet | None = None) -> Decision:
    """Decide whether certificates of ``policy`` (``subject``: a serial, a search, a device batch)
    may be read over ``route``, under the access rules of the rule set in force on ``on``.

    A rule set with no access rules (before MP074) approves every read; from MP074 a Device
    Certificate read over SPOTI is refused by ``channel.spoti-organisation-access``.
    """
    rules = _chosen(on, ruleset)
    context = AccessContext(route=route, policy=policy, subject=subject)
    results = tuple(ACCESS_RULES[rule_id].evaluate(context) for rule_id in rules.for_access())
    return _decided(rules, on, results, DecisionKind.ACCESS, f"access to {subject} ({policy.value}) via {route.value}")


def check_dual_control(proposed_by: str, approver: str, approver_roles: Iterable[StaffRole]) -> RuleResult:
    """``ra.dual-control``: a different person, holding the RA approver role, approves or refuses."""
    context = ApprovalContext(proposed_by, approver, frozenset(approver_roles))
    return APPROVAL_RULES["ra.dual-control"].evaluate(context)


def refused_by_approver(decision: Decision, proposed_by: str, approver: str,
                        approver_roles: Iterable[StaffRole], reason: str) -> Decision:
    """The final decision when an RA approver refuses an application: the rules' own results plus
    ``ra.approver-judgement`` failing with the approver's reason, so the stored refusal names the
    rule it rests on even when every policy rule passed."""
    context = ApprovalContext(proposed_by, approver, frozenset(approver_roles), refusal_reason=reason)
    judgement = APPROVAL_RULES["ra.approver-judgement"].evaluate(context)
    if judgement.passed:
        raise SmkiError("ra.reason-required", "give the reason for refusing")
    results = (*decision.results, judgement)
    return Decision(outcome=_outcome(results), ruleset=decision.ruleset, decided_on=decision.decided_on,
                    results=results, kind=decision.kind, subject=decision.subject,
                    evidence_basis=decision.evidence_basis)


def check_staff_role(person: str, roles: Iterable[StaffRole], action: StaffAction) -> RuleResult:
    """``ra.staff-role``: ``person`` holds a staff role that permits ``action``."""
    return STAFF_RULES["ra.staff-role"].evaluate(StaffContext(person, frozenset(roles), action))


def check_staff_holds_role(person: str, roles: Iterable[StaffRole], required: StaffRole, action: str) -> RuleResult:
    """``ra.staff-holds-role``: ``person`` holds ``required``, the one role ``action`` is reserved to."""
    return RESERVED_ROLE_RULES["ra.staff-holds-role"].evaluate(
        ReservedRoleContext(person, frozenset(roles), required, action))


def check_evidence_submitter(kind: str, *, by_aro: bool) -> RuleResult:
    """``ra.aro-document-only``: an ARO attaches only documents; RA staff record any kind of evidence."""
    return EVIDENCE_RULES["ra.aro-document-only"].evaluate(EvidenceContext(kind, by_aro))


def check_device_limit(device_id: bytes, issued: int) -> RuleResult:
    """``csr.device-limit`` for one Device CSR, as a rule result (the batch path's tight loop calls
    :func:`smki.ra.rules.device_limit_refusal` directly: the same decision, without a result object)."""
    return DEVICE_COUNT_RULES["csr.device-limit"].evaluate(DeviceCountContext(device_id, issued))


def check_own_certificate(serial: str, entity_id: bytes | None, entity_owner: str | None,
                          requesting_party: str) -> RuleResult:
    """``revocation.own-certificate``: the certificate names an Entity Identifier of the ARO's Party."""
    context = RevocationContext(serial, entity_id, entity_owner, requesting_party)
    return REVOCATION_RULES["revocation.own-certificate"].evaluate(context)


def check_repository_access(party_id: str, srept_passed: date | None, on: date) -> RuleResult:
    """``repository.srept-passed``: the Party reading the Repository has passed SREPT by ``on``."""
    return REPOSITORY_RULES["repository.srept-passed"].evaluate(RepositoryContext(party_id, srept_passed, on))


def check_eligible_subscriber(context: EligibilityContext) -> RuleResult:
    """``device.eligible-subscriber`` for one Device CSR (SEC L3.16)."""
    return DEVICE_RULES["device.eligible-subscriber"].evaluate(context)


def render_explanation(decision: Decision) -> str:
    """A plain-text table of the decision, rule by rule, for ``smki ra explain`` and the audit trail."""
    head = [
        ("Decision", decision.outcome.value.upper()),
        ("Subject", decision.subject),
        ("Rule set", decision.ruleset),
        ("Decided on", decision.decided_on.isoformat()),
        ("Evidence basis", decision.evidence_basis.value),
    ]
    label = max(len(k) for k, _ in head)
    lines = [f"{k:<{label}}  {v}" for k, v in head]
    lines.append("")
    width = max([len("rule"), *(len(r.rule_id) for r in decision.results)])
    lines.append(f"{'result':<6}  {'rule':<{width}}  reason")
    lines.append(f"{'-' * 6}  {'-' * width}  {'-' * 6}")
    for r in decision.results:
        lines.append(f"{'PASS' if r.passed else 'FAIL':<6}  {r.rule_id:<{width}}  {r.reason}")
        lines.append(f"{'':<6}  {'':<{width}}  ref: {r.reference}")
    lines.append("")
    if decision.approved:
        lines.append(f"Approved: all {len(decision.results)} rules passed.")
    else:
        failed = decision.failed_ids
        lines.append(f"Refused by {len(failed)} of {len(decision.results)} rules: {', '.join(failed)}")
    return "\n".join(lines) + "\n"


__all__ = [
    "Decision",
    "DecisionKind",
    "Outcome",
    "PolicyRefusal",
    "StaffAction",
    "StaffRole",
    "check_device_limit",
    "check_dual_control",
    "check_eligible_subscriber",
    "check_evidence_submitter",
    "check_staff_holds_role",
    "check_staff_role",
    "decide_access",
    "decide_application",
    "decide_request",
    "refused_by_approver",
    "render_explanation",
]
