"""The Registration Authority end to end through the real ``smki`` command: the MP074 story.

A supplier is registered with SREPT, UEPT and a DCC Gateway Connection; an RA operator records its
evidence of need and proposes; a different RA approver approves; its ARO's Device batch over the
Gateway is issued and verifies with openssl, the same over SPOTI is refused by
``channel.device-via-gateway``; a suspension bites on the next request; and every decision and
refusal is in an audit log that still verifies. One process per command, as an operator runs it;
the rest of the RA console is tested in-process in ``test_ra_console.py``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.ca.devcsr import make_device_csr
from smki.domain import Usage
from smki.store import Store
from tests.cli.helpers import Result, openssl_verify, smki


class Console:
    """Runs ``smki`` against one home; ``ok`` insists on success, ``fails`` on a given error code."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return smki([*args, "--home", str(self.home)], env or self.env)

    def ok(self, *args: str, env: dict[str, str] | None = None) -> Result:
        result = self.run(*args, env=env)
        assert result.code == 0, f"smki {' '.join(args)}: {result.err}"
        return result

    def fails(self, code: str, *args: str) -> Result:
        result = self.run(*args)
        assert result.code == 1, f"smki {' '.join(args)} should fail: {result.out}"
        assert result.err.startswith(f"error: {code}: "), result.err
        assert "Traceback" not in result.err
        return result


def test_the_mp074_story(ca_home: Path, env: dict[str, str], tmp_path: Path) -> None:
    c = Console(ca_home, env)
    c.ok("staff", "add", "op1", "--name", "Olive Operator", "--role", "ra-operator")
    c.ok("staff", "add", "ap1", "--name", "April Approver", "--role", "ra-approver")
    c.ok("party", "add", "P1", "--name", "Acme Energy", "--category", "large-supplier", "--as", "op1")
    c.ok("party", "set-status", "P1", "--srept", "2019-06-01", "--uept", "2019-09-01", "--gateway", "GW-0001",
         "--registered-role", "import-supplier", "--as", "op1")
    shown = c.ok("party", "entity", "P1", "90B3D51F30010000", "--role", "2", "--role", "127", "--as", "op1").out
    assert "Entity 90-B3-D5-1F-30-01-00-00: 02 supplier, 7F other" in shown
    assert "Gateway Connections:   GW-0001" in shown
    c.ok("aro", "nominate", "A1", "--party", "P1", "--name", "Ann Officer", "--sro", "Sam SRO", "--as", "op1")
    c.ok("aro", "verify", "A1", "--check", "passport + utility bill", "--as", "op1")
    c.ok("aro", "screen", "A1", "--date", "2020-01-03", "--standard", "BS 7858:2019", "--as", "op1")

    # Device application: evidence of need, proposed by op1, approved by a different person.
    app = c.ok("apply", "device", "--party", "P1", "--as", "op1").out.strip()
    assert app.isdigit()
    c.ok("ra", "evidence", app, "--kind", "installation-need", "--reference", "RA-EV-0042 rollout plan",
         "--as", "op1")
    assert "the rules (MP127) approve" in c.ok("ra", "propose", app, "--as", "op1").out
    approved = c.ok("ra", "approve", app, env={**env, "SMKI_STAFF": "ap1"}).out  # --as from SMKI_STAFF
    assert "approved by ap1 under MP127" in approved
    explained = c.ok("ra", "explain", app).out
    assert "== Proposal by op1" in explained and "== Decision: approved by ap1" in explained
    for rule in ("any.srept-passed", "device.evidence-of-need", "device.uept-completed", "device.gateway-channel"):
        assert explained.count(f"PASS    {rule}") == 2

    # The ARO's Device batch over the Gateway is issued.
    batch = tmp_path / "batch"
    batch.mkdir()
    for i in range(3):
        der = make_device_csr(bytes.fromhex(f"00DB00000000000{i}"), Usage.DS)
        (batch / f"d{i}.csr").write_bytes(x509.load_der_x509_csr(der).public_bytes(Encoding.PEM))
    out = tmp_path / "gw"
    route = ["--party", "P1", "--aro", "A1"]
    issued = c.ok("request", "batch", str(batch), "--out", str(out), *route, "--route", "gateway", "--workers", "0")
    assert "3 issued, 0 rejected" in issued.out
    certs = sorted(out.glob("*.pem"))
    assert len(certs) == 3
    check = openssl_verify(ca_home / "root.pem", ca_home / "device-ca.pem", *certs)
    assert check.returncode == 0, check.stdout + check.stderr
    with (out / "results.csv").open() as handle:
        assert [row["status"] for row in csv.DictReader(handle)] == ["issued"] * 3

    # The same over SPOTI is refused, rule by rule with references, and nothing is written.
    spoti = c.fails("ra.refused", "request", "batch", str(batch), "--out", str(tmp_path / "spoti"), *route,
                    "--route", "spoti", "--workers", "0")
    assert "FAIL channel.device-via-gateway:" in spoti.err
    assert "ref: MP074 (SEC November 2019 Release)" in spoti.err
    assert not (tmp_path / "spoti").exists()

    # A suspended subscriber is refused on the very next request.
    c.ok("party", "subscriber", "P1", "--policy", "device", "--standing", "suspended", "--as", "op1")
    one = [str(batch / "d0.csr"), "--out", str(tmp_path / "one"), *route, "--route", "gateway"]
    assert "FAIL subscriber.authorised-for-policy:" in c.fails("ra.refused", "request", "device", *one).err

    assert "audit log OK" in c.ok("audit", "verify").out
    store = Store.open(env["SMKI_DATABASE_URL"])
    try:
        rows = list(store.audit_rows())
    finally:
        store.close()
    refusals = [r.details_dict["rules"] for r in rows if r.action == "request.refused"]
    assert refusals == [
        ["channel.device-via-gateway", "channel.spoti-organisation-only"],
        ["subscriber.authorised-for-policy"],
    ]
    actions = [r.action for r in rows]
    assert {"party.added", "party.status-set", "aro.verified", "aro.screened", "application.opened",
            "application.evidence-added", "application.proposed", "application.approved", "request.authorised",
            "subscriber.suspended"} <= set(actions)
