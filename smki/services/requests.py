"""Request-time enforcement: the subscriber path every listener calls before any key is touched.

A subscriber's request (an ARO acting for a Party, arriving by a route the *listener* knows) is
checked against the RA's request rules (``smki.ra.decide_request``) with the Party and ARO read
fresh from the register, so a suspension or withdrawal takes effect on the very next request.
A refusal is audited (``request.refused``, with the failing rule ids and the whole decision) and
raised as ``ra.refused``; nothing is signed. An approved request is issued, and its audit names
the Party, the ARO, the route and the rules it passed.

Device batches are authorised once, for the Device policy, before the batch is read: the rules
read nothing from a Device CSR, and a refused batch must not cost a single signature.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from smki.audit import AuditEvent
from smki.domain import CertificatePolicy, Route
from smki.errors import NotFound, SmkiError
from smki.ra import CertificateRequestFacts, Decision, decide_request
from smki.services.batch_sources import BatchItem
from smki.services.context import Home
from smki.services.device_issuance import (
    DEFAULT_CHUNK,
    BatchSummary,
    DeviceOutcome,
    InTransaction,
    ReadAhead,
    SigningPool,
    issue_device_batch,
)
from smki.services.key_register import Screen, in_order
from smki.services.org_issuance import IssuedOrganisation, issue_organisation
from smki.services.ra_state import aro_state, evidence_basis, party_state, today
from smki.store.registry import AroRecord, PartyRecord


@dataclass(frozen=True)
class Requester:
    """Who is asking and how: an ARO acting for a Party, over the route of the listener it reached."""

    party_id: str
    aro_id: str
    route: Route
    #: The ARO's record as this request read it when it checked the client's credential (the API's
    #: identity), so the RA rules need not read it again; ``None``: read it when the rules apply.
    aro: AroRecord | None = field(default=None, compare=False, repr=False)
    #: The Party's record as this request read it with the client's credential, likewise; ``None``:
    #: read it when the rules apply.
    party: PartyRecord | None = field(default=None, compare=False, repr=False)

    def party_read(self) -> PartyRecord | None:
        """The Party's record this request has read already, if it is this requester's Party."""
        return self.party if self.party is not None and self.party.party_id == self.party_id else None

    @property
    def actor(self) -> str:
        """The audit actor: ``aro:<ARO>@<Party>``."""
        return f"aro:{self.aro_id}@{self.party_id}"

    def audit_details(self) -> dict[str, Any]:
        return {"party": self.party_id, "aro": self.aro_id, "route": Route(self.route).value}


def _audit(home: Home, requester: Requester, action: str, subject: str, details: dict[str, Any]) -> None:
    with home.store.transaction() as tx:
        tx.append_audit([AuditEvent(requester.actor, action, subject, {**requester.audit_details(), **details})])


def _refuse_unknown(home: Home, requester: Requester, facts: CertificateRequestFacts, error: SmkiError) -> SmkiError:
    _audit(home, requester, "request.refused", requester.party_id, {
        "policy": facts.policy.value, "code": error.code, "reason": error.message,
    })
    return error


def authorise(home: Home, requester: Requester, facts: CertificateRequestFacts, *, on: date | None = None) -> Decision:
    """Decide a request under the rules in force on ``on`` (today), from the register as it is now.

    Returns the approving decision. A refusal is audited and raised (``ra.refused``, carrying the
    decision); an unknown Party or ARO is audited and refused as ``ra.party-not-found`` /
    ``ra.aro-not-found``.
    """
    return authorise_with_party(home, requester, facts, on=on)[0]


def authorise_with_party(home: Home, requester: Requester, facts: CertificateRequestFacts, *,
                         on: date | None = None, party: PartyRecord | None = None) -> tuple[Decision, PartyRecord]:
    """:func:`authorise`, also returning the Party record the rules were applied to, so that the
    rest of the same request (the eligibility screen) need not read it again. A caller that has
    read the Party in this request already passes it as ``party`` (read fresh, not cached: a
    suspension still takes effect on the very next request)."""
    if Route(facts.route) is not Route(requester.route):
        raise SmkiError("request.route-mismatch", "the request's route is the requester's listener route")
    party_record = party if party is not None else requester.party_read()
    if party_record is None:
        party_record = home.store.registry.party(requester.party_id)
    if party_record is None:
        raise _refuse_unknown(home, requester, facts,
                              NotFound("ra.party-not-found", f"no Party {requester.party_id!r}"))
    aro_record = requester.aro if requester.aro is not None and requester.aro.aro_id == requester.aro_id \
        else home.store.registry.aro(requester.aro_id)
    if aro_record is None:
        raise _refuse_unknown(home, requester, facts, NotFound("ra.aro-not-found", f"no ARO {requester.aro_id!r}"))
    day = on or today()
    decision = decide_request(facts, party_state(party_record, day), aro_state(aro_record), day,
                              evidence_basis=evidence_basis(home))
    if not decision.approved:
        details: dict[str, Any] = {
            "policy": facts.policy.value, "ruleset": decision.ruleset, "rules": list(decision.failed_ids),
            "decision": decision.to_dict(),
        }
        if facts.entity_id is not None:
            details["entity_id"] = facts.entity_id.hex()
        if facts.role is not None:
            details["role"] = int(facts.role)
        _audit(home, requester, "request.refused", requester.party_id, details)
        raise decision.refusal()
    return decision, party_record


def _passed(decision: Decision) -> dict[str, Any]:
    return {"ruleset": decision.ruleset, "rules": [r.rule_id for r in decision.results]}


def request_organisation(home: Home, requester: Requester, csr_data: bytes) -> IssuedOrganisation:
    """One Organisation Certificate for an ARO: the CSR is checked, the rules applied, then it is issued.

    The CSR comes first because the rules need the Entity Identifier and role it names
    (``org.entity-belongs-to-party``, ``org.role-permitted``); checking it signs nothing.
    """
    from smki.ca.csr import check_organisation_csr, decode_csr_text

    request = check_organisation_csr(decode_csr_text(csr_data), home.settings.role_usages)
    facts = CertificateRequestFacts(policy=CertificatePolicy.ORGANISATION, route=requester.route,
                                    entity_id=request.entity_id, role=request.role)
    decision = authorise(home, requester, facts)
    return issue_organisation(home, csr_data, actor=requester.actor,
                              extra_audit={**requester.audit_details(), **_passed(decision)})


def request_device_batch(home: Home, requester: Requester, items: Iterable[BatchItem], *, batch_ref: str,
                         workers: int | None = None,
                         on_chunk: Callable[[Sequence[DeviceOutcome]], None] | None = None,
                         pool: SigningPool | None = None,
                         in_transaction: InTransaction | None = None,
                         decision: Decision | None = None,
                         eligibility: bool = True,
                         chunk_size: int | None = None,
                         screens: Sequence[Screen] = (),
                         party: PartyRecord | None = None,
                         read_ahead: ReadAhead | None = None,
                         resume: bool = False,
                         device_limit: bool = True,
                         source_digest: str | None = None) -> BatchSummary:
    """A batch of Device CSRs for an ARO: authorised once, before any item is read or key touched.

    Bad CSRs are reported per item by the batch issuance, as for the CA operator's batches. A
    caller that has just authorised the request itself (one Device CSR over the web services)
    passes its ``decision`` rather than having the register read and the rules run twice. With
    ``eligibility`` (all but the Ad Hoc service) each CSR's Device is checked against the device
    register (rule ``device.eligible-subscriber``, SEC L3.16) and refused ``ra.ineligible`` if the
    Party may not have its certificates. Then, with ``device_limit``, the 100-per-Device limit
    (``csr.device-limit``, spec §3.2), on every subscriber route; a caller that has already counted
    the Device's certificates for this very CSR turns it off. ``screens`` follow, in order, on each
    chunk these pass. ``party`` is the Party's record if this request has read it already;
    ``read_ahead`` what it has read of the issuance's own reads.
    ``resume`` continues an earlier run of ``batch_ref`` (see ``issue_device_batch``); the
    authorisation then also checks that the batch is this Party's (``authorise_device_requests``).
    ``source_digest`` is recorded with the batch's opening record (see ``check_same_source``).
    """
    from smki.services.device_limit import device_limit_screen
    from smki.services.eligibility import eligibility_screen

    if decision is None:
        decision = authorise_device_requests(home, requester, resuming=batch_ref if resume else None)
    authorised = AuditEvent(requester.actor, "request.authorised", batch_ref, {
        **requester.audit_details(), "policy": CertificatePolicy.DEVICE.value, "batch": batch_ref,
        **_passed(decision)})
    eligible = eligibility_screen(home, requester.party_id, party=party) if eligibility else None
    limit = device_limit_screen(home) if device_limit else None
    chain = [screen for screen in (eligible, limit) if screen is not None] + list(screens)
    return issue_device_batch(home, items, actor=requester.actor, batch_ref=batch_ref, workers=workers,
                              on_chunk=on_chunk, pool=pool, in_transaction=in_transaction, opening=[authorised],
                              screen=in_order(*chain) if chain else None, chunk_size=chunk_size or DEFAULT_CHUNK,
                              read_ahead=read_ahead, resume=resume, source_digest=source_digest)


def request_device(home: Home, requester: Requester, csr_data: bytes, *, item_id: str = "adhoc",
                   batch_ref: str | None = None, decision: Decision | None = None,
                   eligibility: bool = True, party: PartyRecord | None = None,
                   read_ahead: ReadAhead | None = None, device_limit: bool = True) -> DeviceOutcome:
    """One Device CSR (the Ad Hoc service): the same rules, issued in this process.

    Returns the outcome: a certificate, or a per-CSR error (``csr.*``) as the Ad Hoc service reports
    it. A policy refusal is raised (``ra.refused``), before the CSR is even decoded.
    """
    import secrets

    outcomes: list[DeviceOutcome] = []
    ref = batch_ref or f"adhoc-{secrets.token_hex(6)}"
    request_device_batch(home, requester, [BatchItem(0, item_id, csr_data)], batch_ref=ref, workers=0,
                         on_chunk=outcomes.extend, decision=decision, eligibility=eligibility, party=party,
                         read_ahead=read_ahead, device_limit=device_limit)
    if len(outcomes) != 1:
        raise SmkiError("request.no-outcome", "the Device CSR produced no outcome")
    return outcomes[0]


def authorise_device_requests(home: Home, requester: Requester, *, resuming: str | None = None,
                              server_batch: bool = True) -> Decision:
    """The Device request rules for this requester's route, before any CSR is read (so a Device CSR
    or batch arriving over SPOTI is refused up front, naming ``channel.device-via-gateway``).

    ``resuming`` a batch: the rules are applied again, as the register stands now (a Party
    suspended since the batch started gets nothing more), and the batch must be one authorised for
    this Party (its ``request.authorised`` record): a requester cannot continue, or have written out,
    another Party's batch or the CA operator's. That refusal is audited like any other. Without
    ``server_batch`` (``smki request batch --resume``, which reads its CSRs from the caller's file)
    the batch must not be one the server holds (XML, JSON, Portal): the server's own runner resumes
    those from their stored items, and a file's CSRs issued under its reference would mix two
    batches in one.
    """
    facts = CertificateRequestFacts(CertificatePolicy.DEVICE, requester.route)
    decision = authorise(home, requester, facts)
    if resuming is not None and not any(
            row.details_dict.get("party") == requester.party_id
            for row in home.store.audit_rows_for(resuming, "request.authorised")):
        raise _refuse_unknown(home, requester, facts, NotFound(
            "request.batch-not-found", f"no request batch {resuming!r} of Party {requester.party_id!r}"))
    if resuming is not None and not server_batch:
        from smki.store.batches import batch_reads

        if batch_reads(home.store).job_by_ref(resuming) is not None:
            raise _refuse_unknown(home, requester, facts, SmkiError(
                "request.batch-on-server", f"batch {resuming!r} was submitted to the server, whose runner resumes "
                "it from its stored CSRs; 'smki request batch --resume' continues only a batch it started"))
    return decision


def csr_policy(der: bytes) -> CertificatePolicy:
    """Which Certificate Policy a CSR asks for: a Device CSR has an empty subject (spec §4.4)."""
    from cryptography import x509

    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError:
        raise SmkiError("csr.malformed", "not a PKCS#10 certificate signing request") from None
    return CertificatePolicy.DEVICE if len(csr.subject) == 0 else CertificatePolicy.ORGANISATION
