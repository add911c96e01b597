"""What-if decisions (issue 13 point 7): what the rule set in force on a date would decide, recording nothing.

``smki ra explain APP --on DATE`` and ``smki request … --dry-run --on DATE`` used to need libfaketime.
Here the date is an argument of the engine (it always was: rule sets are chosen by date and every
dated fact is compared with it), so a what-if is the same decision as the real one, made from the
register as it is now, on another date (the Party's Gateway Connections and Registered User roles
as in force on that date: they are dated periods) — and nothing is audited, proposed, issued or stored. The
result names the date and the rule set, so it can never pass for a recorded decision.

For Device CSRs a dry run also reports, per CSR, what the CA and the request-time checks would say
(``csr.*``, ``ra.ineligible``, ``csr.duplicate``): the per-CSR checks that do not depend on the date
run as they would, and the Eligible Subscriber check reads the device register as in force on the date.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from smki.domain import CertificatePolicy
from smki.errors import NotFound, SmkiError
from smki.ra import Decision, decide_application, decide_request, render_explanation
from smki.ra.state import CertificateRequestFacts
from smki.services.context import Home
from smki.services.ra_state import (
    application_state,
    aro_state,
    evidence_basis,
    load_application,
    load_party,
    party_state,
)


@dataclass(frozen=True)
class CsrVerdict:
    """What would happen to one CSR of a dry run: ``code`` None means it would be issued."""

    item_id: str
    code: str | None
    message: str


@dataclass(frozen=True)
class WhatIf:
    on: date
    decision: Decision
    csrs: tuple[CsrVerdict, ...] = ()

    def render(self) -> str:
        """The decision rule by rule, under a header that says it is a what-if and recorded nothing."""
        head = (f"What-if: the rule set in force on {self.on.isoformat()} ({self.decision.ruleset}); "
                "nothing was recorded\n\n")
        body = render_explanation(self.decision)
        if self.csrs:
            lines = ["", "CSRs:"]
            for verdict in self.csrs:
                outcome = "would be issued" if verdict.code is None else f"{verdict.code}: {verdict.message}"
                lines.append(f"  {verdict.item_id}: {outcome}")
            body += "\n".join(lines) + "\n"
        return head + body


def application_on(home: Home, application_id: int | str, on: date) -> WhatIf:
    """How the rules in force on ``on`` decide an application, from its evidence and the register now."""
    record = load_application(home, application_id)
    party = party_state(load_party(home, record.party_id), on)
    decision = decide_application(application_state(record), party, on, evidence_basis=evidence_basis(home))
    return WhatIf(on, decision)


def _request_decision(home: Home, party_id: str, aro_id: str, facts: CertificateRequestFacts, on: date) -> Decision:
    party = home.store.registry.party(party_id)
    if party is None:
        raise NotFound("ra.party-not-found", f"no Party {party_id!r}")
    aro = home.store.registry.aro(aro_id)
    if aro is None:
        raise NotFound("ra.aro-not-found", f"no ARO {aro_id!r}")
    return decide_request(facts, party_state(party, on), aro_state(aro), on, evidence_basis=evidence_basis(home))


def organisation_request_on(home: Home, party_id: str, aro_id: str, route: str, csr_data: bytes,
                            on: date) -> WhatIf:
    """The decision on an Organisation CSR on ``on`` (the CSR is checked first: the rules need its
    Entity Identifier and role)."""
    from smki.ca.csr import check_organisation_csr, decode_csr_text
    from smki.domain import Route

    request = check_organisation_csr(decode_csr_text(csr_data), home.settings.role_usages)
    facts = CertificateRequestFacts(policy=CertificatePolicy.ORGANISATION, route=Route(route),
                                    entity_id=request.entity_id, role=request.role)
    return WhatIf(on, _request_decision(home, party_id, aro_id, facts, on))


def device_request_on(home: Home, party_id: str, aro_id: str, route: str, csrs: Sequence[tuple[str, bytes]],
                      on: date) -> WhatIf:
    """The decision on Device CSRs on ``on``, and per CSR what the CSR checks, the Eligible
    Subscriber check (on the device register as in force on ``on``: a change dated later does not
    count) and the key register would say (duplicates within the CSRs given count too), in the
    order issuance applies them."""
    from smki.ca.csr import check_device_csr, decode_csr_text
    from smki.ca.keyid import key_fingerprint
    from smki.domain import Route
    from smki.services.eligibility import INELIGIBLE, RULE_ID, eligibility_verdicts
    from smki.store.certified_keys import certified_key_reads

    facts = CertificateRequestFacts(policy=CertificatePolicy.DEVICE, route=Route(route))
    decision = _request_decision(home, party_id, aro_id, facts, on)
    checked: list[tuple[str, bytes | None, bytes | None, SmkiError | None]] = []
    for item_id, data in csrs:
        try:
            request = check_device_csr(decode_csr_text(data), home.settings.hw_type_oids)
        except SmkiError as refusal:
            checked.append((item_id, None, None, refusal))
        else:
            checked.append((item_id, request.device_id, key_fingerprint(request.point), None))
    judge = eligibility_verdicts(home, party_id)
    devices = {d for _, d, _, _ in checked if d is not None}
    ineligible = {} if judge is None else judge(devices, on)
    known = certified_key_reads(home.store).serials([f for _, _, f, _ in checked if f is not None])
    seen: set[bytes] = set()
    verdicts = []
    for item_id, device, fingerprint, error in checked:
        reason = None if device is None else ineligible.get(device)
        if error is not None:
            verdicts.append(CsrVerdict(item_id, error.code, error.message))
        elif reason is not None:
            verdicts.append(CsrVerdict(item_id, INELIGIBLE, f"{RULE_ID}: {reason}"))
        elif fingerprint in known or fingerprint in seen:
            verdicts.append(CsrVerdict(item_id, "csr.duplicate", "this CSR's public key is already certified"))
        else:
            assert fingerprint is not None
            seen.add(fingerprint)
            verdicts.append(CsrVerdict(item_id, None, ""))
    return WhatIf(on, decision, tuple(verdicts))
