"""A Party's DCC Gateway Connections and Registered User roles are dated (migration 0013): a what-if
for a date before a connection was added refuses with ``device.gateway-channel``, one after it
approves, and removing the connection ends its period without losing its history."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.ca.devcsr import make_device_csr
from smki.domain import Usage
from tests.cli.conftest import Run
from tests.cli.test_ra_console import fails, ok

ROUTE = ("--party", "P1", "--aro", "A1", "--route", "gateway")


def _approved_subscriber(run: Run) -> None:
    """P1 with SREPT and UEPT in 2019, a Gateway Connection only from 2020-03-01, an approved Device
    subscriber (today), and a verified, screened ARO A1."""
    ok(run, "staff", "add", "op1", "--name", "Olive", "--role", "ra-operator")
    ok(run, "staff", "add", "ap1", "--name", "April", "--role", "ra-approver")
    ok(run, "party", "add", "P1", "--name", "Acme", "--category", "large-supplier", "--as", "op1")
    ok(run, "party", "set-status", "P1", "--srept", "2019-06-01", "--uept", "2019-09-01", "--as", "op1")
    ok(run, "party", "set-status", "P1", "--gateway", "GW-1", "--registered-role", "import-supplier",
       "--effective", "2020-03-01", "--reason", "DGC order 42 live", "--as", "op1")
    ok(run, "aro", "nominate", "A1", "--party", "P1", "--name", "Ann", "--sro", "Sam", "--as", "op1")
    ok(run, "aro", "verify", "A1", "--check", "passport", "--date", "2019-01-02", "--as", "op1")
    ok(run, "aro", "screen", "A1", "--date", "2019-01-03", "--as", "op1")
    app = ok(run, "apply", "device", "--party", "P1", "--as", "op1").strip()
    ok(run, "ra", "evidence", app, "--kind", "installation-need", "--reference", "INST-1", "--as", "op1")
    ok(run, "ra", "propose", app, "--as", "op1")
    ok(run, "ra", "approve", app, "--as", "ap1")


def _dry_run(run: Run, tmp_path: Path, on: str) -> tuple[int, str]:
    csr = tmp_path / "d.csr"
    csr.write_bytes(x509.load_der_x509_csr(make_device_csr(bytes.fromhex("00DB000000000009"), Usage.DS))
                    .public_bytes(Encoding.PEM))
    result = run("request", "device", str(csr), "--out", str(tmp_path / "out"), *ROUTE, "--dry-run", "--on", on)
    return result.code, result.out


def test_a_what_if_reads_the_gateway_connections_in_force_on_its_date(run: Run, tmp_path: Path) -> None:
    _approved_subscriber(run)
    code, before = _dry_run(run, tmp_path, "2020-02-29")
    assert code == 1 and "FAIL    device.gateway-channel" in before
    assert "PASS    device.uept-completed" in before  # the Gateway rule alone refuses
    code, after = _dry_run(run, tmp_path, "2020-03-01")
    assert code == 0, after
    assert "PASS    device.gateway-channel" in after and "would be issued" in after

    # Removing the connection ends its period: the past still has it, the day it ended does not.
    ok(run, "party", "set-status", "P1", "--drop-gateway", "GW-1", "--effective", "2021-06-01",
       "--reason", "line ceased", "--as", "op1")
    assert _dry_run(run, tmp_path, "2020-03-01")[0] == 0
    code, ended = _dry_run(run, tmp_path, "2021-06-01")
    assert code == 1 and "FAIL    device.gateway-channel" in ended

    shown = ok(run, "party", "show", "P1")
    assert "Gateway Connections:   -" in shown
    assert ("GW-1 from 2020-03-01 until 2021-06-01 (added by op1: DGC order 42 live; removed by op1: "
            "line ceased)") in shown
    assert "import-supplier from 2020-03-01 in force (added by op1: DGC order 42 live)" in shown
    history = json.loads(ok(run, "party", "show", "P1", "--json"))["history"]
    assert {"kind": "gateway-connection", "value": "GW-1", "valid_from": "2020-03-01", "valid_until": "2021-06-01",
            "added_by": "op1", "added_reason": "DGC order 42 live", "removed_by": "op1",
            "removed_reason": "line ceased"} in history

    # A new period may not overlap the old one, nor may one end before it began.
    fails(run, "ra.bad-period", "party", "set-status", "P1", "--gateway", "GW-1", "--effective", "2021-05-31",
          "--as", "op1")
    ok(run, "party", "set-status", "P1", "--gateway", "GW-1", "--effective", "2021-06-01", "--as", "op1")
    fails(run, "ra.bad-period", "party", "set-status", "P1", "--drop-gateway", "GW-1", "--effective",
          "2021-05-31", "--as", "op1")
    fails(run, "input.bad-date", "party", "set-status", "P1", "--drop-gateway", "GW-1", "--effective", "soon",
          "--as", "op1")


def test_adding_a_held_connection_with_an_effective_date_restates_when_it_began(run: Run, tmp_path: Path) -> None:
    """E.g. one carried over by migration 0013 from the Party's registration date but live earlier."""
    _approved_subscriber(run)
    assert _dry_run(run, tmp_path, "2020-01-15")[0] == 1
    ok(run, "party", "set-status", "P1", "--gateway", "GW-1", "--effective", "2020-01-01", "--reason",
       "live since DGC order 41", "--as", "op1")
    code, restated = _dry_run(run, tmp_path, "2020-01-15")
    assert code == 0 and "PASS    device.gateway-channel" in restated
    assert "GW-1 from 2020-01-01 in force (added by op1: live since DGC order 41)" in ok(run, "party", "show", "P1")
    fails(run, "ra.no-change", "party", "set-status", "P1", "--gateway", "GW-1", "--effective", "2020-01-01",
          "--as", "op1")
    fails(run, "ra.no-change", "party", "set-status", "P1", "--gateway", "GW-1", "--as", "op1")
    audit = json.loads(ok(run, "audit", "tail", "--json"))
    restate = next(r for r in audit if r["action"] == "party.status-set" and "periods" in r["details"]
                   and "restated" in r["details"]["periods"][0])
    assert restate["details"]["periods"] == [{"kind": "gateway-connection", "value": "GW-1",
                                              "restated": "2020-01-01", "from": "2020-03-01"}]
    # Never back over an earlier period of the same connection.
    ok(run, "party", "set-status", "P1", "--drop-gateway", "GW-1", "--effective", "2021-01-01", "--as", "op1")
    ok(run, "party", "set-status", "P1", "--gateway", "GW-1", "--effective", "2021-02-01", "--as", "op1")
    fails(run, "ra.bad-period", "party", "set-status", "P1", "--gateway", "GW-1", "--effective", "2020-12-31",
          "--as", "op1")
