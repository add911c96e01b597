"""Eligible Subscribers (SEC L3.16, issue 13 point 2): which Party may have a Device's certificates.

Every Device CSR of a subscriber's batch or Portal request is checked against the device register
with rule ``device.eligible-subscriber``, after the request rules admitted the request. In a batch
the check is one bulk register look-up per chunk in the single writer, between the signing
workers' checking pass (which finds each CSR's Device ID) and their signing pass, so it costs a
primary-key probe per CSR, not a query; a CSR that fails it is answered ``ra.ineligible`` (DCC
status ``INELIGIBLE``, code ``IN:EL1``) and never signed — so no certificate is ever made for an
ineligible Device.

The table is :data:`smki.ra.rules.DEFAULT_ELIGIBILITY` unless the deployment's ``[eligibility]``
section changes rows (a status, or ``unknown`` for Device IDs the register does not know, mapped
to a list of ``any``, ``supplier``, ``network-operator``, ``dcc``); ``eligible-subscriber-check =
false`` switches the check off. The Ad Hoc web service does not apply it (spec §7.2: Appendix M
lists no Eligible Subscriber check there; only suppliers and the DCC may use that service).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import date
from typing import TYPE_CHECKING

from smki.config import Settings
from smki.ra import PartyCategory, check_eligible_subscriber
from smki.ra.rules import DEFAULT_ELIGIBILITY, DeviceFacts, EligibilityContext, Eligible
from smki.services.key_register import Entry, Screen
from smki.services.ra_state import today
from smki.store.devices import DeviceReads, device_reads
from smki.store.registry import PartyRecord

if TYPE_CHECKING:
    from smki.ra.rules import RuleResult
    from smki.services.context import Home

INELIGIBLE = "ra.ineligible"
RULE_ID = "device.eligible-subscriber"

def eligibility_table(settings: Settings) -> dict[str, frozenset[Eligible]] | None:
    """The table in force, or None when the check is switched off."""
    if not settings.eligible_subscriber_check:
        return None
    table = dict(DEFAULT_ELIGIBILITY)
    for status, who in settings.sections.get("eligibility", {}).items():  # checked by the settings model
        table[status] = frozenset(Eligible(item) for item in who)
    return table


Verdicts = Callable[[Collection[bytes], date], dict[bytes, str | None]]


def _requester(home: Home, party_id: str, party: PartyRecord | None = None,
               ) -> tuple[dict[str, frozenset[Eligible]], PartyCategory, DeviceReads] | None:
    """What every eligibility decision for ``party_id`` needs: the table in force, the Party's
    category and the register; None when the check is off. ``party``: its record if the caller
    has just read it (the request's authorisation), else it is read here."""
    table = eligibility_table(home.settings)
    if table is None:
        return None
    if party is None or party.party_id != party_id:
        party = home.store.registry.party(party_id)
    category = PartyCategory(party.category) if party is not None else PartyCategory.OTHER_SEC_PARTY
    return table, category, device_reads(home.store)


def eligibility_verdicts(home: Home, party_id: str) -> Verdicts | None:
    """``party_id``'s verdicts on Device IDs on a date — None (eligible) or the refusal's reason —
    judged from the register state in force on that date (a change dated later does not count yet);
    None when the check is off. The batch writer asks with today's date, a what-if with its own."""
    context = _requester(home, party_id)
    if context is None:
        return None
    table, category, reads = context

    def verdicts(devices: Collection[bytes], on: date) -> dict[bytes, str | None]:
        entries = reads.entries_on(devices, on)
        found: dict[bytes, str | None] = {}
        for device_id in devices:
            entry = entries.get(device_id)
            facts = None if entry is None else DeviceFacts(entry.smi_status, entry.import_supplier,
                                                           entry.gas_supplier, entry.network_operator)
            verdict = check_eligible_subscriber(EligibilityContext(party_id, category, device_id, facts, table))
            found[device_id] = None if verdict.passed else verdict.reason
        return found

    return verdicts


def eligibility_screen(home: Home, party_id: str, *, party: PartyRecord | None = None) -> Screen | None:
    """The batch writer's per-chunk check for ``party_id``'s CSRs, or None when it is off.

    It runs between the signing workers' two passes, so an ineligible CSR is refused before any
    certificate is built or signed for it. Whether a Party is eligible depends on the Device's
    register entry only, never on its ID (which appears only in the reason), so the rule runs once
    per distinct entry of the batch — for a batch of Devices the register does not know, once —
    and again only to word a refusal (``tests/api/test_screen_before_signing.py`` checks the
    screened batch against the rules applied CSR by CSR). ``party``: the Party's record if the
    caller read it in this request.
    """
    context = _requester(home, party_id, party)
    if context is None:
        return None
    table, category, reads = context
    passes: dict[tuple[str, str | None, str | None, str | None] | None, bool] = {}

    def verdict(device_id: bytes, facts: tuple[str, str | None, str | None, str | None] | None) -> RuleResult:
        return check_eligible_subscriber(EligibilityContext(
            party_id, category, device_id, None if facts is None else DeviceFacts(*facts), table))

    def screen(entries: list[Entry]) -> list[Entry]:
        devices = {entry[2] for entry in entries if len(entry) != 4}
        found = reads.facts_on(devices, today()) if devices else {}
        kinds: set[tuple[str, str | None, str | None, str | None] | None] = set(found.values())
        if len(found) < len(devices):
            kinds.add(None)  # a Device the register does not know
        for kind in kinds - passes.keys():  # each kind of entry judged once per batch (by any of its Devices)
            example = next((d for d, facts in found.items() if facts == kind), None) or next(iter(devices))
            passes[kind] = verdict(example, kind).passed
        if all(passes[kind] for kind in kinds):
            return entries  # the usual chunk: every Device eligible
        out: list[Entry] = []
        for entry in entries:
            if len(entry) != 4:
                facts = found.get(entry[2])
                if not passes[facts]:
                    reason = verdict(entry[2], facts).reason  # worded for this Device
                    out.append((entry[0], entry[1], INELIGIBLE, f"{RULE_ID}: {reason}"))
                    continue
            out.append(entry)
        return out

    return screen
