"""RA staff control: four eyes on every decision, and each action needs a role that permits it."""

from __future__ import annotations

import pytest

from smki.ra.engine import (
    StaffAction,
    StaffRole,
    check_dual_control,
    check_evidence_submitter,
    check_staff_holds_role,
    check_staff_role,
)
from smki.ra.rules import describe

OP, AP, AU = StaffRole.RA_OPERATOR, StaffRole.RA_APPROVER, StaffRole.AUDITOR


@pytest.mark.parametrize(
    ("proposer", "approver", "roles", "passed", "says"),
    [
        ("op.alice", "ap.bob", {AP}, True, "decided by RA approver ap.bob"),
        ("ap.bob", "ap.bob", {AP, OP}, False, "proposed this and cannot also approve"),
        ("Ap.Bob ", "ap.bob", {AP}, False, "proposed this"),  # the same person, however spelt
        ("op.alice", "op.carol", {OP}, False, "does not hold the RA approver role"),
        ("op.alice", "au.dave", {AU}, False, "does not hold the RA approver role"),
        (
            "op.alice",
            "op.alice",
            {OP},
            False,
            "proposed this and cannot also approve or refuse it; op.alice does",
        ),
        ("", "ap.bob", {AP}, False, "must both be named"),
    ],
)
def test_dual_control(proposer: str, approver: str, roles: set[StaffRole], passed: bool, says: str) -> None:
    result = check_dual_control(proposer, approver, roles)
    assert result.rule_id == "ra.dual-control"
    assert result.passed is passed
    assert says in result.reason
    assert result.reference == describe("ra.dual-control").reference


@pytest.mark.parametrize(
    ("roles", "allowed"),
    [
        ({OP}, {"record-evidence", "propose", "suspend", "manage-register", "read"}),
        ({AP}, {"decide", "suspend", "read"}),
        ({AU}, {"read"}),
        (set(), set()),
        ({OP, AP}, {a.value for a in StaffAction}),
    ],
    ids=["operator", "approver", "auditor", "nobody", "both"],
)
def test_staff_roles(roles: set[StaffRole], allowed: set[str]) -> None:
    for action in StaffAction:
        result = check_staff_role("someone", roles, action)
        assert result.rule_id == "ra.staff-role"
        assert result.passed is (action.value in allowed), (roles, action)
        assert action.value in result.reason


def test_operator_cannot_decide_and_auditor_cannot_write() -> None:
    assert not check_staff_role("op.alice", [OP], StaffAction.DECIDE).passed
    for action in set(StaffAction) - {StaffAction.READ}:
        assert not check_staff_role("au.dave", [AU], action).passed


@pytest.mark.parametrize(
    ("roles", "required", "passed"),
    [({OP}, OP, True), ({AP}, OP, False), ({OP, AP}, AP, True), ({AU}, AP, False), (set(), OP, False)],
)
def test_an_action_reserved_to_a_role_needs_that_role(roles: set[StaffRole], required: StaffRole,
                                                      passed: bool) -> None:
    result = check_staff_holds_role("someone", roles, required, "revoke-certificate")
    assert (result.rule_id, result.passed) == ("ra.staff-holds-role", passed)
    assert "revoke-certificate" in result.reason and required.value in result.reason
    assert result.reference == describe("ra.staff-holds-role").reference and "[design]" in result.reference


def test_an_aro_attaches_documents_only_and_staff_any_evidence() -> None:
    assert check_evidence_submitter("document", by_aro=True).passed
    refused = check_evidence_submitter("installation-need", by_aro=True)
    assert (refused.rule_id, refused.passed) == ("ra.aro-document-only", False)
    assert "only an RA operator records installation-need evidence" in refused.reason
    assert "RAPP" in refused.reference
    assert check_evidence_submitter("installation-need", by_aro=False).passed
