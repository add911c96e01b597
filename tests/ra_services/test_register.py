"""The register services: every change is role-checked (``ra.staff-role``), validated, and audited."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from smki.audit import AuditEvent
from smki.errors import SmkiError
from smki.ra.rules import describe
from smki.services import registry as reg
from smki.services.context import Home
from smki.services.ra_state import today
from smki.services.staff import add_staff, require_staff
from tests.ra_services.conftest import ENTITY, OTHER_ENTITY, audit_after, head, qualified_party, verified_aro


def _code(exc: pytest.ExceptionInfo[SmkiError]) -> str:
    return exc.value.code


def test_party_status_evidence_is_recorded_and_audited_with_before_and_after(staffed: Home) -> None:
    home = staffed
    reg.add_party(home, "P1", "Acme Energy", "large-supplier", staff_id="op1")
    seq = head(home)
    record = reg.set_party_status(home, "P1", reg.StatusChange(
        srept_passed=date(2019, 6, 1), add_gateways=("GW-1", "GW-2"), add_registered_roles=("import-supplier",),
    ), staff_id="op1")
    assert record.srept_passed == date(2019, 6, 1) and record.uept_completed is None
    assert record.gateway_connections == ("GW-1", "GW-2")
    record = reg.set_party_status(home, "P1", reg.StatusChange(
        clear_srept=True, uept_completed=date(2019, 9, 1), drop_gateways=("GW-1",)), staff_id="op1")
    assert record.srept_passed is None and record.uept_completed == date(2019, 9, 1)
    assert record.gateway_connections == ("GW-2",)
    events = audit_after(home, seq)
    assert [(actor, action) for actor, action, _ in events] == [("op1", "party.status-set")] * 2
    assert events[1][2] == {
        "from": {"srept_passed": "2019-06-01", "uept_completed": None, "gateway_connections": ["GW-1", "GW-2"]},
        "to": {"srept_passed": None, "uept_completed": "2019-09-01", "gateway_connections": ["GW-2"]},
        "periods": [{"kind": "gateway-connection", "value": "GW-1", "ended": today().isoformat()}],
        "reason": None,
    }


@pytest.mark.parametrize(("change", "code"), [
    (reg.StatusChange(), "ra.no-change"),
    (reg.StatusChange(srept_passed=date(2019, 1, 1), clear_srept=True), "ra.bad-change"),
    (reg.StatusChange(uept_completed=date.today() + timedelta(days=3)), "ra.future-date"),
    (reg.StatusChange(add_gateways=("bad id with spaces",)), "ra.bad-id"),
    (reg.StatusChange(add_gateways=("GW-1",), effective=date.today() + timedelta(days=3)), "ra.future-date"),
    (reg.StatusChange(srept_passed=date(2019, 1, 1), effective=date(2019, 1, 1)), "ra.bad-change"),
    (reg.StatusChange(add_gateways=("GW-1",), drop_gateways=("GW-1",)), "ra.bad-change"),
])
def test_bad_status_changes_are_refused_without_a_change(staffed: Home, change: reg.StatusChange, code: str) -> None:
    reg.add_party(staffed, "P1", "Acme Energy", "large-supplier", staff_id="op1")
    seq = head(staffed)
    with pytest.raises(SmkiError) as info:
        reg.set_party_status(staffed, "P1", change, staff_id="op1")
    assert _code(info) == code
    assert head(staffed) == seq


@pytest.mark.parametrize(("args", "code"), [
    (("P 1", "Acme", "large-supplier"), "ra.bad-id"),
    (("P1", "  ", "large-supplier"), "ra.bad-text"),
    (("P1", "Acme", "supplier-ish"), "ra.bad-category"),
])
def test_party_input_is_validated(staffed: Home, args: tuple[str, str, str], code: str) -> None:
    with pytest.raises(SmkiError) as info:
        reg.add_party(staffed, *args, staff_id="op1")
    assert _code(info) == code


def test_entity_identifiers_roles_and_ownership(staffed: Home) -> None:
    home = staffed
    qualified_party(home)
    reg.add_party(home, "P2", "Other Co", "small-supplier", staff_id="op1")
    record = reg.set_party_entity(home, "P1", "90-B3-D5-1F-30-01-00-00", ["supplier", "127"], staff_id="op1")
    assert record.entities == {bytes.fromhex(ENTITY): (2, 127)}
    with pytest.raises(SmkiError) as info:
        reg.set_party_entity(home, "P2", ENTITY, ["2"], staff_id="op1")
    assert _code(info) == "ra.entity-taken"
    for ca_role in ("0", "7", "issuing-authority"):
        with pytest.raises(SmkiError) as info:
            reg.set_party_entity(home, "P2", OTHER_ENTITY, [ca_role], staff_id="op1")
        assert _code(info) == "ra.role-not-assignable"
    for bad in ("9", "boss"):
        with pytest.raises(SmkiError) as info:
            reg.set_party_entity(home, "P2", OTHER_ENTITY, [bad], staff_id="op1")
        assert _code(info) == "ra.bad-role"
    with pytest.raises(SmkiError) as info:
        reg.set_party_entity(home, "P2", "90B3", ["2"], staff_id="op1")
    assert _code(info) == "eui64.invalid"


def test_subscriber_standing_moves_only_along_allowed_paths_by_the_right_role(staffed: Home) -> None:
    home = staffed
    qualified_party(home)
    with pytest.raises(SmkiError) as info:  # never approved: nothing to suspend
        reg.set_subscriber_standing(home, "P1", "device", "suspended", staff_id="op1")
    assert _code(info) == "ra.bad-standing"
    with pytest.raises(SmkiError) as info:  # approval only comes through an application (or dual control)
        reg.set_subscriber_standing(home, "P1", "device", "approved", staff_id="ap1")
    assert _code(info) == "ra.dual-control-required"
    with home.store.transaction() as tx:  # as an approved application would leave it
        tx.registry.set_subscription("P1", "device", "approved")
        tx.append_audit([AuditEvent("test", "test.setup", "P1")])
    assert reg.set_subscriber_standing(home, "P1", "device", "suspended", staff_id="op1",
                                       reason="complaint").subscriptions["device"] == "suspended"
    for who in ("op1", "ap1"):  # nobody reinstates alone (smki.services.reinstatement: dual control)
        with pytest.raises(SmkiError) as info:
            reg.set_subscriber_standing(home, "P1", "device", "approved", staff_id=who)
        assert _code(info) == "ra.dual-control-required"
    assert reg.show_party(home, "P1").subscriptions["device"] == "suspended"
    seq = head(home)
    assert reg.set_subscriber_standing(home, "P1", "device", "withdrawn",
                                       staff_id="ap1").subscriptions["device"] == "withdrawn"
    events = audit_after(home, seq)
    assert [(a, act, d["from"], d["to"]) for a, act, d in events] == [
        ("ap1", "subscriber.withdrawn", "suspended", "withdrawn"),
    ]
    with pytest.raises(SmkiError) as info:
        reg.set_subscriber_standing(home, "P1", "device", "refused", staff_id="ap1")
    assert _code(info) == "ra.bad-standing"
    with pytest.raises(SmkiError) as info:
        reg.set_subscriber_standing(home, "P1", "gadget", "suspended", staff_id="ap1")
    assert _code(info) == "ra.bad-policy"


def test_aro_verification_records_what_when_and_by_whom(staffed: Home) -> None:
    home = staffed
    qualified_party(home)
    aro = reg.nominate_aro(home, "A1", "P1", "Ann Officer", "Sam SRO", staff_id="op1")
    assert (aro.status, aro.identity_verified, aro.screened, aro.nominated_by) == ("active", None, None, "Sam SRO")
    aro = reg.verify_aro(home, "A1", "passport + utility bill", staff_id="op2", on=date(2020, 1, 2))
    assert (aro.identity_verified, aro.identity_check, aro.verified_by) == (
        date(2020, 1, 2), "passport + utility bill", "op2")
    aro = reg.screen_aro(home, "A1", date(2020, 1, 3), "BS 7858:2019", staff_id="op1")
    assert (aro.screened, aro.screening_standard) == (date(2020, 1, 3), "BS 7858:2019")
    with pytest.raises(SmkiError) as info:
        reg.screen_aro(home, "A1", date.today() + timedelta(days=1), "BS 7858:2019", staff_id="op1")
    assert _code(info) == "ra.future-date"
    with pytest.raises(SmkiError) as info:
        reg.nominate_aro(home, "A1", "P1", "Again", "Sam SRO", staff_id="op1")
    assert _code(info) == "ra.aro-exists"
    with pytest.raises(SmkiError) as info:
        reg.nominate_aro(home, "A9", "NOPE", "Nobody", "Sam SRO", staff_id="op1")
    assert _code(info) == "ra.party-not-found"


def test_aro_status_transitions_and_roles(staffed: Home) -> None:
    home = staffed
    qualified_party(home)
    verified_aro(home)
    assert reg.set_aro_status(home, "A1", "suspended", staff_id="op1").status == "suspended"
    for who in ("op1", "ap1"):  # nobody reinstates alone (smki.services.reinstatement: dual control)
        with pytest.raises(SmkiError) as info:
            reg.set_aro_status(home, "A1", "active", staff_id=who)
        assert _code(info) == "ra.dual-control-required"
    assert reg.set_aro_status(home, "A1", "revoked", staff_id="ap2").status == "revoked"
    for status in ("suspended", "revoked"):
        with pytest.raises(SmkiError) as info:
            reg.set_aro_status(home, "A1", status, staff_id="ap1")
        assert _code(info) == "ra.bad-status"
    with pytest.raises(SmkiError) as info:
        reg.set_aro_status(home, "NOPE", "suspended", staff_id="ap1")
    assert _code(info) == "ra.aro-not-found"
    assert [a.aro_id for a in reg.list_aros(home, "P1")] == ["A1"]


def test_the_auditor_can_change_nothing_and_each_attempt_is_audited(staffed: Home) -> None:
    home = staffed
    qualified_party(home)
    verified_aro(home)
    attempts = [
        lambda: reg.add_party(home, "P9", "Nine", "dcc", staff_id="aud"),
        lambda: reg.set_party_status(home, "P1", reg.StatusChange(add_gateways=("GW-9",)), staff_id="aud"),
        lambda: reg.set_party_entity(home, "P1", OTHER_ENTITY, ["2"], staff_id="aud"),
        lambda: reg.set_subscriber_standing(home, "P1", "device", "withdrawn", staff_id="aud"),
        lambda: reg.nominate_aro(home, "A9", "P1", "X", "Y", staff_id="aud"),
        lambda: reg.verify_aro(home, "A1", "passport", staff_id="aud"),
        lambda: reg.screen_aro(home, "A1", date(2020, 1, 1), "BS 7858:2019", staff_id="aud"),
        lambda: reg.set_aro_status(home, "A1", "suspended", staff_id="aud"),
    ]
    before = reg.show_party(home, "P1")
    seq = head(home)
    for attempt in attempts:
        with pytest.raises(SmkiError) as info:
            attempt()
        assert _code(info) == "ra.staff-role"
        assert "aud (auditor) may not" in info.value.message
    assert reg.show_party(home, "P1") == before
    events = audit_after(home, seq)
    assert len(events) == len(attempts)
    assert {(actor, action, d["rule"]) for actor, action, d in events} == {("aud", "staff.refused", "ra.staff-role")}


def test_staff_identity_is_required_and_checked(staffed: Home) -> None:
    for staff_id, code in ((None, "staff.required"), ("", "staff.required"), ("ghost", "staff.unknown")):
        with pytest.raises(SmkiError) as info:
            reg.add_party(staffed, "P1", "Acme", "dcc", staff_id=staff_id)
        assert _code(info) == code
    with pytest.raises(SmkiError) as info:
        add_staff(staffed, "x1", "X", ["wizard"], actor="admin")
    assert _code(info) == "staff.bad-role"
    with pytest.raises(SmkiError) as info:
        add_staff(staffed, "op1", "Again", ["auditor"], actor="admin")
    assert _code(info) == "staff.exists"
    for lookalike in ("two words", "op1\u200b", "\u043ep1", "op1\x1b", "-op"):  # zero-width, Cyrillic o (U+043E), ESC
        with pytest.raises(SmkiError) as info:
            add_staff(staffed, lookalike, "X", ["auditor"], actor="admin")
        assert _code(info) == "staff.bad-id", lookalike
    with pytest.raises(SmkiError) as info:  # dual control takes it for op1: one person, not a second one
        add_staff(staffed, "OP1", "Olive, in capitals", ["ra-approver"], actor="admin")
    assert _code(info) == "staff.exists" and "'op1'" in info.value.message
    with pytest.raises(SmkiError) as info:
        add_staff(staffed, "x2", "X\x1b[2JY", ["auditor"], actor="admin")
    assert _code(info) == "staff.bad-name"
    assert add_staff(staffed, "olive.o@example.org", "  Olive   O. ", ["auditor"], actor="admin").name == "Olive O."
    assert require_staff(staffed, "ap1", "ra-approver").staff_id == "ap1"
    seq = head(staffed)
    with pytest.raises(SmkiError) as info:
        require_staff(staffed, "op1", "ra-approver", subject="01", action="approve-ca-revocation")
    assert _code(info) == "staff.role-required" and info.value.message.startswith("ra.staff-holds-role: ")
    [(actor, action, details)] = audit_after(staffed, seq)  # the refusal names the rule that made it
    assert (actor, action, details["rule"], details["action"]) == (
        "op1", "staff.refused", "ra.staff-holds-role", "approve-ca-revocation")
    assert details["reference"] == describe("ra.staff-holds-role").reference
