"""Rule sets: which one is in force on which day, and how later ones are derived from earlier ones."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import pairwise

import pytest

from smki.domain import CertificatePolicy
from smki.errors import SmkiError
from smki.ra.engine import decide_application, decide_request
from smki.ra.rulesets import BASELINE, MP074, MP127, RULESETS, ruleset_for, ruleset_named
from tests.ra.factories import DEVICE_APPLICATION, ORG_VIA_SPOTI, PARTY, aro, party


@pytest.mark.parametrize(
    ("day", "name"),
    [
        (date(2000, 1, 1), "baseline"),
        (date(2019, 11, 6), "baseline"),
        (date(2019, 11, 7), "MP074"),
        (date(2020, 11, 28), "MP074"),
        (date(2020, 11, 29), "MP127"),
        (date(2035, 1, 1), "MP127"),
        (date.min, "baseline"),
        (date.max, "MP127"),
    ],
)
def test_ruleset_for_each_day(day: date, name: str) -> None:
    assert ruleset_for(day).name == name


def test_each_ruleset_only_adds_to_the_one_before() -> None:
    for earlier, later in pairwise(RULESETS):
        assert later.based_on == earlier.name
        assert later.effective_from > earlier.effective_from
        for policy in CertificatePolicy:
            # The earlier rules come first, unchanged and in order; the new ones follow.
            n = len(earlier.for_application(policy))
            assert later.for_application(policy)[:n] == earlier.for_application(policy)
            n = len(earlier.for_request(policy))
            assert later.for_request(policy)[:n] == earlier.for_request(policy)


def test_the_rule_sets_say_what_the_spec_says() -> None:
    dev = CertificatePolicy.DEVICE
    assert set(BASELINE.for_application(dev)) == {"device.evidence-of-need", "any.srept-passed"}
    assert set(MP074.for_application(dev)) - set(BASELINE.for_application(dev)) == {
        "device.uept-completed",
        "device.gateway-channel",
    }
    assert not any(r.startswith("channel.") for r in BASELINE.rule_ids())
    assert "aro.screened" not in MP074.rule_ids()
    assert MP127.rule_ids() - MP074.rule_ids() == {"aro.screened"}


def test_extend_leaves_the_original_untouched() -> None:
    before = (dict(MP127.application_rules), dict(MP127.request_rules), MP127.control_rules)
    future = MP127.extend(
        "MP-FUTURE",
        date(2031, 1, 1),
        "test only",
        request_rules={CertificatePolicy.ORGANISATION: ("channel.spoti-organisation-only",)},
    )
    assert (dict(MP127.application_rules), dict(MP127.request_rules), MP127.control_rules) == before
    assert future.for_request(CertificatePolicy.ORGANISATION)[-1] == "channel.spoti-organisation-only"
    assert ruleset_for(date(2032, 1, 1), (*RULESETS, future)) is future
    assert ruleset_for(date(2032, 1, 1)) is MP127
    with pytest.raises(TypeError):
        MP127.request_rules[CertificatePolicy.DEVICE] = ()  # type: ignore[index]


def test_ruleset_override_answers_what_if_and_names_the_ruleset_used() -> None:
    on = date(2019, 1, 1)
    no_uept = party(uept_completed=None)
    assert decide_application(DEVICE_APPLICATION, no_uept, on).approved
    what_if = decide_application(DEVICE_APPLICATION, no_uept, on, ruleset=MP074)
    assert what_if.ruleset == "MP074" and what_if.failed_ids == ("device.uept-completed",)
    unscreened = aro(screened=None)
    assert decide_request(ORG_VIA_SPOTI, PARTY, unscreened, on, ruleset=MP127).failed_ids == ("aro.screened",)


@pytest.mark.parametrize(
    ("build", "code"),
    [
        (lambda: MP127.extend("X", MP127.effective_from, "same day"), "ra.ruleset-order"),
        (lambda: MP127.extend("X", MP127.effective_from - timedelta(days=1), "earlier"), "ra.ruleset-order"),
        (
            lambda: MP127.extend(
                "X", date(2040, 1, 1), "d", request_rules={CertificatePolicy.DEVICE: ("no.such",)}
            ),
            "ra.rule-unknown",
        ),
        (
            lambda: MP127.extend(
                "X", date(2040, 1, 1), "d", request_rules={CertificatePolicy.DEVICE: ("aro.screened",)}
            ),
            "ra.rule-duplicate",
        ),
        (lambda: MP127.extend("X", date(2040, 1, 1), "d", control_rules=("aro.active",)), "ra.rule-unknown"),
        (
            lambda: MP127.extend(
                "X", date(2040, 1, 1), "d", application_rules={CertificatePolicy.DEVICE: ("aro.active",)}
            ),
            "ra.rule-misplaced",
        ),
        (lambda: ruleset_named("MP999"), "ra.ruleset-unknown"),
        (lambda: ruleset_for(date(2020, 1, 1), ()), "ra.ruleset-none"),
    ],
    ids=[
        "same-day",
        "earlier",
        "unknown-rule",
        "duplicate-rule",
        "policy-rule-as-control",
        "request-rule-on-application",
        "unknown-name",
        "none",
    ],
)
def test_misuse_is_a_coded_refusal(build: object, code: str) -> None:
    with pytest.raises(SmkiError) as caught:
        build()  # type: ignore[operator]
    assert caught.value.code == code
    assert "\n" not in caught.value.message


def test_ruleset_named() -> None:
    assert ruleset_named("MP074") is MP074
