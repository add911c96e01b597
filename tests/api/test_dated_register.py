"""Future-dated device register changes (issue 13): a change dated later is recorded at once but does
not apply before its date. The Eligible Subscriber check judges a CSR on the register state in force
when it is decided, and a what-if (``--on DATE``) on the state in force on DATE."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.ca.devcsr import make_device_csr
from smki.domain import Route, SmiStatus, Usage
from smki.services.batch_sources import BatchItem
from smki.services.context import Home
from smki.services.device_issuance import DeviceOutcome
from smki.services.device_register import get_device, put_device, view_device
from smki.services.ra_state import today
from smki.services.requests import Requester, request_device_batch
from smki.services.what_if import device_request_on
from smki.store.devices import device_reads
from tests.api.conftest import ARO, OTHER_PARTY, PARTY

ME = Requester(PARTY, ARO, Route.GATEWAY)


def _device(n: int) -> bytes:
    return (0x00DB0D0000000000 + n).to_bytes(8, "big")


def _change(home: Home, n: int, status: str, effective: date, supplier: str | None = PARTY) -> None:
    put_device(home, {"device_id": _device(n).hex(), "device_type": "ESME", "smi_status": status,
                      "import_supplier": supplier, "effective": effective.isoformat()}, actor="test")


def _issue(home: Home, n: int, usage: Usage = Usage.DS) -> DeviceOutcome:
    outcomes: list[DeviceOutcome] = []
    request_device_batch(home, ME, [BatchItem(0, f"c{n}", make_device_csr(_device(n), usage))],
                         batch_ref=f"dated-{n}-{usage.value}", workers=0, on_chunk=outcomes.extend)
    return outcomes[0]


def test_a_change_dated_later_does_not_apply_before_its_date(home: Home) -> None:
    now = today()
    _change(home, 1, "commissioned", now - timedelta(days=300))
    _change(home, 1, "decommissioned", now + timedelta(days=30))  # recorded today, in force next month
    reads = device_reads(home.store)
    assert reads.entries_on([_device(1)], now)[_device(1)].smi_status == "commissioned"
    assert reads.entries_on([_device(1)], now + timedelta(days=30))[_device(1)].smi_status == "decommissioned"
    # the decision made today uses today's state: the responsible supplier gets its certificate
    assert _issue(home, 1).ok
    # a what-if on a date after the change sees it; one today does not
    csr = [("m1", make_device_csr(_device(1), Usage.KA))]
    later = device_request_on(home, PARTY, ARO, "gateway", csr, now + timedelta(days=31)).csrs[0]
    assert later.code == "ra.ineligible" and later.message.startswith("device.eligible-subscriber: ")
    assert device_request_on(home, PARTY, ARO, "gateway", csr, now).csrs[0].code is None
    # what staff see: today's state, and the change still to come marked as such
    entry, history = get_device(home, _device(1))
    assert entry.smi_status == "commissioned" and len(history) == 2
    view = view_device(home, _device(1))
    assert [view.scheduled(c) for c in view.changes] == [False, True]
    assert [view.current(c) for c in view.changes] == [True, False]


def test_a_back_dated_change_does_not_override_a_later_dated_one(home: Home) -> None:
    now = today()
    _change(home, 2, "suspended", now - timedelta(days=10), supplier=OTHER_PARTY)
    _change(home, 2, "commissioned", now - timedelta(days=20))  # a correction of an earlier state
    reads = device_reads(home.store)
    assert reads.entries_on([_device(2)], now)[_device(2)].smi_status == "suspended"
    assert reads.entries_on([_device(2)], now - timedelta(days=15))[_device(2)].smi_status == "commissioned"
    assert not _issue(home, 2).ok


def test_a_device_whose_first_change_is_still_to_come_is_unknown_until_then(home: Home) -> None:
    now = today()
    _change(home, 3, "commissioned", now + timedelta(days=5), supplier=OTHER_PARTY)
    assert device_reads(home.store).entries_on([_device(3)], now) == {}
    strict = replace(home, settings=home.settings.configured({"eligibility": {"unknown": []}}))
    assert _issue(strict, 3).error_code == "ra.ineligible"  # unknown today, and unknown Devices are refused
    ahead = device_request_on(home, PARTY, ARO, "gateway", [("m3", make_device_csr(_device(3), Usage.KA))],
                              now + timedelta(days=5)).csrs[0]
    assert ahead.code == "ra.ineligible"  # on that date another supplier is responsible
    assert view_device(home, _device(3)).in_force is None


_serial = itertools.count(1000)
STATUSES = [s.value for s in SmiStatus]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(-40, 40), st.sampled_from(STATUSES)), min_size=1, max_size=6),
       st.integers(-50, 50))
def test_property_the_state_on_a_date_is_the_latest_change_dated_on_or_before_it(
        home: Home, changes: list[tuple[int, str]], asked: int) -> None:
    """Whatever order dated changes are recorded in, the state on a date is the latest-dated change
    on or before it (the last recorded, for one date), and nothing before the first one."""
    n = next(_serial)
    now = today()
    for offset, status in changes:
        _change(home, n, status, now + timedelta(days=offset))
    on = now + timedelta(days=asked)
    in_force = [(offset, i, status) for i, (offset, status) in enumerate(changes) if offset <= asked]
    found = device_reads(home.store).entries_on([_device(n)], on).get(_device(n))
    if not in_force:
        assert found is None
    else:
        offset, _, status = max(in_force)
        assert found is not None and (found.smi_status, found.effective) == (status, now + timedelta(days=offset))
