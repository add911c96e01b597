"""Generate docs/policy.md's tables from the rule registry, so the documentation cannot drift.

Pure string functions: the test suite compares the generated tables with the ones in the document
(and rewrites them when ``SMKI_UPDATE_DOCS=1``), so a rule added without updating the docs fails CI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

from smki.domain import CertificatePolicy, RemotePartyRole, Route
from smki.errors import SmkiError
from smki.ra.engine import decide_request, render_explanation
from smki.ra.rules import (
    APPROVAL_RULES,
    DEVICE_COUNT_RULES,
    DEVICE_RULES,
    EVIDENCE_RULES,
    REPOSITORY_RULES,
    RESERVED_ROLE_RULES,
    REVOCATION_RULES,
    all_rules,
)
from smki.ra.rulesets import RULESETS, RuleSet
from smki.ra.state import (
    AroState,
    AroStatus,
    CertificateRequestFacts,
    PartyCategory,
    PartyState,
    SubscriberStanding,
)

BEGIN = "<!-- generated:{name}:begin (smki.ra.policydoc; do not edit by hand) -->"
END = "<!-- generated:{name}:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


_TABLE_PLACES: tuple[tuple[Mapping[str, object], str], ...] = (
    (REVOCATION_RULES, "revocation requested by an ARO"),
    (REPOSITORY_RULES, "every Repository request by a Party (XML services, JSON API certificates, CRL, ARL)"),
    (DEVICE_RULES, "each Device CSR of a subscriber's batch or Portal request (not the Ad Hoc service)"),
    (DEVICE_COUNT_RULES, "each Device CSR on every route (web services, Portal, smki request, smki issue), "
                         "before signing"),
    (RESERVED_ROLE_RULES, "RA staff actions reserved to one role"),
    (EVIDENCE_RULES, "evidence attached to an application"),
)
"""Where the rules of a table apply, for tables that no rule set lists (they are not dated by SEC Release)."""


def _where(rule_id: str, rulesets: Sequence[RuleSet]) -> str:
    """Where a rule is applied: application/request per policy, or RA staff control."""
    places: list[str] = []
    for policy in CertificatePolicy:
        if any(rule_id in rs.for_application(policy) for rs in rulesets):
            places.append(f"{policy.value} application")
    for policy in CertificatePolicy:
        if any(rule_id in rs.for_request(policy) for rs in rulesets):
            places.append(f"{policy.value} request")
    if any(rule_id in rs.for_access() for rs in rulesets):
        places.append("every read of certificates (Repository, batch results, Portal)")
    if any(rule_id in rs.control_rules for rs in rulesets):
        places.append("RA staff control")
    if rule_id in APPROVAL_RULES and not any(rule_id in rs.control_rules for rs in rulesets):
        places.append("an RA approver's decision on an application")
    places.extend(place for table, place in _TABLE_PLACES if rule_id in table)
    return ", ".join(places) or "unused"


def rules_table_markdown(rulesets: Sequence[RuleSet] = RULESETS) -> str:
    """Every registered rule: id, what it checks, where it applies, its SEC reference, its rule sets."""
    lines = [
        "| rule id | what it checks | applies to | SEC reference | rule sets |",
        "|---|---|---|---|---|",
    ]
    for rule in all_rules():
        member = [rs.name for rs in rulesets if rule.rule_id in rs.rule_ids()]
        undated = any(rule.rule_id in table for table, _ in _TABLE_PLACES)
        if undated or (rule.rule_id in APPROVAL_RULES and not member):
            # not dated by SEC Release
            member = ["all"]
        lines.append(
            f"| `{rule.rule_id}` | {_cell(rule.description)} | {_where(rule.rule_id, rulesets)} "
            f"| {_cell(rule.reference)} | {', '.join(member) or 'none'} |"
        )
    return "\n".join(lines)


def rulesets_table_markdown(rulesets: Sequence[RuleSet] = RULESETS) -> str:
    """Every rule set: name, first day in force, what it was derived from, and the rules it adds."""
    lines = ["| rule set | in force from | derived from | adds | what changed |", "|---|---|---|---|---|"]
    by_name = {rs.name: rs for rs in rulesets}
    for rs in rulesets:
        before = by_name[rs.based_on].rule_ids() if rs.based_on in by_name else frozenset()
        added = sorted(rs.rule_ids() - before)
        start = "always" if rs.effective_from.year == 1 else rs.effective_from.isoformat()
        lines.append(
            f"| `{rs.name}` | {start} | {rs.based_on or '-'} | "
            f"{', '.join(f'`{a}`' for a in added) or '-'} | {_cell(rs.description)} |"
        )
    return "\n".join(lines)


def rules_by_ruleset_markdown(rulesets: Sequence[RuleSet] = RULESETS) -> str:
    """For each rule set, the ordered rule ids for each application and request kind."""
    lines = ["| rule set | decision | rules, in evaluation order |", "|---|---|---|"]
    for rs in rulesets:
        for policy in CertificatePolicy:
            ids = ", ".join(f"`{i}`" for i in rs.for_application(policy))
            lines.append(f"| `{rs.name}` | {policy.value} application | {ids} |")
        for policy in CertificatePolicy:
            ids = ", ".join(f"`{i}`" for i in rs.for_request(policy))
            lines.append(f"| `{rs.name}` | {policy.value} request | {ids} |")
        ids = ", ".join(f"`{i}`" for i in rs.for_access()) or "none: every read is allowed"
        lines.append(f"| `{rs.name}` | access (reading certificates) | {ids} |")
    return "\n".join(lines)


def example_explanation() -> str:
    """``smki ra explain`` of a Device CSR over SPOTI from an approved, qualified Device subscriber."""
    party = PartyState(
        party_id="P1",
        name="Acme Energy",
        category=PartyCategory.LARGE_SUPPLIER,
        entity_roles={bytes.fromhex("90B3D51F30010000"): frozenset({RemotePartyRole.SUPPLIER})},
        srept_passed=date(2018, 6, 1),
        uept_completed=date(2018, 9, 1),
        registered_user_roles=frozenset({"import-supplier"}),
        gateway_connections=("GW-0001",),
        subscriber={CertificatePolicy.DEVICE: SubscriberStanding.APPROVED},
    )
    aro = AroState("A1", "P1", AroStatus.ACTIVE, identity_verified=date(2018, 7, 1), screened=None)
    facts = CertificateRequestFacts(CertificatePolicy.DEVICE, Route.SPOTI)
    decision = decide_request(facts, party, aro, date(2021, 2, 1))
    return "```text\n" + render_explanation(decision) + "```"


GENERATED = {
    "rules": rules_table_markdown,
    "rulesets": rulesets_table_markdown,
    "rules-by-ruleset": rules_by_ruleset_markdown,
    "example-explanation": example_explanation,
}


def replace_generated(document: str) -> str:
    """``document`` with every generated block replaced by freshly generated content."""
    for name, make in GENERATED.items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        start = document.find(begin)
        stop = document.find(end)
        if start < 0 or stop < start:
            raise SmkiError("docs.marker-missing", f"docs/policy.md lacks the {name!r} generated block")
        document = document[: start + len(begin)] + "\n" + make() + "\n" + document[stop:]
    return document
