"""The Portal's side of the RA services: the few things an ARO does that the services leave to staff.

Everything else the Portal does goes straight to ``smki.services.requests``, ``applications`` and
``registry``. The services record applications and evidence as RA staff actions (the CLI is the
RA's console); the Portal also lets an ARO *open* an application and *upload* supporting
documents for its own Party. Those two ARO actions live here, doing the same checks as
``applications.apply`` / ``add_evidence`` and auditing the ARO as the actor. An uploaded document
is recorded as evidence of kind ``document``: it supports the application, but only an RA operator
records the ``installation-need`` evidence the ``device.evidence-of-need`` rule reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from smki.audit import AuditEvent
from smki.domain import CertificatePolicy
from smki.errors import SmkiError
from smki.ra import CertificateRequestFacts, Decision, SubscriberStanding, decide_application
from smki.services.applications import PROPOSED, UNDECIDED
from smki.services.context import Home
from smki.services.ra_state import (
    application_state,
    evidence_basis,
    load_application,
    load_party,
    party_state,
    today,
)
from smki.services.requests import Requester, authorise
from smki.store.registry import ApplicationRecord

MAY_APPLY = frozenset({SubscriberStanding.NONE, SubscriberStanding.REFUSED, SubscriberStanding.WITHDRAWN})
"""As ``smki.services.applications``: apply afresh only if never applied, refused or withdrawn."""
DOCUMENT = "document"


@dataclass(frozen=True)
class AroActor:
    party_id: str
    aro_id: str

    @property
    def actor(self) -> str:
        return f"aro:{self.aro_id}@{self.party_id}"


def authorise_device(home: Home, requester: Requester) -> Decision:
    """The Device request rules for this requester's route (refuses on SPOTI before any CSR is read)."""
    return authorise(home, requester, CertificateRequestFacts(CertificatePolicy.DEVICE, requester.route))


def csr_policy(der: bytes) -> CertificatePolicy:
    """Which Certificate Policy a CSR asks for: a Device CSR has an empty subject (spec §4.4)."""
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError:
        raise SmkiError("csr.malformed", "not a PKCS#10 certificate signing request") from None
    return CertificatePolicy.DEVICE if len(csr.subject) == 0 else CertificatePolicy.ORGANISATION


def decision_today(home: Home, record: ApplicationRecord) -> Decision:
    """What the rules say about an application today, rule by rule (recomputed, never stored)."""
    party = party_state(load_party(home, record.party_id))
    return decide_application(application_state(record), party, today(), evidence_basis=evidence_basis(home))


def aro_apply(home: Home, who: AroActor, policy: CertificatePolicy) -> int:
    """An ARO opens its own Party's application for Authorised Subscriber status."""
    party = load_party(home, who.party_id)
    standing = SubscriberStanding(party.subscriptions.get(policy.value, SubscriberStanding.NONE.value))
    if any(a.policy == policy.value and a.status in UNDECIDED
           for a in home.store.registry.applications(party_id=who.party_id)):
        raise SmkiError("ra.application-open", f"{who.party_id} already has an open {policy.value} application")
    if standing not in MAY_APPLY:
        raise SmkiError("ra.already-subscriber", f"{who.party_id} is already {standing.value} as a "
                        f"{policy.value} subscriber")
    with home.store.transaction() as tx:
        application_id = tx.registry.add_application(who.party_id, policy.value)
        tx.registry.set_subscription(who.party_id, policy.value, SubscriberStanding.APPLIED.value)
        tx.append_audit([AuditEvent(who.actor, "application.opened", f"application:{application_id}", {
            "party": who.party_id, "policy": policy.value, "standing_before": standing.value, "via": "portal",
        })])
    return application_id


def aro_add_document(home: Home, who: AroActor, application_id: int, reference: str) -> None:
    """Record an uploaded document against the ARO's own undecided application.

    As with staff evidence, a document added after a proposal withdraws the proposal.
    """
    record = load_application(home, application_id)
    if record.party_id != who.party_id:
        raise SmkiError("ra.application-not-found", f"no application {application_id} for this Party")
    if record.status not in UNDECIDED:
        raise SmkiError("ra.application-status", f"application {application_id} is already {record.status}")
    with home.store.transaction() as tx:
        evidence_id = tx.registry.add_evidence(record.application_id, DOCUMENT, reference[:500], who.actor, today())
        if record.status == PROPOSED:
            tx.registry.update_application(record.application_id, expect_status=PROPOSED, status="open",
                                           proposal=None, proposed_by=None, proposed_at=None)
        tx.append_audit([AuditEvent(who.actor, "application.evidence-added", f"application:{application_id}", {
            "evidence_id": evidence_id, "kind": DOCUMENT, "reference": reference[:500],
            "proposal_withdrawn": record.status == PROPOSED, "via": "portal",
        })])
