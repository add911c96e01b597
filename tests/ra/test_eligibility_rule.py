"""device.eligible-subscriber (SEC L3.16): the default table, row by row, and a hypothesis property."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smki.domain import SmiStatus
from smki.ra import PartyCategory, check_eligible_subscriber
from smki.ra.rules import DEFAULT_ELIGIBILITY, DeviceFacts, EligibilityContext, Eligible, describe

DEVICE = bytes.fromhex("00db123456789001")
SUPPLIER, GAS, DNO, OTHER, DCC = "SUPP1", "GAS1", "DNO1", "SUPP2", "DCC"
CATEGORIES = {SUPPLIER: PartyCategory.LARGE_SUPPLIER, GAS: PartyCategory.SMALL_SUPPLIER,
              DNO: PartyCategory.ELECTRICITY_NETWORK_OPERATOR, OTHER: PartyCategory.LARGE_SUPPLIER,
              DCC: PartyCategory.DCC}


def passes(party: str, status: str | None, table: dict[str, frozenset[Eligible]] = DEFAULT_ELIGIBILITY) -> bool:
    device = None if status is None else DeviceFacts(status, SUPPLIER, GAS, DNO)
    return check_eligible_subscriber(EligibilityContext(party, CATEGORIES[party], DEVICE, device, table)).passed


@pytest.mark.parametrize(("status", "who"), [
    (None, {SUPPLIER, GAS, DNO, OTHER, DCC}),  # unknown to the register: manufacturing
    ("pending", {SUPPLIER, GAS, DNO, OTHER, DCC}),
    ("whitelisted", {SUPPLIER, GAS, DNO, OTHER, DCC}),
    ("installed-not-commissioned", {SUPPLIER, GAS, DCC}),
    ("commissioned", {SUPPLIER, GAS, DCC}),
    ("recovered", {SUPPLIER, GAS, DCC}),
    ("recovery", {DCC}),
    ("decommissioned", set()),
    ("withdrawn", set()),
    ("suspended", set()),
])
def test_the_default_table(status: str | None, who: set[str]) -> None:
    assert {party for party in CATEGORIES if passes(party, status)} == who


def test_every_smi_status_has_a_row_and_the_rule_cites_l3_16() -> None:
    assert set(DEFAULT_ELIGIBILITY) == {s.value for s in SmiStatus} | {"unknown"}
    rule = describe("device.eligible-subscriber")
    assert "SEC L3.16" in rule.reference and "INELIGIBLE" in rule.reference


def test_a_refusal_names_the_device_its_status_and_who_may() -> None:
    result = check_eligible_subscriber(EligibilityContext(
        OTHER, PartyCategory.LARGE_SUPPLIER, DEVICE, DeviceFacts("commissioned", SUPPLIER, None, None),
        DEFAULT_ELIGIBILITY))
    assert not result.passed
    assert "00-DB-12-34-56-78-90-01" in result.reason.upper() or "00DB123456789001" in result.reason.upper()
    assert "commissioned" in result.reason and "supplier" in result.reason and OTHER in result.reason
    assert result.reason.endswith("only the DCC or its responsible supplier may request its certificates, not SUPP2")
    closed = check_eligible_subscriber(EligibilityContext(
        SUPPLIER, PartyCategory.LARGE_SUPPLIER, DEVICE, DeviceFacts("decommissioned", SUPPLIER, None, None),
        DEFAULT_ELIGIBILITY))
    assert closed.reason == "Device 00-DB-12-34-56-78-90-01 is decommissioned: no one may request its certificates"


tables = st.dictionaries(st.sampled_from(sorted(DEFAULT_ELIGIBILITY)), st.frozensets(st.sampled_from(list(Eligible))))


@given(st.sampled_from(sorted(CATEGORIES)), st.one_of(st.none(), st.sampled_from([s.value for s in SmiStatus])),
       st.one_of(st.none(), st.sampled_from(sorted(CATEGORIES))), tables)
def test_the_rule_admits_exactly_whom_the_table_names(party: str, status: str | None, supplier: str | None,
                                                      table: dict[str, frozenset[Eligible]]) -> None:
    device = None if status is None else DeviceFacts(status, supplier, None, DNO)
    allowed = table.get(status or "unknown", frozenset())
    expected = (Eligible.ANY in allowed
                or (Eligible.DCC in allowed and CATEGORIES[party] is PartyCategory.DCC)
                or (device is not None and Eligible.SUPPLIER in allowed and party == supplier)
                or (device is not None and Eligible.NETWORK_OPERATOR in allowed and party == DNO))
    result = check_eligible_subscriber(EligibilityContext(party, CATEGORIES[party], DEVICE, device, table))
    assert result.passed is expected
    assert result.rule_id == "device.eligible-subscriber" and result.reason
