"""Registration Authority policy: the SEC rules, rule sets versioned by SEC Release, and decisions.

Pure code (no I/O, no clock, no database): callers pass snapshots of the facts and the date. The
rules live in :mod:`smki.ra.rules`, which rules apply when in :mod:`smki.ra.rulesets`, and the
decisions in :mod:`smki.ra.engine`; docs/policy.md lists every rule.
"""

from smki.ra.engine import (
    Decision,
    DecisionKind,
    Outcome,
    PolicyRefusal,
    RuleRefusal,
    check_device_limit,
    check_dual_control,
    check_eligible_subscriber,
    check_evidence_submitter,
    check_own_certificate,
    check_repository_access,
    check_staff_holds_role,
    check_staff_role,
    decide_access,
    decide_application,
    decide_request,
    refused_by_approver,
    render_explanation,
)
from smki.ra.rules import DEVICE_LIMIT, DOCUMENT_EVIDENCE, RuleResult, StaffAction, device_limit_refusal
from smki.ra.rulesets import RULESETS, RuleSet, ruleset_for, ruleset_named
from smki.ra.state import (
    Application,
    AroState,
    AroStatus,
    CertificateRequestFacts,
    Evidence,
    EvidenceBasis,
    PartyCategory,
    PartyState,
    RegisteredUserRole,
    StaffRole,
    SubscriberStanding,
)

__all__ = [
    "DEVICE_LIMIT",
    "DOCUMENT_EVIDENCE",
    "RULESETS",
    "Application",
    "AroState",
    "AroStatus",
    "CertificateRequestFacts",
    "Decision",
    "DecisionKind",
    "Evidence",
    "EvidenceBasis",
    "Outcome",
    "PartyCategory",
    "PartyState",
    "PolicyRefusal",
    "RegisteredUserRole",
    "RuleRefusal",
    "RuleResult",
    "RuleSet",
    "StaffAction",
    "StaffRole",
    "SubscriberStanding",
    "check_device_limit",
    "check_dual_control",
    "check_eligible_subscriber",
    "check_evidence_submitter",
    "check_own_certificate",
    "check_repository_access",
    "check_staff_holds_role",
    "check_staff_role",
    "decide_access",
    "decide_application",
    "decide_request",
    "device_limit_refusal",
    "refused_by_approver",
    "render_explanation",
    "ruleset_for",
    "ruleset_named",
]
