"""Eligible Subscribers (SEC L3.16) on the subscriber path: batches and the Portal answer INELIGIBLE
(IN:EL1) per CSR from the device register; the Ad Hoc service does not apply the check (spec §7.2)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.ca.devcsr import make_device_csr
from smki.domain import Route, SmiStatus, Usage
from smki.interfaces.dcc.codec import DeviceStatus, Service, dcc_error_for
from smki.interfaces.portal.dcc_status import classify_batch_outcome
from smki.ra.rules import DEFAULT_ELIGIBILITY, Eligible
from smki.services.batch_sources import BatchItem
from smki.services.context import Home
from smki.services.device_issuance import DeviceOutcome
from smki.services.device_register import put_device
from smki.services.requests import Requester, request_device, request_device_batch
from tests.api.conftest import ARO, OTHER_PARTY, PARTY

ME = Requester(PARTY, ARO, Route.GATEWAY)


def _device(n: int) -> bytes:
    return (0x00DB0E0000000000 + n).to_bytes(8, "big")


def _register(home: Home, n: int, status: str, supplier: str | None = None) -> None:
    put_device(home, {"device_id": _device(n).hex(), "device_type": "ESME", "smi_status": status,
                      "import_supplier": supplier}, actor="test")


def _batch(home: Home, numbers: list[int], ref: str, requester: Requester = ME) -> list[DeviceOutcome]:
    outcomes: list[DeviceOutcome] = []
    items = [BatchItem(i, f"c{n}", make_device_csr(_device(n), Usage.DS)) for i, n in enumerate(numbers)]
    request_device_batch(home, requester, items, batch_ref=ref, workers=0, on_chunk=outcomes.extend)
    return sorted(outcomes, key=lambda o: o.index)


def test_a_batch_is_answered_per_csr_from_the_register(home: Home) -> None:
    _register(home, 1, "pending")
    _register(home, 2, "commissioned", PARTY)
    _register(home, 3, "commissioned", OTHER_PARTY)
    _register(home, 4, "decommissioned", PARTY)
    _register(home, 5, "recovery", PARTY)
    outcomes = _batch(home, [0, 1, 2, 3, 4, 5], "elig")  # 0: unknown to the register
    assert [o.ok for o in outcomes] == [True, True, True, False, False, False]
    for refused in outcomes[3:]:
        assert refused.error_code == "ra.ineligible"
        assert (refused.error_message or "").startswith("device.eligible-subscriber: ")
        dcc = dcc_error_for(Service.BATCH, refused.error_code or "", refused.error_message or "")
        assert (dcc.status, dcc.error.code) == (DeviceStatus.INELIGIBLE, "IN:EL1")
        assert classify_batch_outcome(refused) == ("ineligible", "IN:EL1")  # the Portal's record
    for n in (3, 4, 5):
        assert home.store.certificates_for_device(_device(n)) == []
    # The responsible supplier is eligible where the other is not.
    assert _batch(home, [3], "theirs", Requester(OTHER_PARTY, "aro2", Route.GATEWAY))[0].ok


def test_unknown_devices_can_be_refused_and_the_check_switched_off(home: Home) -> None:
    strict = replace(home, settings=home.settings.configured({"eligibility": {"unknown": []}}))
    assert _batch(strict, [20], "strict")[0].error_code == "ra.ineligible"
    _register(home, 21, "withdrawn")
    off = replace(home, settings=replace(home.settings, eligible_subscriber_check=False))
    assert _batch(off, [21], "off")[0].ok


def test_the_ad_hoc_path_does_not_apply_the_check_but_the_portal_does(home: Home) -> None:
    _register(home, 30, "suspended")
    assert not request_device(home, ME, make_device_csr(_device(30), Usage.DS)).ok  # Portal / JSON
    assert request_device(home, ME, make_device_csr(_device(30), Usage.KA), eligibility=False).ok  # Ad Hoc


STATUSES = [s.value for s in SmiStatus]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.integers(100, 107), st.tuples(st.sampled_from(STATUSES),
                                                        st.sampled_from([PARTY, OTHER_PARTY, None]))),
       st.lists(st.integers(100, 109), min_size=1, max_size=8))
def test_invariant_no_certificate_for_an_ineligible_device(home: Home, register: dict[int, tuple[str, str | None]],
                                                          requested: list[int]) -> None:
    """Whatever the register says and whatever is asked, every certificate in the store for these
    Devices went to a Party the table admitted for the Device's status at the time."""
    for n, (status, supplier) in register.items():
        _register(home, n, status, supplier)
    outcomes = _batch(home, requested, f"prop-{len(requested)}-{sorted(register.items())!s:.40}")
    for n, outcome in zip(requested, outcomes, strict=True):
        status, supplier = register.get(n, ("unknown", None))
        allowed = DEFAULT_ELIGIBILITY[status]
        eligible = Eligible.ANY in allowed or (Eligible.SUPPLIER in allowed and supplier == PARTY)
        if not eligible:
            assert not outcome.ok and outcome.error_code == "ra.ineligible"
        elif outcome.ok:
            assert home.store.certificate_by_serial(outcome.serial or "") is not None
