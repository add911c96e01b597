"""Issue 13 in the Portal: uploaded ZIPs follow the batch lifecycle (PENDING until approved or
auto-approved, PAUSED outside the processing window, REJECTED with a reason); RA staff approve or
reject them from a queue, and look Devices up in the device register (state in force, dated changes)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from smki.ca.devcsr import make_device_csr
from smki.domain import CertKind, Route, Usage
from smki.services.batch_jobs import BatchRunner
from smki.services.context import Home
from smki.services.device_register import put_device
from smki.services.portal_batches import read_response_zip, write_portal_zip
from smki.services.ra_state import today
from smki.store import CertificateQuery
from smki.store.batches import batch_reads
from tests.portal.conftest import APPROVER, AUDITOR, OPERATOR, PARTY, approve_device, make_app, register
from tests.portal.test_pages import ARO_H, staff, token


def _with(home: Home, **batches: object) -> Home:
    return replace(home, settings=home.settings.configured({"batches": batches}))


@pytest.fixture
def ready(home: Home) -> Home:
    app_id = register(home)
    assert app_id is not None
    approve_device(home, app_id)
    return home


@pytest.fixture
def waiting_client(ready: Home) -> Iterator[TestClient]:
    """The Portal where every batch waits for the RA (auto-approval off)."""
    with TestClient(make_app(_with(ready, **{"auto-approve-max": 0}), Route.GATEWAY)) as client:
        yield client


def _upload(client: TestClient, name: str, first: int, count: int = 2) -> int:
    files = [(f"m{n}.csr", base64.b64encode(make_device_csr((first + n).to_bytes(8, "big"), Usage.DS)))
             for n in range(count)]
    t = token(client.get("/portal/aro/batches", headers=ARO_H))
    reply = client.post("/portal/aro/batches", headers=ARO_H, data={"csrf": t},
                        files={"batch": (name, write_portal_zip(files), "application/zip")}, follow_redirects=False)
    assert reply.status_code == 303, reply.text
    return int(reply.headers["location"].rsplit("/", 1)[-1])


def _devices(home: Home) -> int:
    return len(home.store.find_certificates(CertificateQuery(kind=CertKind.DEVICE, limit=1000)))


def test_an_uploaded_zip_waits_for_the_ra_and_an_approver_approves_it_from_the_queue(
        ready: Home, waiting_client: TestClient) -> None:
    gw = waiting_client
    job = _upload(gw, "week 1.zip", 0x00DB0C0000000000)
    page = gw.get(f"/portal/aro/batches/{job}", headers=ARO_H).text
    assert ">PENDING</strong> (Awaiting RA approval)" in page and "waits for the RA's approval" in page
    assert gw.get(f"/portal/aro/batches/{job}/status", headers=ARO_H).json()["status"] == "PENDING"
    assert gw.get(f"/portal/aro/batches/{job}/response.zip", headers=ARO_H).status_code == 400
    assert _devices(ready) == 0
    assert 'data-label="Status">Awaiting RA approval<' in gw.get("/portal/aro/batches", headers=ARO_H).text
    # the queue: an operator sees it but is offered no decision; an approver is
    as_operator = gw.get("/portal/staff/batches", headers=staff(OPERATOR)).text
    row = re.search(rf'<tr id="batch-{job}".*?</tr>', as_operator, re.S)
    assert row and "week-1" in row.group(0) and "Portal" in row.group(0) and PARTY in row.group(0)
    assert 'data-label="CSRs">2<' in row.group(0) and "/approve" not in row.group(0)
    assert "1</strong> batches awaiting approval" in gw.get("/portal/staff", headers=staff(OPERATOR)).text
    queue = gw.get("/portal/staff/batches", headers=staff(APPROVER))
    assert f"/portal/staff/batches/{job}/approve" in queue.text and f'id="reason-{job}"' in queue.text
    # the form token is required, and the service still checks the role behind the buttons
    forged = gw.post(f"/portal/staff/batches/{job}/approve", headers=staff(APPROVER), data={"csrf": "0" * 64})
    assert forged.status_code == 403 and "portal.form-expired" in forged.text
    refused = gw.post(f"/portal/staff/batches/{job}/approve", headers=staff(OPERATOR),
                      data={"csrf": token(gw.get("/portal/staff/parties", headers=staff(OPERATOR)))})
    assert refused.status_code == 403 and "ra.staff-role" in refused.text
    done = gw.post(f"/portal/staff/batches/{job}/approve", headers=staff(APPROVER), data={"csrf": token(queue)})
    assert "The batch was approved" in done.text and f'id="batch-{job}"' not in done.text
    status = gw.get(f"/portal/aro/batches/{job}/status", headers=ARO_H).json()
    assert (status["status"], status["counts"]["success"]) == ("COMPLETED", 2)
    response = read_response_zip(gw.get(f"/portal/aro/batches/{job}/response.zip", headers=ARO_H).content, "week-1")
    assert sorted(response.certificates) == ["m0.crt", "m1.crt"] and _devices(ready) == 2
    approved = [r for r in ready.store.audit_tail(30) if r.action == "batch.approved"]
    assert approved and approved[-1].actor == APPROVER


def test_an_approver_rejects_an_uploaded_zip_with_a_reason_the_aro_then_sees(
        ready: Home, waiting_client: TestClient) -> None:
    gw = waiting_client
    job = _upload(gw, "dup.zip", 0x00DB0C0000000100)
    t = token(gw.get("/portal/staff/batches", headers=staff(APPROVER)))
    blank = gw.post(f"/portal/staff/batches/{job}/reject", headers=staff(APPROVER), data={"csrf": t, "reason": " "})
    assert blank.status_code == 400 and "ra.reason-required" in blank.text
    # Too long: refused and shown back whole, not cut to 500 characters and recorded (found by an exploratory run)
    long = "START" + "x" * 600 + "END"
    over = gw.post(f"/portal/staff/batches/{job}/reject", headers=staff(APPROVER), data={"csrf": t, "reason": long})
    assert over.status_code == 400 and "ra.reason-required" in over.text and "xEND" in over.text
    assert "batch.rejected" not in [r.action for r in ready.store.audit_tail(5)]
    done = gw.post(f"/portal/staff/batches/{job}/reject", headers=staff(APPROVER),
                   data={"csrf": t, "reason": "sent twice by mistake"})
    assert "The batch was rejected" in done.text
    again = gw.post(f"/portal/staff/batches/{job}/approve", headers=staff(APPROVER), data={"csrf": t})
    assert again.status_code == 400 and "batch.not-pending" in again.text
    page = gw.get(f"/portal/aro/batches/{job}", headers=ARO_H).text
    assert ">REJECTED</strong>" in page and "Rejected by the RA: sent twice by mistake" in page
    assert "sent twice by mistake" in gw.get("/portal/aro/batches", headers=ARO_H).text
    assert _devices(ready) == 0
    # the auditor sees the queue and can decide nothing
    assert "An RA approver decides" not in gw.get("/portal/staff/batches", headers=staff(AUDITOR)).text  # empty
    job2 = _upload(gw, "later.zip", 0x00DB0C0000000200)
    as_auditor = gw.get("/portal/staff/batches", headers=staff(AUDITOR)).text
    assert f'id="batch-{job2}"' in as_auditor and "/approve" not in as_auditor


def test_outside_the_processing_window_an_uploaded_zip_is_paused_then_resumes(ready: Home) -> None:
    hour = datetime.now(UTC).hour
    night = _with(ready, window=f"{(hour + 2) % 24:02d}:00-{(hour + 3) % 24:02d}:00")
    with TestClient(make_app(night, Route.GATEWAY)) as gw:
        job = _upload(gw, "night.zip", 0x00DB0C0000000300)  # auto-approved, then the runner finds the window shut
        page = gw.get(f"/portal/aro/batches/{job}", headers=ARO_H).text
        assert ">PAUSED</strong> (Paused)" in page and "outside the processing window" in page
        assert _devices(ready) == 0
        assert BatchRunner(ready, workers=0, poll=0.01).run_once() == 1  # no window: it resumes
        assert gw.get(f"/portal/aro/batches/{job}/status", headers=ARO_H).json()["status"] == "COMPLETED"
    assert _devices(ready) == 2


def test_a_portal_upload_is_a_stored_batch_with_the_same_rules_as_the_web_services(ready: Home) -> None:
    with TestClient(make_app(ready, Route.GATEWAY)) as gw:
        job = _upload(gw, "stored.zip", 0x00DB0C0000000400, count=3)
    stored = batch_reads(ready.store).job(job)
    assert stored is not None
    assert (stored.interface, stored.client_ref, stored.status) == ("portal", "stored", "COMPLETED")
    assert [i.item_id for i in batch_reads(ready.store).iter_items(job)] == ["m0.csr", "m1.csr", "m2.csr"]
    accepted = [r for r in ready.store.audit_tail(40) if r.action == "batch.accepted"]
    assert accepted[-1].details_dict["interface"] == "portal"


def test_the_device_register_view_shows_the_state_in_force_and_the_dated_changes(ready: Home) -> None:
    device = "00DB0C0000000500"
    put_device(ready, {"device_id": device, "device_type": "ESME", "smi_status": "commissioned",
                       "import_supplier": PARTY, "effective": (today() - timedelta(days=40)).isoformat()},
               actor=OPERATOR)
    put_device(ready, {"device_id": device, "device_type": "ESME", "smi_status": "decommissioned",
                       "import_supplier": PARTY, "effective": (today() + timedelta(days=9)).isoformat()},
               actor=OPERATOR)
    with TestClient(make_app(ready, Route.GATEWAY)) as gw:
        empty = gw.get("/portal/staff/devices", headers=staff(AUDITOR))
        assert empty.status_code == 200 and 'id="device-search"' in empty.text and "device-entry" not in empty.text
        page = gw.get("/portal/staff/devices", params={"device": "00-DB-0C-00-00-00-05-00"}, headers=staff(AUDITOR))
        assert page.status_code == 200
        entry = re.search(r'<dl class="facts" id="device-entry">(.*?)</dl>', page.text, re.S)
        assert entry and "<dd>commissioned</dd>" in entry.group(1) and f"<dd>{PARTY}</dd>" in entry.group(1)
        assert "<dd>ESME</dd>" in entry.group(1)
        states = re.findall(r'data-label="SMI status">(\w+)</td>.*?data-label="State">([^<]+)</td>',
                            page.text, re.S)
        assert states == [("commissioned", "In force"), ("decommissioned", "Scheduled: not yet in force")]
        unknown = gw.get("/portal/staff/devices", params={"device": "00DB0C0000000599"}, headers=staff(AUDITOR))
        assert unknown.status_code == 404 and "device.not-registered" in unknown.text
        bad = gw.get("/portal/staff/devices", params={"device": "not-an-id"}, headers=staff(OPERATOR))
        assert bad.status_code == 400
        assert gw.get("/portal/staff/devices", headers=ARO_H).status_code == 403  # staff only


@pytest.mark.parametrize("ref", ["99999999999999999999999", "9223372036854775808", "\u0663", "-1"])
@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_a_batch_number_the_store_cannot_hold_is_not_found_not_a_500(
        ready: Home, waiting_client: TestClient, ref: str, verb: str) -> None:
    gw = waiting_client
    job = _upload(gw, "n.zip", 0x00DB0C0000000200)
    t = token(gw.get("/portal/staff/batches", headers=staff(APPROVER)))
    reply = gw.post(f"/portal/staff/batches/{ref}/{verb}", headers=staff(APPROVER),
                    data={"csrf": t, "reason": "r"})
    assert reply.status_code == 404 and "batch.not-found" in reply.text
    assert gw.get(f"/portal/aro/batches/{job}/status", headers=ARO_H).json()["status"] == "PENDING"
