"""Rule sets, versioned by SEC Release: which rules apply to what, from which day (spec §2.2).

A rule set is data: for each Certificate Policy, the rule ids an application for Authorised
Subscriber status must pass and the rule ids every certificate request must pass. A decision is
made under the rule set in force on its date and names it, so a decision taken in 2019 still
explains itself in 2030.

A later rule set is *derived* from the one before with :meth:`RuleSet.extend`, which adds rules and
never changes the earlier set. Adding a future SEC modification is therefore: register its rules in
:mod:`smki.ra.rules`, derive its rule set here, and append it to :data:`RULESETS`
(docs/policy.md walks through an example).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType

from smki.domain import CertificatePolicy
from smki.errors import SmkiError
from smki.ra.rules import ACCESS_RULES, APPROVAL_RULES, POLICY_RULES, STAFF_RULES, RuleScope

ORG = CertificatePolicy.ORGANISATION
DEVICE = CertificatePolicy.DEVICE
RuleIds = tuple[str, ...]


def _known(ids: Sequence[str], table: Mapping[str, object], where: str) -> RuleIds:
    for rule_id in ids:
        if rule_id not in table:
            raise SmkiError("ra.rule-unknown", f"{where}: no rule is registered as {rule_id!r}")
    if len(set(ids)) != len(ids):
        raise SmkiError("ra.rule-duplicate", f"{where}: a rule is listed twice")
    return tuple(ids)


def _per_policy(
    rules: Mapping[CertificatePolicy, Sequence[str]], where: str
) -> Mapping[CertificatePolicy, RuleIds]:
    return MappingProxyType(
        {
            policy: _known(rules.get(policy, ()), POLICY_RULES, f"{where} ({policy.value})")
            for policy in CertificatePolicy
        }
    )


@dataclass(frozen=True)
class RuleSet:
    """The rules in force from ``effective_from`` until the next rule set takes over.

    ``control_rules`` govern RA staff (dual control, staff roles) rather than Parties;
    ``access_rules`` decide which certificates may be *read* over which route (from MP074: no
    Device Certificate over SPOTI).
    """

    name: str
    effective_from: date
    description: str
    application_rules: Mapping[CertificatePolicy, RuleIds]
    request_rules: Mapping[CertificatePolicy, RuleIds]
    control_rules: RuleIds = ()
    based_on: str | None = None
    access_rules: RuleIds = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "application_rules", _per_policy(self.application_rules, self.name))
        for ids in self.application_rules.values():
            for rule_id in ids:
                if POLICY_RULES[rule_id].scope is RuleScope.REQUEST:
                    raise SmkiError(
                        "ra.rule-misplaced",
                        f"{self.name}: {rule_id} reads a request and cannot judge an application",
                    )
        object.__setattr__(self, "request_rules", _per_policy(self.request_rules, self.name))
        object.__setattr__(
            self, "control_rules", _known(self.control_rules, {**APPROVAL_RULES, **STAFF_RULES}, self.name)
        )
        object.__setattr__(self, "access_rules", _known(self.access_rules, ACCESS_RULES, f"{self.name} (access)"))

    def for_application(self, policy: CertificatePolicy) -> RuleIds:
        """Rule ids an application for Authorised Subscriber status for ``policy`` must pass."""
        return self.application_rules[policy]

    def for_request(self, policy: CertificatePolicy) -> RuleIds:
        """Rule ids every certificate request under ``policy`` must pass."""
        return self.request_rules[policy]

    def for_access(self) -> RuleIds:
        """Rule ids every read of certificates (a Repository search or retrieval, a batch's results) must pass."""
        return self.access_rules

    def rule_ids(self) -> frozenset[str]:
        """Every rule id this rule set uses, anywhere."""
        ids = set(self.control_rules) | set(self.access_rules)
        for table in (self.application_rules, self.request_rules):
            for ids_for_policy in table.values():
                ids.update(ids_for_policy)
        return frozenset(ids)

    def extend(
        self,
        name: str,
        effective_from: date,
        description: str,
        *,
        application_rules: Mapping[CertificatePolicy, Sequence[str]] | None = None,
        request_rules: Mapping[CertificatePolicy, Sequence[str]] | None = None,
        control_rules: Sequence[str] = (),
        access_rules: Sequence[str] = (),
    ) -> RuleSet:
        """A new rule set: this one plus the given rules, in force from ``effective_from``.

        This rule set is left as it is, so every decision made under it stays reproducible.
        """
        if effective_from <= self.effective_from:
            raise SmkiError(
                "ra.ruleset-order", f"{name} must take effect after {self.name} ({self.effective_from})"
            )
        app_add = application_rules or {}
        req_add = request_rules or {}
        return RuleSet(
            name=name,
            effective_from=effective_from,
            description=description,
            application_rules={
                p: (*self.application_rules[p], *app_add.get(p, ())) for p in CertificatePolicy
            },
            request_rules={p: (*self.request_rules[p], *req_add.get(p, ())) for p in CertificatePolicy},
            control_rules=(*self.control_rules, *control_rules),
            based_on=self.name,
            access_rules=(*self.access_rules, *access_rules),
        )


_ARO_RULES = ("aro.active", "aro.identity-verified", "aro.belongs-to-party")

BASELINE = RuleSet(
    name="baseline",
    effective_from=date.min,
    description="Before MP074: RAPP §5.5 evidence of need and SREPT; no UEPT and no channel rule (so no "
    "access rule either: nothing then limited what SPOTI could read)",
    application_rules={
        ORG: ("any.srept-passed",),
        DEVICE: ("any.srept-passed", "device.evidence-of-need"),
    },
    request_rules={
        ORG: (
            "subscriber.authorised-for-policy",
            "any.srept-passed",
            "org.entity-belongs-to-party",
            "org.role-permitted",
            *_ARO_RULES,
        ),
        DEVICE: (
            "subscriber.authorised-for-policy",
            "any.srept-passed",
            "device.evidence-of-need",
            *_ARO_RULES,
        ),
    },
    control_rules=("ra.dual-control", "ra.staff-role"),
)

MP074 = BASELINE.extend(
    "MP074",
    date(2019, 11, 7),
    "MP074 'Clarity on Obtaining SMKI Device Certificates' (SEC November 2019 Release): UEPT and a "
    "DCC Gateway Connection for Device Certificates; Device CSRs only over the Gateway; SPOTI "
    "Organisation only, for CSRs and for access to certificates",
    application_rules={DEVICE: ("device.uept-completed", "device.gateway-channel")},
    request_rules={
        DEVICE: (
            "device.uept-completed",
            "device.gateway-channel",
            "channel.device-via-gateway",
            "channel.spoti-organisation-only",
        ),
    },
    access_rules=("channel.spoti-organisation-access",),
)

MP127 = MP074.extend(
    "MP127",
    date(2020, 11, 29),
    "MP127: AROs security-screened to BS 7858:2019 or equivalent",
    request_rules={ORG: ("aro.screened",), DEVICE: ("aro.screened",)},
)

RULESETS: tuple[RuleSet, ...] = (BASELINE, MP074, MP127)
"""Every rule set, oldest first. Append new ones; never edit or remove a released one."""


def ruleset_for(day: date, rulesets: Sequence[RuleSet] = RULESETS) -> RuleSet:
    """The rule set in force on ``day``: the latest one whose ``effective_from`` is not after it."""
    in_force = [rs for rs in rulesets if rs.effective_from <= day]
    if not in_force:
        raise SmkiError("ra.ruleset-none", f"no rule set is in force on {day.isoformat()}")
    return max(in_force, key=lambda rs: rs.effective_from)


def ruleset_named(name: str, rulesets: Sequence[RuleSet] = RULESETS) -> RuleSet:
    """The rule set called ``name`` (as stored in a decision), or a ``ra.ruleset-unknown`` refusal."""
    for rs in rulesets:
        if rs.name == name:
            return rs
    known = ", ".join(rs.name for rs in rulesets)
    raise SmkiError("ra.ruleset-unknown", f"no rule set is named {name!r} (known: {known})")
