"""Stand-ins for the RA services the Portal calls (``smki.services.requests``, ``registry``,
``applications`` of issue 3), kept to the smallest thing the pages need.

Why here: when the Portal was built those services were not merged, and the Portal owns only its
own files. Every function has the name and shape issue 3 gives its service (``Requester``,
``authorise``, ``request_organisation``, ``request_device``, ``request_device_batch``, propose /
approve / refuse, ARO nominate / verify / screen / suspend), and each does the same thing the
service must: read the register, ask the pure policy engine (``smki.ra``), and write the change
with its audit record in one transaction. When issue 3 lands, the Portal's ``app.py`` imports
those instead and this module is deleted; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from cryptography import x509

from smki.audit import AuditEvent
from smki.domain import CertificatePolicy, RemotePartyRole, Route
from smki.errors import NotFound, SmkiError
from smki.ra import (
    Application,
    AroState,
    AroStatus,
    CertificateRequestFacts,
    Decision,
    Evidence,
    PartyCategory,
    PartyState,
    PolicyRefusal,
    StaffRole,
    SubscriberStanding,
    check_dual_control,
    decide_application,
    decide_request,
)
from smki.services.batch_sources import BatchItem
from smki.services.context import Home
from smki.services.device_issuance import BatchSummary, DeviceOutcome, issue_device_batch
from smki.services.org_issuance import IssuedOrganisation, issue_organisation
from smki.services.staff import require_staff
from smki.store.registry import ApplicationRecord, AroRecord, PartyRecord


def today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class Requester:
    """Who is asking and how: the Party, the ARO acting for it, and the listener's route."""

    party_id: str
    aro_id: str
    route: Route


# -- snapshots for the policy engine ------------------------------------------------------------


def party_state(record: PartyRecord) -> PartyState:
    subscriber = {}
    for policy, standing in record.subscriptions.items():
        try:
            subscriber[CertificatePolicy(policy)] = SubscriberStanding(standing)
        except ValueError:
            continue  # a standing this code does not know gives no rights
    entity_roles = {}
    for entity, roles in record.entities.items():
        known = set()
        for role in roles:
            try:
                known.add(RemotePartyRole(role))
            except ValueError:
                continue
        entity_roles[entity] = frozenset(known)
    try:
        category = PartyCategory(record.category)
    except ValueError:
        category = PartyCategory.OTHER_SEC_PARTY
    return PartyState(
        party_id=record.party_id, name=record.name, category=category, entity_roles=entity_roles,
        srept_passed=record.srept_passed, uept_completed=record.uept_completed,
        registered_user_roles=frozenset(record.registered_user_roles),
        gateway_connections=record.gateway_connections, subscriber=subscriber,
    )


def aro_state(record: AroRecord) -> AroState:
    try:
        status = AroStatus(record.status)
    except ValueError:
        status = AroStatus.SUSPENDED
    return AroState(record.aro_id, record.party_id, status, record.identity_verified, record.screened)


def application_state(record: ApplicationRecord) -> Application:
    evidence = tuple(Evidence(e.kind, e.reference, e.recorded_by, e.recorded_on) for e in record.evidence)
    return Application(str(record.application_id), record.party_id, CertificatePolicy(record.policy), evidence)


# -- requests ------------------------------------------------------------------------------------


def authorise(home: Home, requester: Requester, policy: CertificatePolicy, *, entity_id: bytes | None = None,
              role: RemotePartyRole | None = None) -> Decision:
    """Decide the request under the rules in force today; refusals are audited and raised."""
    party = home.store.registry.require_party(requester.party_id)
    aro = home.store.registry.aro(requester.aro_id)
    if aro is None:
        raise NotFound("ra.aro-not-found", f"no ARO {requester.aro_id!r}")
    facts = CertificateRequestFacts(policy, requester.route, entity_id, role)
    decision = decide_request(facts, party_state(party), aro_state(aro), today(),
                              evidence_basis=home.settings.evidence_basis)
    if not decision.approved:
        with home.store.transaction() as tx:
            tx.append_audit([AuditEvent(_actor(requester), "request.refused", requester.party_id,
                                        {"route": requester.route.value, "decision": decision.to_dict()})])
        raise decision.refusal()
    return decision


def _actor(requester: Requester) -> str:
    return f"aro:{requester.aro_id}"


def csr_policy(der: bytes) -> CertificatePolicy:
    """Which Certificate Policy a CSR asks for: a Device CSR has an empty subject (spec §4.4)."""
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError:
        raise SmkiError("csr.malformed", "not a PKCS#10 certificate signing request") from None
    return CertificatePolicy.DEVICE if len(csr.subject) == 0 else CertificatePolicy.ORGANISATION


def request_organisation(home: Home, requester: Requester, csr_data: bytes) -> IssuedOrganisation:
    from smki.ca.csr import check_organisation_csr, decode_csr_text

    request = check_organisation_csr(decode_csr_text(csr_data))
    decision = authorise(home, requester, CertificatePolicy.ORGANISATION, entity_id=request.entity_id,
                         role=request.role)
    return issue_organisation(home, csr_data, actor=_actor(requester), extra_audit={
        "party": requester.party_id, "route": requester.route.value, "ruleset": decision.ruleset,
    })


def request_device_batch(home: Home, requester: Requester, items: Sequence[BatchItem], *, batch_ref: str,
                         workers: int | None = None,
                         on_chunk: Callable[[Sequence[DeviceOutcome]], None] | None = None) -> BatchSummary:
    authorise(home, requester, CertificatePolicy.DEVICE)
    return issue_device_batch(home, items, actor=_actor(requester), batch_ref=batch_ref, workers=workers,
                              on_chunk=on_chunk)


def request_device(home: Home, requester: Requester, csr_data: bytes, *, ref: str) -> DeviceOutcome:
    outcomes: list[DeviceOutcome] = []
    request_device_batch(home, requester, [BatchItem(0, ref, csr_data)], batch_ref=ref, workers=0,
                         on_chunk=outcomes.extend)
    return outcomes[0]


# -- applications --------------------------------------------------------------------------------


def apply(home: Home, party_id: str, policy: CertificatePolicy, *, actor: str) -> int:
    """Open an application for Authorised Subscriber status (one open application per policy)."""
    home.store.registry.require_party(party_id)
    if any(a.policy == policy.value and a.status in ("open", "proposed")
           for a in home.store.registry.applications(party_id=party_id)):
        raise SmkiError("ra.application-open", f"{party_id} already has an open {policy.value} application")
    with home.store.transaction() as tx:
        app_id = tx.registry.add_application(party_id, policy.value)
        tx.registry.set_subscription(party_id, policy.value, SubscriberStanding.APPLIED.value)
        tx.append_audit([AuditEvent(actor, "application.opened", str(app_id),
                                    {"party": party_id, "policy": policy.value})])
    return app_id


def require_application(home: Home, application_id: int) -> ApplicationRecord:
    record = home.store.registry.application(application_id)
    if record is None:
        raise NotFound("ra.application-not-found", f"no application {application_id}")
    return record


def add_evidence(home: Home, application_id: int, kind: str, reference: str, *, actor: str) -> int:
    require_application(home, application_id)
    kind, reference = kind.strip(), reference.strip()
    if not kind or not reference or len(kind) > 64 or len(reference) > 500:
        raise SmkiError("ra.evidence-invalid", "evidence needs a kind (≤ 64 characters) and a reference (≤ 500)")
    with home.store.transaction() as tx:
        evidence_id = tx.registry.add_evidence(application_id, kind, reference, actor, today())
        tx.append_audit([AuditEvent(actor, "evidence.recorded", str(application_id),
                                    {"kind": kind, "reference": reference})])
    return evidence_id


def explain(home: Home, application_id: int) -> Decision:
    """What the rules say about the application today (recomputed, never stored)."""
    record = require_application(home, application_id)
    party = home.store.registry.require_party(record.party_id)
    return decide_application(application_state(record), party_state(party), today(),
                              evidence_basis=home.settings.evidence_basis)


def propose(home: Home, application_id: int, *, staff_id: str, approve: bool, note: str = "") -> Decision:
    """An RA operator proposes a decision; the stored proposal carries the rule-by-rule explanation."""
    require_staff(home, staff_id, StaffRole.RA_OPERATOR.value)
    decision = explain(home, application_id)
    if approve and not decision.approved:
        raise decision.refusal()
    proposal = {"outcome": "approve" if approve else "refuse", "note": note[:500], "decision": decision.to_dict()}
    with home.store.transaction() as tx:
        tx.registry.update_application(application_id, expect_status="open", status="proposed",
                                       proposed_by=staff_id, proposed_at=datetime.now(UTC), proposal=proposal)
        tx.append_audit([AuditEvent(f"staff:{staff_id}", "application.proposed", str(application_id), proposal)])
    return decision


def decide(home: Home, application_id: int, *, staff_id: str, approve: bool) -> Decision:
    """A different RA approver approves or refuses the proposal (dual control, ``ra.dual-control``)."""
    approver = require_staff(home, staff_id, StaffRole.RA_APPROVER.value)
    record = require_application(home, application_id)
    if record.status != "proposed" or record.proposed_by is None:
        raise SmkiError("ra.not-proposed", f"application {application_id} has no proposal to decide")
    four_eyes = check_dual_control(record.proposed_by, staff_id, [StaffRole(r) for r in approver.roles])
    if not four_eyes.passed:
        raise SmkiError("ra.dual-control", four_eyes.reason)
    decision = explain(home, application_id)
    if approve and not decision.approved:
        raise decision.refusal()
    status = "approved" if approve else "refused"
    stored: dict[str, Any] = {"outcome": status, "decision": decision.to_dict()}
    with home.store.transaction() as tx:
        tx.registry.update_application(application_id, expect_status="proposed", status=status,
                                       decided_by=staff_id, decided_at=datetime.now(UTC), decision=stored)
        tx.registry.set_subscription(record.party_id, record.policy,
                                     SubscriberStanding.APPROVED.value if approve else SubscriberStanding.REFUSED.value)
        tx.append_audit([AuditEvent(f"staff:{staff_id}", f"application.{status}", str(application_id), stored)])
    return decision


# -- AROs ----------------------------------------------------------------------------------------


def nominate_aro(home: Home, party_id: str, aro_id: str, name: str, *, nominated_by: str, staff_id: str) -> None:
    require_staff(home, staff_id, StaffRole.RA_OPERATOR.value)
    home.store.registry.require_party(party_id)
    if not aro_id or len(aro_id) > 64 or not name.strip():
        raise SmkiError("ra.aro-invalid", "an ARO needs an id (1 to 64 characters) and a name")
    with home.store.transaction() as tx:
        tx.registry.add_aro(aro_id, party_id, name.strip(), nominated_by.strip() or "SRO")
        tx.append_audit([AuditEvent(f"staff:{staff_id}", "aro.nominated", aro_id,
                                    {"party": party_id, "name": name.strip(), "nominated_by": nominated_by})])


def _aro_change(home: Home, aro_id: str, staff_id: str, role: StaffRole, action: str, **values: Any) -> None:
    require_staff(home, staff_id, role.value)
    if home.store.registry.aro(aro_id) is None:
        raise NotFound("ra.aro-not-found", f"no ARO {aro_id!r}")
    with home.store.transaction() as tx:
        tx.registry.update_aro(aro_id, **values)
        tx.append_audit([AuditEvent(f"staff:{staff_id}", action, aro_id,
                                    {k: str(v) for k, v in values.items()})])


def verify_aro(home: Home, aro_id: str, check: str, *, staff_id: str) -> None:
    if not check.strip():
        raise SmkiError("ra.aro-check-missing", "say what identity documents were checked")
    _aro_change(home, aro_id, staff_id, StaffRole.RA_OPERATOR, "aro.verified", identity_verified=today(),
                identity_check=check.strip()[:200], verified_by=staff_id)


def screen_aro(home: Home, aro_id: str, standard: str, *, staff_id: str) -> None:
    _aro_change(home, aro_id, staff_id, StaffRole.RA_OPERATOR, "aro.screened", screened=today(),
                screening_standard=(standard.strip() or "BS 7858:2019")[:64])


def suspend_aro(home: Home, aro_id: str, *, staff_id: str) -> None:
    record = home.store.registry.staff(staff_id)
    role = StaffRole.RA_APPROVER if record and "ra-approver" in record.roles else StaffRole.RA_OPERATOR
    _aro_change(home, aro_id, staff_id, role, "aro.suspended", status=AroStatus.SUSPENDED.value)


__all__ = [
    "PolicyRefusal",
    "Requester",
    "add_evidence",
    "apply",
    "authorise",
    "csr_policy",
    "decide",
    "explain",
    "nominate_aro",
    "propose",
    "request_device",
    "request_device_batch",
    "request_organisation",
    "screen_aro",
    "suspend_aro",
    "verify_aro",
]
