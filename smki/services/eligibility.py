"""Eligible Subscribers (SEC L3.16, issue 13 point 2): which Party may have a Device's certificates.

Every Device CSR of a subscriber's batch or Portal request is checked against the device register
with rule ``device.eligible-subscriber``, after the request rules admitted the request. In a batch
the check is one bulk register look-up per commit of chunks in the single writer (the Device ID is
in each signed result), so it costs a primary-key probe per CSR, not a query; a CSR that fails it
is answered ``ra.ineligible`` (DCC status ``INELIGIBLE``, code ``IN:EL1``), its certificate thrown
away unrecorded — so no certificate is ever recorded or returned for an ineligible Device.

The table is :data:`smki.ra.rules.DEFAULT_ELIGIBILITY` unless the deployment's ``[eligibility]``
section changes rows (a status, or ``unknown`` for Device IDs the register does not know, mapped
to a list of ``any``, ``supplier``, ``network-operator``, ``dcc``); ``eligible-subscriber-check =
false`` switches the check off. The Ad Hoc web service does not apply it (spec §7.2: Appendix M
lists no Eligible Subscriber check there; only suppliers and the DCC may use that service).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from smki.config import Settings
from smki.ra import PartyCategory, check_eligible_subscriber
from smki.ra.rules import DEFAULT_ELIGIBILITY, DeviceFacts, EligibilityContext, Eligible
from smki.store.devices import device_reads

if TYPE_CHECKING:
    from smki.services.context import Home

INELIGIBLE = "ra.ineligible"
RULE_ID = "device.eligible-subscriber"

_Result = tuple[int, str, bytes, str, str, bytes] | tuple[int, str, str, str]
_ChunkResult = tuple[datetime, list[_Result]]
Screen = Callable[[Sequence[_ChunkResult]], list[_ChunkResult]]


def eligibility_table(settings: Settings) -> dict[str, frozenset[Eligible]] | None:
    """The table in force, or None when the check is switched off."""
    if not settings.eligible_subscriber_check:
        return None
    table = dict(DEFAULT_ELIGIBILITY)
    for status, who in settings.sections.get("eligibility", {}).items():  # checked by the settings model
        table[status] = frozenset(Eligible(item) for item in who)
    return table


def eligibility_screen(home: Home, party_id: str) -> Screen | None:
    """The batch writer's per-commit check for ``party_id``'s CSRs, or None when it is off."""
    table = eligibility_table(home.settings)
    if table is None:
        return None
    party = home.store.registry.party(party_id)
    category = PartyCategory(party.category) if party is not None else PartyCategory.OTHER_SEC_PARTY
    reads = device_reads(home.store)

    def screen(chunks: Sequence[_ChunkResult]) -> list[_ChunkResult]:
        devices = {result[2] for _, results in chunks for result in results if len(result) == 6}
        entries = reads.entries(devices)
        verdicts: dict[bytes, str | None] = {}
        for device_id in devices:
            entry = entries.get(device_id)
            facts = None if entry is None else DeviceFacts(entry.smi_status, entry.import_supplier,
                                                           entry.gas_supplier, entry.network_operator)
            verdict = check_eligible_subscriber(EligibilityContext(party_id, category, device_id, facts, table))
            verdicts[device_id] = None if verdict.passed else verdict.reason
        out: list[_ChunkResult] = []
        for not_before, results in chunks:
            kept: list[_Result] = []
            for result in results:
                reason = verdicts.get(result[2]) if len(result) == 6 else None
                kept.append(result if reason is None else (result[0], result[1], INELIGIBLE, f"{RULE_ID}: {reason}"))
            out.append((not_before, kept))
        return out

    return screen
