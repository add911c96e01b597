"""Capacity limits (spec §3.3): per Party, per interface, shared through the database, refused by name."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.ca.devcsr import make_device_csr
from smki.domain import Usage
from smki.errors import ConfigError
from smki.interfaces.api.settings import ApiSettings
from smki.interfaces.dcc import codec as dx
from smki.services.capacity import (
    DEFAULT_LIMITS,
    CapacityExceeded,
    CapacitySettings,
    Limit,
    capacity_settings,
    consume,
    is_core_hours,
)
from smki.services.context import Home
from tests.api.conftest import ClientFiles, start_listeners, with_capacity

DAY = 86_400.0


def test_the_sec_defaults() -> None:
    assert DEFAULT_LIMITS["portal-adhoc"].capacity == 150 and DEFAULT_LIMITS["portal-adhoc"].period == DAY
    adhoc = DEFAULT_LIMITS["adhoc-service"]
    core = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)  # 13:00 BST
    night = datetime(2024, 6, 3, 22, 0, tzinfo=UTC)
    assert adhoc.rate(core) == pytest.approx(1 / 0.8) and adhoc.rate(night) == pytest.approx(1 / 4)
    assert DEFAULT_LIMITS["batch-csrs"].capacity == 50_000
    assert is_core_hours(datetime(2024, 1, 15, 7, 0, tzinfo=UTC)) and not is_core_hours(
        datetime(2024, 1, 15, 20, 0, tzinfo=UTC))
    assert not is_core_hours(datetime(2024, 6, 15, 19, 30, tzinfo=UTC))  # 20:30 BST


def test_configuration_raises_switches_off_and_rejects_nonsense(home: Home) -> None:
    assert capacity_settings(home).enabled is False  # the test home switches capacity off
    custom = capacity_settings(with_capacity(home, {"batch-csrs": {"capacity": 100_000}, "portal-adhoc": {
        "enabled": False}}))
    assert custom.enabled and custom.limits["batch-csrs"].capacity == 100_000 and "portal-adhoc" not in custom.limits
    with pytest.raises(ConfigError):
        capacity_settings(with_capacity(home, {"batch-csrs": {"capacity": -1}}))
    with pytest.raises(ConfigError):
        capacity_settings(with_capacity(home, {"enabled": "yes"}))


def test_buckets_refill_at_the_configured_rate_and_refusals_are_audited(home: Home) -> None:
    limits = CapacitySettings(True, {"t": Limit("t", 3, 30.0)})  # 3 per 30 s: one back every 10 s
    for _ in range(3):
        consume(home, limits, "P", "t", actor="a", interface="test", now=1000.0)
    with pytest.raises(CapacityExceeded) as caught:
        consume(home, limits, "P", "t", actor="a", interface="test", now=1001.0)
    assert caught.value.code == "capacity.t" and caught.value.retry_after == pytest.approx(9.0)
    consume(home, limits, "Q", "t", actor="a", interface="test", now=1001.0)  # per Party
    consume(home, limits, "P", "t", actor="a", interface="test", now=1010.5)
    with pytest.raises(CapacityExceeded):
        consume(home, limits, "P", "t", 5, actor="a", interface="test", now=5000.0)  # never fits
    refused = home.store.audit_rows_for("P", "capacity.refused")
    assert [r.details_dict["requested"] for r in refused] == [1, 5]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.floats(0, 50), st.integers(1, 3)), min_size=1, max_size=25))
def test_never_more_than_capacity_plus_refill(home: Home, steps: list[tuple[float, int]]) -> None:
    """Whatever the timing, granted units never exceed capacity + rate x elapsed time."""
    import uuid

    party = f"H{uuid.uuid4().hex}"  # a fresh bucket per example (the database is shared)
    limits = CapacitySettings(True, {"h": Limit("h", 5, 10.0)})
    now, granted = 0.0, 0
    for gap, amount in steps:
        now += gap
        try:
            consume(home, limits, party, "h", amount, actor="a", interface="t", now=now)
            granted += amount
        except CapacityExceeded:
            pass
        assert granted <= 5 + 0.5 * now + 1e-9


def test_over_the_limit_is_429_on_json_and_workflow_error_on_xml(home: Home, aro: ClientFiles,
                                                                 api_settings: ApiSettings, tmp_path: Path) -> None:
    limited = with_capacity(home, {"adhoc-service": {"capacity": 1, "period": 3600, "off-peak-period": 3600},
                                   "batch-csrs": {"capacity": 3, "period": DAY}})
    live = start_listeners(limited, replace(api_settings), runner=False)
    try:
        client = live.client(aro)
        csr = base64.b64encode(make_device_csr(bytes.fromhex("00db00000000c001"), Usage.DS)).decode()
        assert client.post("/api/v1/device-certificates", json={"csr": csr}).status_code == 201
        second = client.post("/api/v1/device-certificates",
                             json={"csr": base64.b64encode(make_device_csr(bytes.fromhex("00db00000000c001"),
                                                                           Usage.KA)).decode()})
        assert second.status_code == 429
        assert int(second.headers["retry-after"]) > 3000
        error = second.json()["error"]
        assert error["code"] == "capacity.adhoc-service"
        assert error["rules"][0]["id"] == "capacity.adhoc-service" and "Appendix N" in error["rules"][0]["reference"]
        # The Ad Hoc XML service shares the same limit: WORKFLOW_ERROR WF:AA1 naming it.
        body = dx.render_device_csr_request(dx.DeviceCertificateSigningRequest(
            "cap", make_device_csr(bytes.fromhex("00db00000000c001"), Usage.KA)))
        answer = dx.parse_device_csr_response(client.post("/1.0/DeviceCSR", content=body).content)
        assert answer.status is dx.AdHocStatus.WORKFLOW_ERROR and answer.error is not None
        assert answer.error.code == "WF:AA1" and "capacity.adhoc-service" in answer.error.text
        # Batches: 3 CSRs per day; a batch of 4 is refused whole, before anything is stored.
        four = dx.SubmitCSRBatch("cap", tuple(dx.DeviceCSR(f"i{i}", make_device_csr(
            (0x00DB00000000D000 + i).to_bytes(8, "big"), Usage.DS)) for i in range(4)))
        status = dx.parse_submit_csr_batch_status(
            client.post("/1.0/PortalCSRBatch/SubmitCSRBatch", content=dx.render_submit_csr_batch(four)).content)
        assert status.status is dx.SubmitStatus.WORKFLOW_ERROR and status.error is not None
        assert status.error.code == "WF:AA1" and "capacity.batch-csrs" in status.error.text
        json_batch = client.post("/api/v1/device-batches", json={"csrs": [{"id": "a", "csr": csr}] * 1 + [
            {"id": f"b{i}", "csr": csr} for i in range(3)]})
        assert json_batch.status_code == 429 and json_batch.json()["error"]["code"] == "capacity.batch-csrs"
        assert [r.action for r in home.store.audit_rows() if r.action == "capacity.refused"] == [
            "capacity.refused"] * 4
    finally:
        live.stop()


def test_a_refusal_names_the_period_in_force(home: Home) -> None:
    """The Ad Hoc web service's limit is 1 CSR per 0.8 s in core hours and 1 per 4 s otherwise
    (spec §3.3); a refusal at night must say 4 s, the limit that refused it, not 0.8 s."""
    limits = CapacitySettings(True, {"adhoc-service": DEFAULT_LIMITS["adhoc-service"]})
    night = datetime(2024, 1, 15, 22, 0, tzinfo=UTC).timestamp()
    noon = datetime(2024, 1, 16, 12, 0, tzinfo=UTC).timestamp()
    for moment, period in ((night, "per 4 s"), (noon, "per 0.8 s")):
        consume(home, limits, "P", "adhoc-service", actor="a", interface="adhoc", now=moment)
        with pytest.raises(CapacityExceeded) as caught:
            consume(home, limits, "P", "adhoc-service", actor="a", interface="adhoc", now=moment + 0.1)
        assert caught.value.code == "capacity.adhoc-service"
        assert caught.value.message == f"Party P has used its capacity of 1 {period}"
