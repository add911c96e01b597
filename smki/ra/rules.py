"""Every rule the Registration Authority applies, in one place, each citing what it rests on.

A rule is a small pure function named after what it decides. It is registered with a stable id
(the id appears in stored decisions, refusals and docs, so it never changes), a one-line
description, and the SEC reference text it rests on. References marked ``[design]`` are smki's own
decisions where the public record is silent (spec §2.2, §6).

Rules do not know about dates of SEC Releases: *which* rules apply on a given day is data, kept in
:mod:`smki.ra.rulesets`. A rule only reads the facts in its context and the decision date (facts
dated after the decision date were not yet true). Each returns a :class:`Verdict` whose reason is
one line saying why, so a refusal explains itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, Generic, NamedTuple, TypeVar

from smki.domain import CertificatePolicy, RemotePartyRole, Route
from smki.errors import SmkiError
from smki.ra.state import (
    INSTALLATION_NEED_EVIDENCE,
    Application,
    AroState,
    AroStatus,
    CertificateRequestFacts,
    EvidenceBasis,
    PartyCategory,
    PartyState,
    StaffRole,
    SubscriberStanding,
)

# --- the result types --------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict in a decision: which rule, pass/fail, why, and what it rests on."""

    rule_id: str
    passed: bool
    reason: str
    reference: str


class Verdict(NamedTuple):
    """What a rule function returns; the registry adds the rule id and reference."""

    passed: bool
    reason: str


def ok(reason: str) -> Verdict:
    """A passing verdict with its one-line reason."""
    return Verdict(True, reason)


def fail(reason: str) -> Verdict:
    """A failing verdict with its one-line reason."""
    return Verdict(False, reason)


# --- contexts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleContext:
    """The facts a policy rule may read.

    ``application`` is set when deciding an application for Authorised Subscriber status;
    ``request`` and ``aro`` when deciding a certificate request. ``policy`` is the Certificate
    Policy in question either way.
    """

    party: PartyState
    on: date
    policy: CertificatePolicy
    evidence_basis: EvidenceBasis = EvidenceBasis.INSTALLATION_NEED
    application: Application | None = None
    request: CertificateRequestFacts | None = None
    aro: AroState | None = None

    def need_request(self, rule_id: str) -> CertificateRequestFacts:
        """The request facts; a rule set that lists a request rule for applications is a bug."""
        if self.request is None:
            raise SmkiError("ra.rule-misplaced", f"rule {rule_id} needs a certificate request")
        return self.request

    def need_aro(self, rule_id: str) -> AroState:
        """The ARO acting on the request; only request rules may read it."""
        if self.aro is None:
            raise SmkiError("ra.rule-misplaced", f"rule {rule_id} needs the ARO acting on a request")
        return self.aro


class StaffAction(StrEnum):
    """What an RA staff member is trying to do, for the ``ra.staff-role`` rule."""

    RECORD_EVIDENCE = "record-evidence"
    PROPOSE = "propose"
    DECIDE = "decide"  # approve or refuse a proposal
    SUSPEND = "suspend"  # suspend/withdraw a subscriber, suspend an ARO
    MANAGE_REGISTER = "manage-register"  # parties, their status evidence, ARO nomination/verification
    READ = "read"


STAFF_PERMISSIONS: dict[StaffRole, frozenset[StaffAction]] = {
    StaffRole.RA_OPERATOR: frozenset(
        {
            StaffAction.RECORD_EVIDENCE,
            StaffAction.PROPOSE,
            StaffAction.SUSPEND,
            StaffAction.MANAGE_REGISTER,
            StaffAction.READ,
        }
    ),
    StaffRole.RA_APPROVER: frozenset({StaffAction.DECIDE, StaffAction.SUSPEND, StaffAction.READ}),
    StaffRole.AUDITOR: frozenset({StaffAction.READ}),
}
"""[design] Which staff role may do what. Suspension is open to operators and approvers because it
only ever withdraws a capability and must be quick; approving never is open to operators."""


@dataclass(frozen=True)
class ApprovalContext:
    """Facts for ``ra.dual-control`` and ``ra.approver-judgement``: who proposed a decision, who is
    approving or refusing it, and (when refusing) the approver's reason."""

    proposed_by: str
    approver: str
    approver_roles: frozenset[StaffRole]
    refusal_reason: str | None = None


@dataclass(frozen=True)
class RevocationContext:
    """Facts for ``revocation.own-certificate``: the certificate an ARO asks to revoke, the Entity
    Identifier it names, the Party the register says holds that Entity Identifier, and the ARO's Party."""

    serial: str
    entity_id: bytes | None
    entity_owner: str | None
    requesting_party: str


@dataclass(frozen=True)
class AccessContext:
    """Facts for ``channel.spoti-organisation-access``: a request to *read* certificates — of which
    Certificate Policy, named by ``subject`` (a serial, a search, a device batch's results) — and
    the route of the listener it reached. No Party and no date: the Repository answers any valid
    credential, RA staff's too, and what may be read over a route depends on the route alone."""

    route: Route
    policy: CertificatePolicy
    subject: str


@dataclass(frozen=True)
class StaffContext:
    """Facts for ``ra.staff-role``: a person, the roles they hold, and what they are attempting."""

    person: str
    roles: frozenset[StaffRole]
    action: StaffAction


@dataclass(frozen=True)
class ReservedRoleContext:
    """Facts for ``ra.staff-holds-role``: a person, the roles they hold, the one role an action is
    reserved to, and the action (``revoke-certificate``, ``approve-ca-revocation``, ``publish``…)."""

    person: str
    roles: frozenset[StaffRole]
    required: StaffRole
    action: str


@dataclass(frozen=True)
class EvidenceContext:
    """Facts for ``ra.aro-document-only``: the kind of evidence being attached to an application,
    and whether the Party's own ARO (rather than RA staff) is attaching it."""

    kind: str
    by_aro: bool


# --- the registry ------------------------------------------------------------------------------

C = TypeVar("C")


class RuleScope(StrEnum):
    """Where a policy rule may be listed: it reads request facts (and the ARO) only if ``request``."""

    ANY = "any"  # reads only the Party (and the application, if any): usable in both places
    REQUEST = "request"  # reads the request or the ARO: request rules only


@dataclass(frozen=True)
class Rule(Generic[C]):
    """A registered rule: id, one-line description, SEC reference, and the check itself."""

    rule_id: str
    description: str
    reference: str
    check: Callable[[C], Verdict]
    scope: RuleScope = RuleScope.ANY

    def evaluate(self, context: C) -> RuleResult:
        """Run the check and attach the rule's id and reference to the verdict."""
        verdict = self.check(context)
        return RuleResult(self.rule_id, verdict.passed, verdict.reason, self.reference)


POLICY_RULES: dict[str, Rule[RuleContext]] = {}
"""Rules that decide applications and certificate requests; rule sets name them by id."""

APPROVAL_RULES: dict[str, Rule[ApprovalContext]] = {}
STAFF_RULES: dict[str, Rule[StaffContext]] = {}
REVOCATION_RULES: dict[str, Rule[RevocationContext]] = {}
"""Rules that decide whether a subscriber's (ARO's) request to revoke a certificate may proceed."""
ACCESS_RULES: dict[str, Rule[AccessContext]] = {}
"""Rules that decide whether certificates of a policy may be read over a route; rule sets name them."""


class Eligible(StrEnum):
    """Who may request a Device's certificates in an SMI status: the cells of the eligibility table."""

    ANY = "any"  # any approved Device subscriber (the request rules have already checked that)
    SUPPLIER = "supplier"  # the Device's responsible Import or Gas Supplier
    NETWORK_OPERATOR = "network-operator"  # the Device's responsible Network Operator
    DCC = "dcc"  # a Party of category dcc


#: smki's reading of SEC L3.16 [design, spec §7.1]: SMI status → who may request. A status absent
#: from the table (or mapped to nothing) admits no one. ``unknown`` is a Device ID the register
#: does not know (see ``Settings.eligibility``).
DEFAULT_ELIGIBILITY: dict[str, frozenset[Eligible]] = {
    "unknown": frozenset({Eligible.ANY}),
    "pending": frozenset({Eligible.ANY}),
    "whitelisted": frozenset({Eligible.ANY}),
    "installed-not-commissioned": frozenset({Eligible.SUPPLIER, Eligible.DCC}),
    "commissioned": frozenset({Eligible.SUPPLIER, Eligible.DCC}),
    "recovered": frozenset({Eligible.SUPPLIER, Eligible.DCC}),
    "recovery": frozenset({Eligible.DCC}),
    "decommissioned": frozenset(),
    "withdrawn": frozenset(),
    "suspended": frozenset(),
}


class DeviceFacts(NamedTuple):
    """A Device as the device register holds it (None fields: no responsible Party recorded)."""

    smi_status: str
    import_supplier: str | None
    gas_supplier: str | None
    network_operator: str | None


@dataclass(frozen=True)
class EligibilityContext:
    """Facts for ``device.eligible-subscriber``: the requesting Party (id, category) and the Device
    a CSR names, as the register holds it (None: unknown to the register), and the table in force."""

    party_id: str
    party_category: PartyCategory
    device_id: bytes
    device: DeviceFacts | None
    table: dict[str, frozenset[Eligible]]


@dataclass(frozen=True)
class DeviceCountContext:
    """Facts for ``csr.device-limit``: a Device CSR's Device ID and how many Device Certificates
    count as issued for it already (every one ever issued, whatever its status, plus those of the
    same batch already let through)."""

    device_id: bytes
    issued: int


DEVICE_RULES: dict[str, Rule[EligibilityContext]] = {}
"""Rules evaluated per Device CSR (per Device ID), after the request rules admitted the request."""


@dataclass(frozen=True)
class RepositoryContext:
    """Facts for ``repository.srept-passed``: the Party reading the Repository, the date its SREPT
    was recorded as passed (None: never), and the day of the request."""

    party_id: str
    srept_passed: date | None
    on: date


REPOSITORY_RULES: dict[str, Rule[RepositoryContext]] = {}
"""Rules on a Party's access to the SMKI Repository (search, retrieve, CRL and ARL)."""

RESERVED_ROLE_RULES: dict[str, Rule[ReservedRoleContext]] = {}
"""Rules on RA staff actions reserved to one staff role, whatever ``ra.staff-role``'s table says."""
EVIDENCE_RULES: dict[str, Rule[EvidenceContext]] = {}
"""Rules on who may attach which evidence to an application for Authorised Subscriber status."""
DEVICE_COUNT_RULES: dict[str, Rule[DeviceCountContext]] = {}
"""Rules on the number of certificates a Device ID may have (evaluated per Device CSR, before signing)."""

AnyRule = (Rule[RuleContext] | Rule[ApprovalContext] | Rule[StaffContext] | Rule[RevocationContext]
           | Rule[EligibilityContext] | Rule[AccessContext] | Rule[RepositoryContext] | Rule[ReservedRoleContext]
           | Rule[EvidenceContext] | Rule[DeviceCountContext])


_TABLES: tuple[dict[str, Any], ...] = (POLICY_RULES, ACCESS_RULES, APPROVAL_RULES, STAFF_RULES, RESERVED_ROLE_RULES,
                                       EVIDENCE_RULES, REVOCATION_RULES, DEVICE_RULES, DEVICE_COUNT_RULES,
                                       REPOSITORY_RULES)


def _register(table: dict[str, Rule[C]], rule: Rule[C]) -> None:
    if any(rule.rule_id in t for t in _TABLES):
        raise SmkiError("ra.rule-duplicate", f"rule {rule.rule_id} is already registered")
    if "\n" in rule.description or "\n" in rule.reference:
        raise SmkiError("ra.rule-invalid", f"rule {rule.rule_id}: description and reference are one line")
    table[rule.rule_id] = rule


def policy_rule(
    rule_id: str, description: str, reference: str, *, scope: RuleScope = RuleScope.ANY
) -> Callable[[Callable[[RuleContext], Verdict]], Callable[[RuleContext], Verdict]]:
    """Register a policy rule under ``rule_id`` (decorator). Ids are permanent once released.

    ``scope=RuleScope.REQUEST`` marks a rule that reads the request or the ARO; rule sets refuse to
    list it for applications, so a misplaced rule fails when the rule set is built, not mid-decision.
    """

    def register(check: Callable[[RuleContext], Verdict]) -> Callable[[RuleContext], Verdict]:
        _register(POLICY_RULES, Rule(rule_id, description, reference, check, scope))
        return check

    return register


def all_rules() -> list[AnyRule]:
    """Every registered rule: policy, access, RA staff, evidence, revocation, per-Device, then
    Repository rules, each in registration order."""
    return [*POLICY_RULES.values(), *ACCESS_RULES.values(), *APPROVAL_RULES.values(), *STAFF_RULES.values(),
            *RESERVED_ROLE_RULES.values(), *EVIDENCE_RULES.values(), *REVOCATION_RULES.values(),
            *DEVICE_RULES.values(), *DEVICE_COUNT_RULES.values(), *REPOSITORY_RULES.values()]


def describe(rule_id: str) -> AnyRule:
    """The registered rule ``rule_id``, or a ``ra.rule-unknown`` refusal."""
    for table in _TABLES:
        if rule_id in table:
            found: AnyRule = table[rule_id]
            return found
    raise SmkiError("ra.rule-unknown", f"no rule is registered as {rule_id!r}")


# --- helpers -----------------------------------------------------------------------------------


def _dated_fact(when: date | None, on: date, what: str) -> Verdict:
    """Pass if ``what`` is recorded on or before the decision date; say which way it went."""
    if when is None:
        return fail(f"{what}: not recorded")
    if when > on:
        return fail(f"{what} dated {when.isoformat()}, after the decision date {on.isoformat()}")
    return ok(f"{what} on {when.isoformat()}")


def _eui(value: bytes) -> str:
    return "-".join(f"{b:02X}" for b in value)


def _role(role: RemotePartyRole) -> str:
    return f"{role.ou} ({role.name.lower().replace('_', ' ')})"


def _roles(roles: Iterable[RemotePartyRole]) -> str:
    shown = ", ".join(_role(r) for r in sorted(roles))
    return shown or "none"


# --- Device Certificate policy: application (RAPP §5.5, MP074) ----------------------------------

REF_RAPP_55 = "SEC Appendix D (SMKI RAPP) §5.5"
REF_MP074 = "as amended by MP074 (SEC November 2019 Release, 2019-11-07)"


#: Standings a Party can only have after its application was approved (its evidence judged).
_ONCE_APPROVED = frozenset({SubscriberStanding.APPROVED, SubscriberStanding.SUSPENDED, SubscriberStanding.WITHDRAWN})


@policy_rule(
    "device.evidence-of-need",
    "Reasonable evidence that the applicant needs Device Certificates, on the configured evidence basis",
    f"{REF_RAPP_55}; Agreed Interpretation written into the SEC by MP074; 'registered-user' basis from "
    "the DCC's comments in the MP074 Modification Report §7",
)
def evidence_of_need(ctx: RuleContext) -> Verdict:
    """Installation need (RAPP §5.5 evidence recorded by the RA) or, by option, Registered User status.

    Under ``installation-need`` the evidence is attached to the application, so at request time
    (no application) the rule defers to the approval that recorded it; under ``registered-user``
    the basis is a standing fact of the Party and is checked again on every request.
    """
    party = ctx.party
    if ctx.evidence_basis is EvidenceBasis.REGISTERED_USER:
        missing = []
        if not party.registered_user_roles:
            missing.append("holds no Registered User role")
        if not party.gateway_connections:
            missing.append("has no DCC Gateway Connection")
        if missing:
            return fail(f"registered-user basis: {party.party_id} " + " and ".join(missing))
        return ok(
            f"registered-user basis: Registered User ({', '.join(sorted(party.registered_user_roles))})"
            f" with DCC Gateway Connection {party.gateway_connections[0]}"
        )
    if ctx.application is None:
        # At request time the evidence was judged when the Device application was approved; a
        # Party whose Device application was never approved has had no evidence judged at all.
        standing = party.standing(CertificatePolicy.DEVICE)
        if standing in _ONCE_APPROVED:
            return ok(f"installation-need basis: judged when {party.party_id}'s Device subscriber "
                      f"application was approved (standing now {standing.value})")
        return fail(f"installation-need basis: {party.party_id} has no approved Device subscriber "
                    f"application (standing {standing.value}), so no evidence of need has been judged")
    needs = [e for e in ctx.application.evidence if e.kind == INSTALLATION_NEED_EVIDENCE]
    usable = [e for e in needs if e.reference.strip() and e.recorded_by.strip() and e.recorded_on <= ctx.on]
    if usable:
        # The earliest usable record, by content not by position: the same evidence in another order
        # (a restore, another database's row order) must give the same stored reason.
        first = min(usable, key=lambda e: (e.recorded_on, e.reference, e.recorded_by))
        return ok(
            f"installation-need evidence {first.reference!r} recorded by {first.recorded_by}"
            f" on {first.recorded_on.isoformat()}"
        )
    if needs:
        return fail(
            "installation-need evidence lacks a reference or recorder, or is dated after "
            f"{ctx.on.isoformat()}"
        )
    return fail("no installation-need evidence (RAPP §5.5) recorded on the application")


@policy_rule(
    "device.uept-completed",
    "The Party has completed the User Entry Process Tests (UEPT)",
    f"{REF_RAPP_55}, {REF_MP074}: the RA shall ensure the applicant has completed UEPT",
)
def uept_completed(ctx: RuleContext) -> Verdict:
    """MP074: only organisations that have completed UEPT may hold Device Certificates."""
    return _dated_fact(ctx.party.uept_completed, ctx.on, "UEPT completed")


@policy_rule(
    "device.gateway-channel",
    "The Party has a DCC Gateway Connection through which its Device CSRs will be submitted",
    f"{REF_RAPP_55}, {REF_MP074}: CSRs will be submitted via a DCC Gateway Connection",
)
def gateway_channel(ctx: RuleContext) -> Verdict:
    """MP074: Device CSRs come over a DCC Gateway Connection, so the Party must have one."""
    if not ctx.party.gateway_connections:
        return fail(f"{ctx.party.party_id} has no DCC Gateway Connection")
    return ok(f"DCC Gateway Connection {', '.join(ctx.party.gateway_connections)}")


# --- every Certificate Policy ------------------------------------------------------------------


@policy_rule(
    "any.srept-passed",
    "The Party has passed the SMKI and Repository Entry Process Tests (SREPT)",
    "SREPT must be passed before a Party applies to be an Authorised Subscriber for any Certificate "
    "Policy (DCC SMKI and Repository testing; spec §1)",
)
def srept_passed(ctx: RuleContext) -> Verdict:
    """SREPT gates every Certificate Policy, at application and again on each request."""
    return _dated_fact(ctx.party.srept_passed, ctx.on, "SREPT passed")


# --- request time: channel ---------------------------------------------------------------------


@policy_rule(
    "channel.device-via-gateway",
    "A Device CSR is accepted only over a DCC Gateway Connection, whatever the requester's status",
    "MP074 (SEC November 2019 Release): CSRs for Device Certificates are submitted via a DCC Gateway "
    "Connection; SEC Appendices D, M and N as amended by MP074",
    scope=RuleScope.REQUEST,
)
def device_via_gateway(ctx: RuleContext) -> Verdict:
    """No route but the Gateway may carry a Device CSR: not SPOTI, and not the operator console.

    [design] The console is refused too: the SEC text admits no exception, and the MP074 invariant
    (no Device Certificate unless the request came over the Gateway) must hold for every route.
    """
    request = ctx.need_request("channel.device-via-gateway")
    if request.policy is not CertificatePolicy.DEVICE:
        return ok("not a Device CSR")
    if request.route is Route.GATEWAY:
        return ok("Device CSR arrived over a DCC Gateway Connection")
    return fail(f"Device CSR arrived by {request.route.value}; only a DCC Gateway Connection may carry one")


REF_SPOTI_ORGANISATION_ONLY = (
    "MP074 Modification Report §7 (DCC comments adopted): Parties using SPOTI can only access "
    "Organisation Certificates, not Device Certificates; SEC Appendix N as amended by MP074"
)


@policy_rule(
    "channel.spoti-organisation-only",
    "SPOTI (the SMKI Portal over the Internet) serves Organisation Certificates only: no Device CSR over SPOTI",
    REF_SPOTI_ORGANISATION_ONLY,
    scope=RuleScope.REQUEST,
)
def spoti_organisation_only(ctx: RuleContext) -> Verdict:
    """SPOTI may carry Organisation CSRs only; other routes are not this rule's business.

    The same SEC sentence also forbids *reading* Device Certificates over SPOTI; that half is the
    sibling access rule ``channel.spoti-organisation-access``, because a read has no Party, ARO or
    CSR for this rule's context to hold.
    """
    request = ctx.need_request("channel.spoti-organisation-only")
    if request.route is Route.OPERATOR:
        return ok("operator console, not SPOTI")
    if request.route is not Route.SPOTI:
        return ok(f"arrived by {request.route.value}, not SPOTI")
    if request.policy is CertificatePolicy.ORGANISATION:
        return ok("Organisation CSR over SPOTI")
    return fail("SPOTI serves Organisation Certificates only, and this is a Device CSR")


def spoti_organisation_access(ctx: AccessContext) -> Verdict:
    """Over SPOTI nothing of a Device Certificate is handed out: not the certificate, not a search
    for one, not a device batch's status or results, not a Portal page or download of them.

    [design] The route alone decides, whoever asks (an ARO, an Authorised System or RA staff): the
    SEC sentence is about the channel, and a Device Certificate read over SPOTI is the same
    disclosure whoever reads it. Certificate Authority certificates are not Device Certificates and
    stay readable, as do the CRL and ARL.
    """
    if ctx.route is not Route.SPOTI:
        return ok(f"{ctx.subject} read by {ctx.route.value}, not SPOTI")
    if ctx.policy is CertificatePolicy.ORGANISATION:
        return ok(f"{ctx.subject} read over SPOTI: Organisation Certificates")
    return fail(f"{ctx.subject} read over SPOTI: SPOTI gives access to Organisation Certificates only, "
                "never Device Certificates")


_register(
    ACCESS_RULES,
    Rule(
        "channel.spoti-organisation-access",
        "Over SPOTI only Organisation Certificates can be accessed: no Device Certificate, Device search, "
        "or device batch status or result (Repository, JSON API, DCC XML services, Portal)",
        REF_SPOTI_ORGANISATION_ONLY,
        spoti_organisation_access,
    ),
)


# --- request time: subscriber standing ---------------------------------------------------------


@policy_rule(
    "subscriber.authorised-for-policy",
    "The Party is an approved Authorised Subscriber for the Certificate Policy (not suspended/withdrawn)",
    "SEC Section L (SMKI) and Appendix D (SMKI RAPP): only an Authorised Subscriber for a Certificate "
    "Policy may have Certificates issued under it",
    scope=RuleScope.REQUEST,
)
def authorised_for_policy(ctx: RuleContext) -> Verdict:
    """Read live standing: a suspension or withdrawal takes effect on the very next request."""
    standing = ctx.party.standing(ctx.policy)
    if standing is SubscriberStanding.APPROVED:
        return ok(f"approved {ctx.policy.value} subscriber")
    return fail(f"{ctx.party.party_id} is {standing.value}, not approved, as a {ctx.policy.value} subscriber")


# --- request time: Organisation CSRs -----------------------------------------------------------

CA_ROLES = frozenset({RemotePartyRole.ROOT, RemotePartyRole.ISSUING_AUTHORITY})
"""[design] Roles that name the CAs themselves (OU 00 Root, 07 Organisation CA): never a subscriber's."""


@policy_rule(
    "org.entity-belongs-to-party",
    "An Organisation CSR names one of the requesting Party's own Entity Identifiers",
    "SEC Appendix D (SMKI RAPP): an Organisation Certificate binds the Subscriber's own Entity "
    "Identifier (spec §2.1 rule 8)",
    scope=RuleScope.REQUEST,
)
def entity_belongs_to_party(ctx: RuleContext) -> Verdict:
    """A Party must never obtain a certificate that speaks for another organisation's identifier."""
    request = ctx.need_request("org.entity-belongs-to-party")
    eid = request.entity_id
    if eid is None:
        return fail("the CSR names no Entity Identifier")
    if len(eid) != 8:
        return fail(f"the CSR's Entity Identifier is {len(eid)} octets, not 8")
    if eid not in ctx.party.entity_roles:
        return fail(f"Entity Identifier {_eui(eid)} is not one of {ctx.party.party_id}'s")
    return ok(f"Entity Identifier {_eui(eid)} is {ctx.party.party_id}'s")


@policy_rule(
    "org.role-permitted",
    "An Organisation CSR names a Remote Party Role recorded for that Entity Identifier (never a CA role)",
    "SEC Appendix D (SMKI RAPP): the Remote Party Role in an Organisation Certificate is one the "
    "Subscriber may hold (spec §2.1 rule 8, §4); CA roles 00/07 excluded [design]",
    scope=RuleScope.REQUEST,
)
def role_permitted(ctx: RuleContext) -> Verdict:
    """The OU of the certificate is the role other systems trust; only a recorded role may be named."""
    request = ctx.need_request("org.role-permitted")
    role = request.role
    if role is None:
        return fail("the CSR names no Remote Party Role")
    if role in CA_ROLES:
        return fail(f"role {_role(role)} is a CA role, never issued to a subscriber")
    eid = request.entity_id
    if eid is None or eid not in ctx.party.entity_roles:
        return fail(f"role {_role(role)} cannot be permitted: the Entity Identifier is not the Party's")
    permitted = ctx.party.entity_roles[eid]
    if role not in permitted:
        return fail(f"role {_role(role)} is not recorded for {_eui(eid)} (may hold: {_roles(permitted)})")
    return ok(f"role {_role(role)} is recorded for {_eui(eid)}")


# --- request time: the ARO acting for the Party ------------------------------------------------

REF_ARO = "SEC Appendix D (SMKI RAPP): Authorised Responsible Officers act for a Party on SMKI services"


@policy_rule(
    "aro.active",
    "The ARO acting on the request is active (not suspended or revoked)",
    REF_ARO,
    scope=RuleScope.REQUEST,
)
def aro_active(ctx: RuleContext) -> Verdict:
    """A suspended ARO is stopped on its very next request, because status is read live."""
    aro = ctx.need_aro("aro.active")
    if aro.status is AroStatus.ACTIVE:
        return ok(f"ARO {aro.aro_id} is active")
    return fail(f"ARO {aro.aro_id} is {aro.status.value}")


@policy_rule(
    "aro.identity-verified",
    "The ARO's identity has been verified by the RA",
    f"{REF_ARO}; identity verified by the RA (spec §1)",
    scope=RuleScope.REQUEST,
)
def aro_identity_verified(ctx: RuleContext) -> Verdict:
    """Nobody acts for a Party on SMKI services until the RA has verified who they are."""
    aro = ctx.need_aro("aro.identity-verified")
    return _dated_fact(aro.identity_verified, ctx.on, f"ARO {aro.aro_id} identity verified")


@policy_rule(
    "aro.screened",
    "The ARO has been security-screened to BS 7858:2019 or equivalent",
    "MP127 (effective 2020-11-29): AROs security-screened to BS 7858:2019 or equivalent (SECCo MP127)",
    scope=RuleScope.REQUEST,
)
def aro_screened(ctx: RuleContext) -> Verdict:
    """MP127 adds screening; rule sets before it do not list this rule, so it never bites earlier."""
    aro = ctx.need_aro("aro.screened")
    return _dated_fact(aro.screened, ctx.on, f"ARO {aro.aro_id} screened to BS 7858:2019")


@policy_rule(
    "aro.belongs-to-party",
    "The ARO acting on the request was nominated by the requesting Party",
    f"{REF_ARO}; an ARO acts only for the Party whose SRO nominated it [design]",
    scope=RuleScope.REQUEST,
)
def aro_belongs_to_party(ctx: RuleContext) -> Verdict:
    """An ARO's credentials never let it act for another Party."""
    aro = ctx.need_aro("aro.belongs-to-party")
    if aro.party_id == ctx.party.party_id:
        return ok(f"ARO {aro.aro_id} acts for {ctx.party.party_id}")
    return fail(f"ARO {aro.aro_id} acts for {aro.party_id}, not {ctx.party.party_id}")


# --- RA staff: dual control and roles ----------------------------------------------------------


def _same_person(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def dual_control(ctx: ApprovalContext) -> Verdict:
    """Four eyes: the proposer never decides, and only an RA approver decides."""
    problems = []
    if not ctx.proposed_by.strip() or not ctx.approver.strip():
        problems.append("proposer and approver must both be named")
    elif _same_person(ctx.proposed_by, ctx.approver):
        problems.append(f"{ctx.approver} proposed this and cannot also approve or refuse it")
    if StaffRole.RA_APPROVER not in ctx.approver_roles:
        problems.append(f"{ctx.approver or 'the approver'} does not hold the RA approver role")
    if problems:
        return fail("; ".join(problems))
    return ok(f"proposed by {ctx.proposed_by}, decided by RA approver {ctx.approver}")


_register(
    APPROVAL_RULES,
    Rule(
        "ra.dual-control",
        "A decision is proposed by one person and approved or refused by a different RA approver",
        "[design] four-eyes control of RA decisions (issue 3 item 4), following the RAPP's separation "
        "of RA duties",
        dual_control,
    ),
)


def approver_judgement(ctx: ApprovalContext) -> Verdict:
    """The approver's own judgement, recorded as a rule so a refusal always names what it rests on.

    Approving passes it; refusing fails it with the approver's reason, also when every policy rule
    passed (the RA "shall determine ... whether there is reasonable evidence": a recorded evidence
    reference is necessary, not sufficient).
    """
    reason = " ".join((ctx.refusal_reason or "").split())
    if reason:
        return fail(f"refused by RA approver {ctx.approver}: {reason}")
    return ok(f"RA approver {ctx.approver} found no reason to refuse")


_register(
    APPROVAL_RULES,
    Rule(
        "ra.approver-judgement",
        "An RA approver may refuse an application, giving the reason, even when every policy rule passes",
        f"{REF_RAPP_55}: the Registration Authority shall determine whether there is reasonable evidence "
        "(Agreed Interpretation written into the SEC by MP074); the judgement is the approver's, recorded "
        "with its reason [design]",
        approver_judgement,
    ),
)


def _held(roles: Iterable[StaffRole]) -> str:
    return ", ".join(sorted(r.value for r in roles)) or "no RA staff role"


def staff_role(ctx: StaffContext) -> Verdict:
    """Each RA action needs a staff role that permits it; the auditor only reads."""
    allowed = sorted(r.value for r in ctx.roles if ctx.action in STAFF_PERMISSIONS[r])
    if allowed:
        return ok(f"{ctx.person} may {ctx.action.value} as {allowed[0]}")
    return fail(f"{ctx.person} ({_held(ctx.roles)}) may not {ctx.action.value}")


_register(
    STAFF_RULES,
    Rule(
        "ra.staff-role",
        "The RA staff member holds a role permitting the action (operator, approver, read-only auditor)",
        "[design] RA staff roles: RA operator, RA approver, auditor (issue 3 item 1)",
        staff_role,
    ),
)


def staff_holds_role(ctx: ReservedRoleContext) -> Verdict:
    """Some RA actions belong to one role by design, not by the ``ra.staff-role`` permission table:
    an RA operator revokes Organisation Certificates, sets Repository statuses, publishes lists and
    proposes CA revocations; an RA approver decides CA revocations (with ``ra.dual-control``)."""
    if ctx.required not in ctx.roles:
        return fail(f"{ctx.person!r} ({_held(ctx.roles)}) does not hold the {ctx.required.value} role that "
                    f"{ctx.action} needs")
    return ok(f"{ctx.person} may {ctx.action} as {ctx.required.value}")


_register(
    RESERVED_ROLE_RULES,
    Rule(
        "ra.staff-holds-role",
        "An RA action reserved to one staff role (revoking an Organisation Certificate, setting a Repository "
        "status, publishing a CRL or ARL, proposing or deciding a CA revocation) is taken by a holder of that role",
        "[design] RA staff roles: RA operator, RA approver, auditor (issue 3 item 1); CA certificates revoked "
        "under dual control, operator proposing and approver deciding (issue 5)",
        staff_holds_role,
    ),
)


# --- evidence attached to an application -------------------------------------------------------

DOCUMENT_EVIDENCE = "document"
"""The evidence kind of a document an ARO uploads: it supports an application, but only RA staff
record the evidence the policy rules read (e.g. ``installation-need`` for ``device.evidence-of-need``)."""


def aro_document_only(ctx: EvidenceContext) -> Verdict:
    """An ARO uploads supporting documents; the evidence the RA judges is recorded by RA staff."""
    if not ctx.by_aro:
        return ok(f"RA staff record {ctx.kind} evidence")
    if ctx.kind == DOCUMENT_EVIDENCE:
        return ok("an ARO uploads a document")
    return fail(f"an ARO uploads documents; only an RA operator records {ctx.kind} evidence")


_register(
    EVIDENCE_RULES,
    Rule(
        "ra.aro-document-only",
        "The Party's ARO may attach only documents to its application; any other evidence (e.g. installation "
        "need) is recorded by an RA operator",
        f"{REF_RAPP_55}: the Registration Authority shall determine whether there is reasonable evidence, so "
        "the evidence the rules read is the RA's record, not the applicant's claim [design]",
        aro_document_only,
    ),
)


# --- revocation requested by a subscriber ----------------------------------------------------


def own_certificate(ctx: RevocationContext) -> Verdict:
    """An ARO revokes only certificates naming one of its own Party's Entity Identifiers."""
    named = _eui(ctx.entity_id) if ctx.entity_id else "no Entity Identifier"
    if ctx.entity_id is not None and ctx.entity_owner == ctx.requesting_party:
        return ok(f"certificate {ctx.serial} names {named}, an Entity Identifier of {ctx.requesting_party}")
    return fail(f"certificate {ctx.serial} names {named}, which is not an Entity Identifier of Party "
                f"{ctx.requesting_party!r}")


_register(
    REVOCATION_RULES,
    Rule(
        "revocation.own-certificate",
        "An ARO may revoke only an Organisation Certificate naming one of its own Party's Entity Identifiers",
        "[design] SMKI RAPP: revocation is requested by an Authorised Subscriber for its own certificates; "
        "RA staff revoke any (issue 5)",
        own_certificate,
    ),
)


# --- per Device CSR (issue 13) -------------------------------------------------------------------


_ELIGIBLE_WHO = {Eligible.ANY: "any approved Device subscriber", Eligible.SUPPLIER: "its responsible supplier",
                 Eligible.NETWORK_OPERATOR: "its responsible Network Operator", Eligible.DCC: "the DCC"}


def eligible_subscriber(ctx: EligibilityContext) -> Verdict:
    """Whether the requesting Party may have a certificate for this Device in its SMI status."""
    status = "unknown" if ctx.device is None else ctx.device.smi_status
    allowed = ctx.table.get(status, frozenset())
    device = _eui(ctx.device_id)
    if Eligible.ANY in allowed:
        return ok(f"Device {device} is {status}: any approved Device subscriber may request")
    if Eligible.DCC in allowed and ctx.party_category is PartyCategory.DCC:
        return ok(f"Device {device} is {status}: {ctx.party_id} is the DCC")
    if ctx.device is not None:
        suppliers = {ctx.device.import_supplier, ctx.device.gas_supplier} - {None}
        if Eligible.SUPPLIER in allowed and ctx.party_id in suppliers:
            return ok(f"Device {device} is {status}: {ctx.party_id} is its responsible supplier")
        if Eligible.NETWORK_OPERATOR in allowed and ctx.party_id == ctx.device.network_operator:
            return ok(f"Device {device} is {status}: {ctx.party_id} is its responsible Network Operator")
    if not allowed:
        return fail(f"Device {device} is {status}: no one may request its certificates")
    who = " or ".join(_ELIGIBLE_WHO[e] for e in sorted(allowed))
    return fail(f"Device {device} is {status}: only {who} may request its certificates, not {ctx.party_id}")


_register(
    DEVICE_RULES,
    Rule(
        "device.eligible-subscriber",
        "The requester is an Eligible Subscriber for the Device: its Party may request certificates for a "
        "Device in that SMI status (configurable eligibility table)",
        "SEC L3.16 (Eligible Subscribers); SEC Appendix M v8.0, batch and Portal status INELIGIBLE: 'The "
        "Remote Party Role of the requester is limited to requesting certificates for meters in certain "
        "provisioning states'; the table is smki's reading [design, spec §7.1]",
        eligible_subscriber,
        RuleScope.REQUEST,
    ),
)


DEVICE_LIMIT = 100
"""At most this many Device Certificates per Device ID (spec §3.2; the DCC's ``CR:CL1``)."""


def device_limit_refusal(device_id: bytes, issued: int) -> str | None:
    """``csr.device-limit`` as the batch issuance's tight loop calls it, once per Device CSR, with
    the two facts it already holds: None while the Device is under the limit, else the refusal's
    one-line reason. No context object is built, so the decision costs no more than the comparison
    it replaced; :func:`device_limit` is the same decision as a registered rule."""
    if issued < DEVICE_LIMIT:
        return None
    return f"{DEVICE_LIMIT} Device Certificates have already been issued for Device ID {device_id.hex().upper()}"


def device_limit(ctx: DeviceCountContext) -> Verdict:
    """Once a Device ID has its hundredth certificate, every further CSR for it is refused, whoever asks."""
    refusal = device_limit_refusal(ctx.device_id, ctx.issued)
    if refusal is not None:
        return fail(refusal)
    return ok(f"{ctx.issued} of {DEVICE_LIMIT} Device Certificates issued for Device ID {ctx.device_id.hex().upper()}")


_register(
    DEVICE_COUNT_RULES,
    Rule(
        "csr.device-limit",
        f"At most {DEVICE_LIMIT} Device Certificates are issued per Device ID, counting every one ever issued "
        "whatever its status (CSR_ERROR CR:CL1)",
        "SEC Appendix M v8.0 §2.3-2.5 (Device CSR web services and Portal batches): a CSR is rejected once 100 "
        "Device Certificates have been issued for its Device ID (spec §3.2)",
        device_limit,
        RuleScope.REQUEST,
    ),
)


# --- access to the Repository ------------------------------------------------------------------


def repository_srept(ctx: RepositoryContext) -> Verdict:
    """SREPT gates the Repository as it gates every Certificate Policy (spec §1)."""
    verdict = _dated_fact(ctx.srept_passed, ctx.on, "SREPT passed")
    return Verdict(verdict.passed, f"{ctx.party_id}: {verdict.reason}")


_register(
    REPOSITORY_RULES,
    Rule(
        "repository.srept-passed",
        "A Party reading the SMKI Repository has passed the SMKI and Repository Entry Process Tests (SREPT)",
        "SREPT must be passed before a Party may access the SMKI Repository (DCC SMKI and Repository "
        "testing; spec §1)",
        repository_srept,
    ),
)
