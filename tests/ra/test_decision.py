"""Decision records: storage round trip, tamper checks, the explanation table and the refusal error."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smki.domain import Route
from smki.errors import SmkiError
from smki.ra.engine import (
    Decision,
    DecisionKind,
    Outcome,
    PolicyRefusal,
    RuleRefusal,
    check_dual_control,
    decide_application,
    decide_request,
    render_explanation,
)
from smki.ra.rules import RuleResult
from smki.ra.state import Application, EvidenceBasis, PartyState
from tests.ra.factories import ARO, DEVICE, DEVICE_APPLICATION, DEVICE_VIA_GATEWAY, ORG_VIA_SPOTI, PARTY

ON = date(2021, 2, 1)
SPOTI_DEVICE = replace(DEVICE_VIA_GATEWAY, route=Route.SPOTI)


def test_refusal_names_the_rules_and_carries_the_decision() -> None:
    decision = decide_request(SPOTI_DEVICE, PARTY, ARO, ON)
    assert decision.outcome is Outcome.REFUSE
    assert decision.failed_ids == ("channel.device-via-gateway", "channel.spoti-organisation-only")
    refusal = decision.refusal()
    assert isinstance(refusal, SmkiError) and isinstance(refusal, PolicyRefusal)
    assert refusal.code == "ra.refused"
    assert refusal.message == (
        "refused under rule set MP127 by channel.device-via-gateway, channel.spoti-organisation-only"
    )
    assert [r.reference for r in refusal.decision.failed] == [r.reference for r in decision.failed]
    assert pickle.loads(pickle.dumps(refusal)).decision == decision  # crosses batch worker processes


def test_a_single_rule_refusal_keeps_its_own_code_and_carries_the_rule_across_processes() -> None:
    result = check_dual_control("op1", "op1", [])
    refusal = RuleRefusal(result, "ra.dual-control", result.reason)
    copy = pickle.loads(pickle.dumps(refusal))
    assert (copy.code, copy.message, copy.result) == ("ra.dual-control", result.reason, result)
    default = RuleRefusal(result)
    assert (default.code, default.message) == ("ra.refused", f"refused by ra.dual-control: {result.reason}")


def test_an_approved_decision_has_no_refusal() -> None:
    decision = decide_request(DEVICE_VIA_GATEWAY, PARTY, ARO, ON)
    assert decision.approved and decision.failed == ()
    with pytest.raises(SmkiError) as caught:
        decision.refusal()
    assert caught.value.code == "ra.not-refused"


def test_to_dict_is_plain_json_with_every_result() -> None:
    decision = decide_request(SPOTI_DEVICE, PARTY, ARO, ON)
    data = json.loads(json.dumps(decision.to_dict()))
    assert data["format"] == 1
    assert data["kind"] == "request" and data["outcome"] == "refuse" and data["ruleset"] == "MP127"
    assert data["decided_on"] == "2021-02-01" and data["evidence_basis"] == "installation-need"
    assert data["subject"] == "device certificate request from P1 by ARO A1 via spoti"
    assert [r["rule_id"] for r in data["results"]] == [r.rule_id for r in decision.results]
    assert Decision.from_dict(data) == decision


def test_application_decision_record() -> None:
    decision = decide_application(DEVICE_APPLICATION, PARTY, ON, evidence_basis="registered-user")
    assert decision.kind is DecisionKind.APPLICATION
    assert decision.evidence_basis is EvidenceBasis.REGISTERED_USER
    assert decision.subject == "application APP-DEV-1: device Authorised Subscriber status for P1"
    assert Decision.from_dict(decision.to_dict()) == decision


def _stored() -> dict[str, Any]:
    return decide_request(SPOTI_DEVICE, PARTY, ARO, ON).to_dict()


def _tamper(change: str) -> dict[str, Any]:
    data = _stored()
    if change == "flip-outcome":
        data["outcome"] = "approve"
    elif change == "flip-result":
        data["results"][-2]["passed"] = True  # one failure remains: outcome no longer follows
        data["outcome"] = "approve"
    elif change == "passed-not-bool":
        data["results"][0]["passed"] = "yes"
    elif change == "no-results":
        del data["results"]
    elif change == "results-not-list":
        data["results"] = {"a": 1}
    elif change == "bad-date":
        data["decided_on"] = "2021-13-01"
    elif change == "bad-kind":
        data["kind"] = "ceremony"
    elif change == "bad-basis":
        data["evidence_basis"] = "whim"
    elif change == "future-format":
        data["format"] = 2
    elif change == "reason-not-text":
        data["results"][0]["reason"] = 7
    return data


@pytest.mark.parametrize(
    "change",
    [
        "flip-outcome",
        "flip-result",
        "passed-not-bool",
        "no-results",
        "results-not-list",
        "bad-date",
        "bad-kind",
        "bad-basis",
        "future-format",
        "reason-not-text",
    ],
)
def test_from_dict_refuses_malformed_or_inconsistent_records(change: str) -> None:
    with pytest.raises(SmkiError) as caught:
        Decision.from_dict(_tamper(change))
    assert caught.value.code in {"ra.decision-invalid", "ra.evidence-basis-unknown"}
    assert "\n" not in caught.value.message


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    )
)
def test_from_dict_never_raises_anything_but_a_coded_refusal(junk: object) -> None:
    try:
        Decision.from_dict(junk)  # type: ignore[arg-type]
    except SmkiError as error:
        assert error.code.startswith("ra.")


def test_explanation_table() -> None:
    text = render_explanation(decide_request(SPOTI_DEVICE, PARTY, ARO, ON))
    lines = text.splitlines()
    assert lines[0] == "Decision        REFUSE"
    assert "Rule set        MP127" in lines
    assert "Decided on      2021-02-01" in lines
    fail_lines = [line for line in lines if line.startswith("FAIL")]
    assert [line.split()[1] for line in fail_lines] == [
        "channel.device-via-gateway",
        "channel.spoti-organisation-only",
    ]
    assert "Device CSR arrived by spoti" in fail_lines[0]
    # Each rule's reference follows it on its own line.
    at = lines.index(fail_lines[0])
    assert lines[at + 1].strip().startswith("ref: MP074")
    assert lines[-1] == (
        "Refused by 2 of 11 rules: channel.device-via-gateway, channel.spoti-organisation-only"
    )
    approved = render_explanation(decide_request(ORG_VIA_SPOTI, PARTY, ARO, ON))
    assert approved.splitlines()[-1] == "Approved: all 8 rules passed."
    # A stored decision explains the same after a round trip, without the Party's state.
    again = Decision.from_dict(json.loads(json.dumps(decide_request(SPOTI_DEVICE, PARTY, ARO, ON).to_dict())))
    assert render_explanation(again) == text


def test_bad_inputs_are_coded_refusals() -> None:
    with pytest.raises(SmkiError) as caught:
        decide_request(DEVICE_VIA_GATEWAY, PARTY, ARO, ON, evidence_basis="because")
    assert caught.value.code == "ra.evidence-basis-unknown"
    with pytest.raises(SmkiError) as caught:
        decide_application(Application("APP-9", "P2", DEVICE), PARTY, ON)
    assert caught.value.code == "ra.party-mismatch"
    with pytest.raises(SmkiError) as caught:
        PartyState("P3", "Bad", PARTY.category, entity_roles={b"\x01\x02": frozenset()})
    assert caught.value.code == "ra.entity-id-invalid"


def test_state_snapshots_are_immutable() -> None:
    with pytest.raises(TypeError):
        PARTY.subscriber[DEVICE] = None  # type: ignore[index]
    source = {DEVICE: PARTY.standing(DEVICE)}
    snapshot = PartyState("P4", "Copy", PARTY.category, subscriber=source)
    source.clear()
    assert snapshot.standing(DEVICE) is PARTY.standing(DEVICE)


def test_rule_result_is_plain_data() -> None:
    result = decide_request(DEVICE_VIA_GATEWAY, PARTY, ARO, ON).results[0]
    assert isinstance(result, RuleResult)
    assert result == RuleResult(result.rule_id, result.passed, result.reason, result.reference)
