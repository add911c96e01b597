"""The Portal on SPOTI offers no Device Certificate or device batch (MP074), and refuses them by URL.

On SPOTI no link, form field or page shows a Device Certificate or a device batch; reaching one by
its URL shows the refusal page naming ``channel.spoti-organisation-access`` (403, audited). The
Gateway's Portal serves them exactly as before, and Organisation Certificates stay on SPOTI.
"""

from __future__ import annotations

import re

import httpx

from smki.ca.devcsr import make_device_csr, make_organisation_csr
from smki.domain import RemotePartyRole, Route, Usage
from smki.services.batch_jobs import BatchRunner, submit_batch
from smki.services.capacity import capacity_settings
from smki.services.context import Home
from smki.services.requests import Requester, request_device, request_organisation
from tests.portal.conftest import ARO, ENTITY, PARTY, Clients, approve_device, register

ARO_H = {"x-test-identity": f"aro:{PARTY}:{ARO}"}
RULE = "channel.spoti-organisation-access"
DEVICE_ID = "00DB000000000400"


def _setup(home: Home) -> tuple[str, str, int]:
    """A Device Certificate, an Organisation Certificate and a completed device batch of the Party."""
    app_id = register(home)
    assert app_id is not None
    approve_device(home, app_id)
    gateway = Requester(PARTY, ARO, Route.GATEWAY)
    device = request_device(home, gateway, make_device_csr(bytes.fromhex(DEVICE_ID), Usage.DS))
    assert device.serial is not None
    org = request_organisation(home, Requester(PARTY, ARO, Route.SPOTI),
                               make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS))
    job = submit_batch(home, gateway, [("1", make_device_csr(bytes.fromhex("00db000000000401"), Usage.DS))],
                       interface="json", client_ref="nightly", capacity=capacity_settings(home))
    BatchRunner(home, workers=0, poll=0.01).run_once()
    return device.serial, org.serial, job.id


def _refused(reply: httpx.Response) -> None:
    assert reply.status_code == 403, reply.text[-500:]
    assert f'data-rule="{RULE}"' in reply.text and "Parties using SPOTI can only access" in reply.text


def test_spoti_portal_shows_no_device_certificate_or_batch_and_refuses_their_urls(home: Home,
                                                                                  clients: Clients) -> None:
    device, org, batch = _setup(home)
    gw, sp = clients.gateway, clients.spoti
    # no link to the batch pages, no Device ID search field
    for client, shown in ((gw, True), (sp, False)):
        page = client.get("/portal/aro/certificates", headers=ARO_H)
        assert page.status_code == 200
        assert ('href="/portal/aro/batches"' in page.text) is shown
        assert ('id="device"' in page.text) is shown
    before = home.store.audit_head()[0]
    pages = ["/portal/aro/batches", f"/portal/aro/batches/{batch}", f"/portal/aro/batches/{batch}/response.zip",
             f"/portal/aro/certificates/{device}", f"/portal/aro/certificates/{device}.pem",
             f"/portal/aro/certificates/{device}.der", f"/portal/aro/certificates?device={DEVICE_ID}"]
    for path in pages:
        _refused(sp.get(path, headers=ARO_H))
        assert gw.get(path, headers=ARO_H).status_code == 200, path
    status = sp.get(f"/portal/aro/batches/{batch}/status", headers=ARO_H)
    assert status.status_code == 403 and status.json()["error"] == "ra.refused"
    assert gw.get(f"/portal/aro/batches/{batch}/status", headers=ARO_H).json()["status"] == "COMPLETED"
    # the upload form's POST is refused by the rule before the form is even read
    _refused(sp.post("/portal/aro/batches", headers=ARO_H, data={"csrf": "x"}))
    assert device in gw.get(f"/portal/aro/certificates?device={DEVICE_ID}", headers=ARO_H).text
    refusals = [r for r in home.store.audit_rows(before + 1) if r.action == "access.refused"]
    assert len(refusals) == len(pages) + 2
    assert {r.actor for r in refusals} == {f"aro:{ARO}@{PARTY}"}
    assert all(r.details_dict["route"] == "spoti" and r.details_dict["rules"] == [RULE] for r in refusals)
    # the Party's Organisation Certificate is listed, shown and downloaded on SPOTI
    listing = sp.get("/portal/aro/certificates", headers=ARO_H).text
    assert org in listing and device not in listing
    assert sp.get(f"/portal/aro/certificates/{org}", headers=ARO_H).status_code == 200
    pem = sp.get(f"/portal/aro/certificates/{org}.pem", headers=ARO_H)
    assert pem.status_code == 200 and re.match(rb"-----BEGIN CERTIFICATE-----", pem.content)
