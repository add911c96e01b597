"""What may be read over which route: the RA's access rule, applied at every interface that hands out
certificates (JSON API, DCC XML services, Portal).

MP074: "Parties using SPOTI can only access Organisation Certificates not Device Certificates". The
decision is ``channel.spoti-organisation-access`` (:func:`smki.ra.decide_access`), under the rule
set in force today. Two ways to apply it:

* a read that *asks for* Device Certificates (a Device Certificate's serial, a search by Device ID
  or ``kind=device``, a device batch's status or results) is refused: audited as
  ``access.refused`` with the failing rule and the whole decision, and raised as ``ra.refused``
  (:class:`~smki.ra.PolicyRefusal`), which each interface renders in its own way;
* a read that merely *could* return them (a search by serial or by other criteria) has them left
  out (:func:`hidden_kinds`, in the query itself, so keyset paging stays correct).

Certificate Authority certificates, the CRL and the ARL are not Device Certificates and stay
readable on every route.

Before any of that, a Party reading the Repository must have passed SREPT (spec §1; rule
``repository.srept-passed``, :func:`authorise_repository`), on every route. Both kinds of refusal
are audited alike (``access.refused``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from smki.audit import AuditEvent
from smki.domain import CertificatePolicy, CertKind, Route
from smki.ra import Decision, RuleRefusal, check_repository_access, decide_access
from smki.services.context import Home
from smki.services.ra_state import today
from smki.store import CertificateQuery, CertificateRecord
from smki.store.registry import PartyRecord

#: The Certificate Policy a certificate kind is read under; CA certificates fall under no rule.
_POLICY_OF_KIND = {CertKind.DEVICE: CertificatePolicy.DEVICE, CertKind.ORGANISATION: CertificatePolicy.ORGANISATION}


def may_read(route: Route, policy: CertificatePolicy, *, on: date | None = None) -> bool:
    """Whether certificates of ``policy`` may be read over ``route`` (no audit: for what a page
    offers and for filtering, never for refusing)."""
    return decide_access(route, policy, f"{policy.value} certificates", on or today()).approved


def authorise_read(home: Home, route: Route, actor: str, policy: CertificatePolicy, subject: str, *,
                   on: date | None = None) -> Decision:
    """The access decision for reading ``subject`` (certificates of ``policy``) over ``route``.

    Returns the approving decision; a refusal is audited (``access.refused``, naming the rule set,
    the failing rules and the decision) and raised as ``ra.refused`` carrying the decision.
    """
    decision = decide_access(route, policy, subject, on or today())
    if not decision.approved:
        details = {"route": route.value, "policy": policy.value, "ruleset": decision.ruleset,
                   "rules": list(decision.failed_ids), "decision": decision.to_dict()}
        with home.store.transaction() as tx:
            tx.append_audit([AuditEvent(actor, "access.refused", subject[:200], details)])
        raise decision.refusal()
    return decision


def authorise_repository(home: Home, actor: str, party_id: str | None, party: PartyRecord | None = None) -> None:
    """Rule ``repository.srept-passed`` (spec §1: SREPT before a Party accesses the Repository), for
    the Party an ARO or Authorised System acts for, from the register as it is now (``party``: its
    record if this request has read it). RA staff (no Party) are the RA itself. A refusal is audited
    (``access.refused``, as the route's refusals are) and raised as :class:`RuleRefusal`
    (``ra.refused``) naming the rule, its reason and its reference."""
    if party_id is None:
        return
    record = party if party is not None else home.store.registry.party(party_id)
    result = check_repository_access(party_id, None if record is None else record.srept_passed, today())
    if not result.passed:
        details = {"party": party_id, "rules": [result.rule_id], "reason": result.reason}
        with home.store.transaction() as tx:
            tx.append_audit([AuditEvent(actor, "access.refused", "the Repository", details)])
        raise RuleRefusal(result)


def authorise_device_batch(home: Home, route: Route, actor: str, batch: object) -> Decision:
    """A device batch's status, results or response ZIP: Device Certificates, so refused on SPOTI."""
    return authorise_read(home, route, actor, CertificatePolicy.DEVICE, f"device batch {batch}")


def readable(home: Home, route: Route, actor: str, record: CertificateRecord) -> CertificateRecord:
    """``record``, if it may be read over ``route``; a Device Certificate over SPOTI is refused."""
    policy = _POLICY_OF_KIND.get(record.kind)
    if policy is not None:
        authorise_read(home, route, actor, policy, f"certificate {record.serial}")
    return record


def visible(route: Route, record: CertificateRecord, *, on: date | None = None) -> bool:
    """Whether a search over ``route`` may list ``record`` (no audit: filtering is not a refusal)."""
    return record.kind not in hidden_kinds(route, on=on)


def hidden_kinds(route: Route, *, on: date | None = None) -> frozenset[CertKind]:
    """Certificate kinds a search over ``route`` leaves out: Device Certificates on SPOTI."""
    return frozenset(kind for kind, policy in _POLICY_OF_KIND.items() if not may_read(route, policy, on=on))


def authorise_search(home: Home, route: Route, actor: str, query: CertificateQuery) -> None:
    """A search that asks for Device Certificates (``kind=device`` or a Device ID) is refused where
    they may not be read; any other search is allowed (and filtered by :func:`search`)."""
    if query.kind is CertKind.DEVICE or query.device_id is not None:
        authorise_read(home, route, actor, CertificatePolicy.DEVICE, "a search for Device Certificates")


def search(home: Home, route: Route, actor: str, query: CertificateQuery) -> list[CertificateRecord]:
    """One page of a Repository search over ``route`` (:func:`authorise_search` first).

    Kinds that may not be read are left out in the query itself, so a page still holds ``limit``
    rows when there are that many and ``after_id`` paging skips none.
    """
    authorise_search(home, route, actor, query)
    hidden = hidden_kinds(route)
    if hidden:
        query = replace(query, exclude_kinds=query.exclude_kinds | hidden)
    return home.store.find_certificates(query)
