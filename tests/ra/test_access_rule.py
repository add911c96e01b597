"""``channel.spoti-organisation-access``: reading certificates over a route, decided like every rule.

MP074 (the seed, Modification Report §7): "Parties using SPOTI can only access Organisation
Certificates not Device Certificates". From the MP074 rule set on, any read of Device Certificates
over SPOTI is refused; every other route and every Organisation read passes; before MP074 (the
``baseline`` rule set, which has no channel rule at all) nothing limited reads.
"""

from __future__ import annotations

import json
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from smki.domain import CertificatePolicy, Route
from smki.ra import Decision, DecisionKind, PolicyRefusal, decide_access
from smki.ra.rules import describe
from smki.ra.rulesets import BASELINE, MP074, MP127, ruleset_for

MP074_DAY = date(2019, 11, 7)
RULE = "channel.spoti-organisation-access"
days = st.one_of(st.dates(min_value=date(2015, 1, 1), max_value=date(2040, 12, 31)),
                 st.sampled_from([date(2019, 11, 6), MP074_DAY, date(2020, 11, 29)]))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Route)), st.sampled_from(list(CertificatePolicy)), days,
       st.text(min_size=1, max_size=40).filter(lambda t: "\n" not in t))
def test_a_read_is_refused_exactly_when_device_certificates_are_read_over_spoti_from_mp074(
        route: Route, policy: CertificatePolicy, on: date, subject: str) -> None:
    decision = decide_access(route, policy, subject, on)
    in_force = on >= MP074_DAY
    refused = in_force and route is Route.SPOTI and policy is CertificatePolicy.DEVICE
    assert decision.kind is DecisionKind.ACCESS and decision.ruleset == ruleset_for(on).name
    assert decision.approved is not refused
    assert [r.rule_id for r in decision.results] == ([RULE] if in_force else [])
    if refused:
        assert decision.failed_ids == (RULE,)
        error = decision.refusal()
        assert isinstance(error, PolicyRefusal) and error.code == "ra.refused" and RULE in error.message
        failed = decision.failed[0]
        assert failed.reference == describe(RULE).reference and "SPOTI" in failed.reason
    assert Decision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision


def test_the_rule_rests_on_the_mp074_sentence_it_shares_with_the_csr_rule() -> None:
    access, csr = describe(RULE), describe("channel.spoti-organisation-only")
    assert access.reference == csr.reference
    assert "Parties using SPOTI can only access Organisation Certificates, not Device Certificates" in access.reference


def test_only_mp074_and_later_rule_sets_hold_it() -> None:
    assert BASELINE.for_access() == ()
    assert MP074.for_access() == MP127.for_access() == (RULE,)
    assert RULE in MP074.rule_ids() and RULE not in BASELINE.rule_ids()


def test_a_what_if_under_baseline_reads_device_certificates_over_spoti() -> None:
    today = date(2026, 1, 1)
    assert not decide_access(Route.SPOTI, CertificatePolicy.DEVICE, "x", today).approved
    what_if = decide_access(Route.SPOTI, CertificatePolicy.DEVICE, "x", today, ruleset=BASELINE)
    assert what_if.approved and what_if.ruleset == "baseline"
