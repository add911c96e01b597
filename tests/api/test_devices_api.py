"""/api/v1/devices: the device register for RA staff credentials; subscribers are refused."""

from __future__ import annotations

from pathlib import Path

from smki.domain import Route
from smki.ra.rules import STAFF_RULES
from smki.services.context import Home
from tests.api.conftest import APPROVER, OPERATOR, PARTY, ClientFiles, LiveListeners, credential


def test_staff_read_and_record_devices_and_subscribers_cannot(live: LiveListeners, home: Home, aro: ClientFiles,
                                                             tmp_path: Path) -> None:
    staff = live.client(credential(home, tmp_path, "staff", OPERATOR), Route.GATEWAY)
    url = "/api/v1/devices/00-DB-12-34-56-78-90-0A"
    assert staff.get(url).json()["error"]["code"] == "device.not-registered"
    put = staff.put(url, json={"device_type": "GSME", "smi_status": "commissioned", "gas_supplier": PARTY,
                               "effective": "2026-05-01"})
    assert put.status_code == 200, put.text
    body = put.json()
    assert body["device"] == {"device_id": "00db12345678900a", "device_type": "GSME", "smi_status": "commissioned",
                              "import_supplier": None, "gas_supplier": PARTY, "network_operator": None,
                              "effective": "2026-05-01"}
    assert [c["recorded_by"] for c in body["changes"]] == [OPERATOR]
    bad = staff.put(url, json={"device_type": "GSME", "smi_status": "lost"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "device.bad-row"
    refused = live.client(aro, Route.GATEWAY).get(url)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "api.forbidden"
    # an RA approver may read but not change the register: rule ra.staff-role, named with its reference
    approver = live.client(credential(home, tmp_path, "staff", APPROVER), Route.GATEWAY)
    not_theirs = approver.put(url, json={"device_type": "GSME", "smi_status": "installed", "gas_supplier": PARTY})
    error = not_theirs.json()["error"]
    assert not_theirs.status_code == 403 and error["code"] == "ra.staff-role"
    [rule] = error["rules"]
    assert (rule["id"], rule["reference"]) == ("ra.staff-role", STAFF_RULES["ra.staff-role"].reference)
    assert rule["reason"] == error["message"]
