"""RA staff commands run in-process through ``smki``'s own entry point (``main.run``): the same
parsing, error boundary and output as the console, without a process per command (the subprocess
story is ``test_ra_story.py``)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.ca.devcsr import make_device_csr, make_organisation_csr
from smki.domain import RemotePartyRole, Usage
from smki.store import Store
from tests.cli.conftest import Run
from tests.cli.helpers import openssl_verify, smki


def ok(run: Run, *args: str) -> str:
    result = run(*args)
    assert result.code == 0, f"smki {' '.join(args)}: {result.err}"
    return result.out


def fails(run: Run, code: str, *args: str) -> str:
    result = run(*args)
    assert result.code == 1, f"smki {' '.join(args)} should fail: {result.out}"
    assert result.err.startswith(f"error: {code}: "), result.err
    return result.err


def _setup(run: Run) -> str:
    """op1, ap1, aud; P1 qualified with ARO A1; a device application proposed without evidence."""
    ok(run, "staff", "add", "op1", "--name", "Olive", "--role", "ra-operator")
    ok(run, "staff", "add", "ap1", "--name", "April", "--role", "ra-approver")
    ok(run, "staff", "add", "aud", "--name", "Audrey", "--role", "auditor")
    ok(run, "party", "add", "P1", "--name", "Acme", "--category", "large-supplier", "--as", "op1")
    ok(run, "party", "set-status", "P1", "--srept", "2019-06-01", "--uept", "2019-09-01", "--gateway", "GW-1",
       "--as", "op1")
    ok(run, "aro", "nominate", "A1", "--party", "P1", "--name", "Ann", "--sro", "Sam", "--as", "op1")
    app = ok(run, "apply", "device", "--party", "P1", "--as", "op1").strip()
    proposed = run("ra", "propose", app, "--as", "op1")
    assert proposed.code == 3 and "the rules (MP127) refuse" in proposed.out
    assert "FAIL device.evidence-of-need:" in proposed.err
    return app


def test_the_auditor_reads_but_changes_nothing(run: Run) -> None:
    app = _setup(run)
    attempts = [
        ("party", "add", "P9", "--name", "Nine", "--category", "dcc"),
        ("party", "set-status", "P1", "--no-srept"),
        ("party", "entity", "P1", "90B3D51F30010000", "--role", "2"),
        ("party", "subscriber", "P1", "--policy", "device", "--standing", "withdrawn"),
        ("aro", "nominate", "A9", "--party", "P1", "--name", "X", "--sro", "Y"),
        ("aro", "verify", "A1", "--check", "passport"),
        ("aro", "screen", "A1", "--date", "2020-01-01"),
        ("aro", "suspend", "A1"),
        ("aro", "revoke", "A1"),
        ("apply", "org", "--party", "P1"),
        ("ra", "evidence", app, "--kind", "installation-need", "--reference", "X"),
        ("ra", "propose", app),
        ("ra", "approve", app),
        ("ra", "refuse", app, "--reason", "no"),
    ]
    for attempt in attempts:
        assert "aud (auditor) may not" in fails(run, "ra.staff-role", *attempt, "--as", "aud")
    # Reading is open to the auditor (and to the console).
    assert "Party P1: Acme (large-supplier)" in ok(run, "party", "show", "P1")
    assert "P1" in ok(run, "party", "list")
    assert "A1" in ok(run, "aro", "list", "--party", "P1")
    assert "proposed" in ok(run, "ra", "queue")
    assert "auditor" in ok(run, "staff", "list")
    explained = ok(run, "ra", "explain", app)
    assert "== Proposal by op1" in explained and "FAIL    device.evidence-of-need" in explained
    assert "audit log OK" in ok(run, "audit", "verify")


def test_an_approver_cannot_approve_what_the_rules_refuse_but_can_refuse_it(run: Run) -> None:
    app = _setup(run)
    fails(run, "ra.staff-role", "ra", "approve", app, "--as", "op1")  # an operator never decides
    refused = fails(run, "ra.refused", "ra", "approve", app, "--as", "ap1")
    assert "FAIL device.evidence-of-need:" in refused
    assert "ref: SEC Appendix D (SMKI RAPP) §5.5" in refused
    fails(run, "ra.reason-required", "ra", "refuse", app, "--reason", " ", "--as", "ap1")
    ok(run, "ra", "refuse", app, "--reason", "no evidence of need", "--as", "ap1")
    assert "Reason given: no evidence of need" in ok(run, "ra", "explain", app)
    assert "device subscriber: refused" in ok(run, "party", "show", "P1")
    assert "no applications waiting" in run("ra", "queue").err
    app2 = ok(run, "apply", "device", "--party", "P1", "--as", "op1").strip()
    assert app2 != app
    assert "Not yet proposed." in ok(run, "ra", "explain", app2)


def test_an_approvers_refusal_of_what_the_rules_approve_names_the_rule_it_rests_on(
        run: Run, database_url: str) -> None:
    """The RA determines whether the evidence is reasonable (RAPP §5.5): an approver may refuse an
    application every rule passes, and the stored decision (and its audit) is then a refusal naming
    ``ra.approver-judgement`` with the reason, never an "APPROVE" beside a refused status."""
    app = _setup(run)
    ok(run, "ra", "evidence", app, "--kind", "installation-need", "--reference", "EV-1 plan", "--as", "op1")
    assert "the rules (MP127) approve" in ok(run, "ra", "propose", app, "--as", "op1")
    ok(run, "ra", "refuse", app, "--reason", "the rollout plan is not credible", "--as", "ap1")
    explained = ok(run, "ra", "explain", app)
    final = explained.split("== Decision: refused by ap1")[1]
    assert "Decision        REFUSE" in final and "Approved:" not in final
    assert "FAIL    ra.approver-judgement" in final and "the rollout plan is not credible" in final
    assert "ref: SEC Appendix D (SMKI RAPP) §5.5" in final
    assert "Refused by 1 of 5 rules: ra.approver-judgement" in final
    store = Store.open(database_url)
    try:
        rows = [r for r in store.audit_rows() if r.action == "application.refused"]
    finally:
        store.close()
    decision = rows[-1].details_dict["decision"]
    assert decision["outcome"] == "refuse"
    assert [r["rule_id"] for r in decision["results"] if not r["passed"]] == ["ra.approver-judgement"]
    # Refusing what the rules refuse anyway names those rules and the approver's judgement too.
    app2 = ok(run, "apply", "device", "--party", "P1", "--as", "op1").strip()
    run("ra", "propose", app2, "--as", "op1")
    ok(run, "ra", "refuse", app2, "--reason", "no evidence", "--as", "ap1")
    final2 = ok(run, "ra", "explain", app2).split("== Decision: refused by ap1")[1]
    assert "Refused by 2 of 5 rules: device.evidence-of-need, ra.approver-judgement" in final2


def test_bad_input_is_one_coded_line(run: Run) -> None:
    _setup(run)
    cases = [
        ("input.bad-date", ("party", "set-status", "P1", "--srept", "1st June", "--as", "op1")),
        ("ra.party-exists", ("party", "add", "P1", "--name", "X", "--category", "dcc", "--as", "op1")),
        ("ra.party-not-found", ("party", "show", "NOPE")),
        ("eui64.invalid", ("party", "entity", "P1", "90B3", "--role", "2", "--as", "op1")),
        ("ra.role-not-assignable", ("party", "entity", "P1", "90B3D51F30010000", "--role", "7", "--as", "op1")),
        ("ra.application-not-found", ("ra", "explain", "42")),
        ("ra.aro-not-found", ("aro", "suspend", "NOPE", "--as", "op1")),
        ("staff.unknown", ("aro", "suspend", "A1", "--as", "ghost")),
    ]
    for code, args in cases:
        err = fails(run, code, *args)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(("option", "args"), [
    ("--category", ("party", "add", "P2", "--name", "X", "--category", "utility", "--as", "op1")),
    ("--standing", ("party", "subscriber", "P1", "--policy", "device", "--standing", "gone", "--as", "ap1")),
    ("--policy", ("party", "subscriber", "P1", "--policy", "orgs", "--standing", "suspended", "--as", "ap1")),
    ("--role", ("staff", "add", "x1", "--name", "X", "--role", "root")),
    ("--reason", ("cert", "revoke", "01", "--reason", "onHold", "--as", "op1")),
    ("--reason", ("ca", "revoke", "propose", "01", "--reason", "removeFromCRL", "--as", "op1")),
    ("--log-level", ("serve", "--log-level", "loud")),
    ("--log-format", ("serve", "--log-format", "xml")),
])
def test_a_value_outside_an_options_fixed_choices_is_a_usage_error_listing_them(
        run: Run, option: str, args: tuple[str, ...]) -> None:
    """Exit 2 with Click's own message, before the command runs (nothing is recorded), rather than
    exit 1 from the service's refusal (which stays, for the JSON API and the Portal)."""
    _setup(run)
    before = run("audit", "tail", "-n", "1", "--json").out
    result = run(*args)
    assert result.code == 2, result
    line = result.err.strip()
    assert len(line.splitlines()) == 1 and line.startswith(f"error: usage: Invalid value for '{option}': "), line
    assert " is not one of " in line
    assert run("audit", "tail", "-n", "1", "--json").out == before


def test_bench_issue_takes_file_or_pkcs11_as_a_choice(env: dict[str, str]) -> None:
    result = smki(["bench", "issue", "--backend", "hsm"], env)
    assert result.code == 2 and result.err.startswith("error: usage: Invalid value for '--backend': 'hsm'")


def test_fixed_choices_take_any_case_and_aliases_as_before(run: Run) -> None:
    _setup(run)
    ok(run, "party", "add", "P2", "--name", "X", "--category", "Large-Supplier", "--as", "op1")
    ok(run, "staff", "add", "x1", "--name", "X", "--role", "RA-Operator")
    past_the_choices = run("party", "subscriber", "P1", "--policy", "ORG", "--standing", "Withdrawn", "--as", "op1")
    assert past_the_choices.code == 1 and "organisation subscriber" in past_the_choices.err  # the service's answer


def test_request_route_is_gateway_or_spoti_only(run: Run, tmp_path: Path) -> None:
    result = run("request", "org", str(tmp_path / "x.csr"), "--out", str(tmp_path / "x.pem"), "--party", "P1",
                 "--aro", "A1", "--route", "operator")
    assert result.code == 2 and "operator" in result.err


def test_register_text_is_shown_as_given_never_as_markup(run: Run) -> None:
    ok(run, "staff", "add", "op1", "--name", "Olive [bold]", "--role", "ra-operator")
    ok(run, "party", "add", "P1", "--name", "Acme [red]Energy[/red]", "--category", "dcc", "--as", "op1")
    assert "Acme [red]Energy[/red]" in ok(run, "party", "show", "P1")
    assert "[bold]" in ok(run, "staff", "list")


def _pem_csr(path: Path, der: bytes) -> str:
    path.write_bytes(x509.load_der_x509_csr(der).public_bytes(Encoding.PEM))
    return str(path)


def test_organisation_requests_dual_control_and_aro_suspension(run: Run, tmp_path: Path,
                                                              database_url: str) -> None:
    ok(run, "staff", "add", "op1", "--name", "Olive", "--role", "ra-operator")
    ok(run, "staff", "add", "ap1", "--name", "April", "--role", "ra-approver")
    ok(run, "staff", "add", "boss", "--name", "Bo", "--role", "ra-operator", "--role", "ra-approver")
    for party, entity in (("P1", "90B3D51F30010000"), ("P2", "90B3D51F30020000")):
        ok(run, "party", "add", party, "--name", party, "--category", "large-supplier", "--as", "op1")
        ok(run, "party", "set-status", party, "--srept", "2019-06-01", "--uept", "2019-09-01", "--gateway",
           f"GW-{party}", "--as", "op1")
        ok(run, "party", "entity", party, entity, "--role", "2", "--as", "op1")
    ok(run, "aro", "nominate", "A1", "--party", "P1", "--name", "Ann", "--sro", "Sam", "--as", "op1")
    ok(run, "aro", "verify", "A1", "--check", "passport + utility bill", "--as", "op1")
    ok(run, "aro", "screen", "A1", "--date", "2020-01-03", "--as", "op1")

    # The same person may not propose and approve, whatever roles they hold.
    app = ok(run, "apply", "org", "--party", "P1", "--as", "boss").strip()
    ok(run, "ra", "propose", app, "--as", "boss")
    assert "boss proposed this" in fails(run, "ra.dual-control", "ra", "approve", app, "--as", "boss")
    ok(run, "ra", "approve", app, "--as", "ap1")

    # Organisation CSRs: another Party's Entity Identifier, or a role not recorded, is refused.
    route = ["--party", "P1", "--aro", "A1", "--route", "spoti"]
    theirs = _pem_csr(tmp_path / "p2.csr", make_organisation_csr(
        bytes.fromhex("90B3D51F30020000"), RemotePartyRole.SUPPLIER, Usage.DS, "P2"))
    err = fails(run, "ra.refused", "request", "org", theirs, "--out", str(tmp_path / "p2.pem"), *route)
    assert "FAIL org.entity-belongs-to-party:" in err and "FAIL org.role-permitted:" in err
    wrong_role = _pem_csr(tmp_path / "r3.csr", make_organisation_csr(
        bytes.fromhex("90B3D51F30010000"), RemotePartyRole.NETWORK_OPERATOR, Usage.DS, "P1"))
    err = fails(run, "ra.refused", "request", "org", wrong_role, "--out", str(tmp_path / "r3.pem"), *route)
    assert "FAIL org.role-permitted: role 03 (network operator) is not recorded" in err
    ours = _pem_csr(tmp_path / "p1.csr", make_organisation_csr(
        bytes.fromhex("90B3D51F30010000"), RemotePartyRole.SUPPLIER, Usage.KA, "ACME"))
    ok(run, "request", "org", ours, "--out", str(tmp_path / "p1.pem"), *route)
    home = run.home
    check = openssl_verify(home / "root.pem", home / "organisation-ca.pem", tmp_path / "p1.pem")
    assert check.returncode == 0, check.stdout + check.stderr

    # A suspended ARO is refused on its very next request; reinstated, it is served again.
    ok(run, "aro", "suspend", "A1", "--reason", "left the company", "--as", "op1")
    assert "FAIL aro.active: ARO A1 is suspended" in fails(
        run, "ra.refused", "request", "org", ours, "--out", str(tmp_path / "again.pem"), *route)
    # Reinstating is under dual control: op1 proposes (an approver may not), a different person approves.
    fails(run, "ra.staff-role", "aro", "reinstate", "A1", "--as", "ap1")
    proposed = ok(run, "aro", "reinstate", "A1", "--reason", "came back", "--as", "op1")
    item = re.search(r"reinstatement (\d+) of ARO A1: pending \(proposed by op1\)", proposed)
    assert item is not None, proposed
    assert "FAIL aro.active: ARO A1 is suspended" in fails(  # a proposal alone changes nothing
        run, "ra.refused", "request", "org", ours, "--out", str(tmp_path / "again.pem"), *route)
    assert f"{item.group(1)},aro,A1,-,came back,pending,op1,-" in ok(run, "ra", "reinstatements", "list", "--csv")
    fails(run, "ra.staff-role", "ra", "reinstatements", "approve", item.group(1), "--as", "op1")
    assert "approved (proposed by op1, decided by ap1)" in ok(
        run, "ra", "reinstatements", "approve", item.group(1), "--as", "ap1")
    fails(run, "ra.already-decided", "ra", "reinstatements", "refuse", item.group(1), "--as", "ap1")
    # So is reinstating a suspended subscriber: boss proposes, and so may not approve as well.
    ok(run, "party", "subscriber", "P1", "--policy", "org", "--standing", "suspended", "--as", "op1")
    proposed = ok(run, "party", "subscriber", "P1", "--policy", "org", "--standing", "approved", "--as", "boss")
    item = re.search(r"reinstatement (\d+) of organisation subscriber P1: pending", proposed)
    assert item is not None, proposed
    assert "boss proposed this" in fails(run, "ra.dual-control", "ra", "reinstatements", "approve", item.group(1),
                                         "--as", "boss")
    ok(run, "ra", "reinstatements", "approve", item.group(1), "--as", "ap1")
    # The same CSR again is a duplicate key (issue 13, CR:9999); a new key is served.
    fails(run, "csr.duplicate", "request", "org", ours, "--out", str(tmp_path / "again.pem"), *route)
    ours = _pem_csr(tmp_path / "p1b.csr", make_organisation_csr(
        bytes.fromhex("90B3D51F30010000"), RemotePartyRole.SUPPLIER, Usage.KA, "ACME"))
    ok(run, "request", "org", ours, "--out", str(tmp_path / "again.pem"), *route)
    # Device Certificates need an approved Device subscriber as well as the Gateway.
    device = _pem_csr(tmp_path / "d.csr", make_device_csr(bytes.fromhex("00DB000000000001"), Usage.DS))
    err = fails(run, "ra.refused", "request", "device", device, "--out", str(tmp_path / "dev"), "--party", "P1",
                "--aro", "A1", "--route", "gateway")
    assert "FAIL subscriber.authorised-for-policy: P1 is none, not approved, as a device subscriber" in err
    # No approved Device application, so no evidence of need was ever judged (no misleading pass).
    assert "FAIL device.evidence-of-need: installation-need basis: P1 has no approved Device" in err

    assert "audit log OK" in ok(run, "audit", "verify")
    store = Store.open(database_url)
    try:
        rows = list(store.audit_rows())
    finally:
        store.close()
    assert [r.details_dict["rules"] for r in rows if r.action == "request.refused"] == [
        ["org.entity-belongs-to-party", "org.role-permitted"],
        ["org.role-permitted"],
        ["aro.active"],
        ["aro.active"],
        ["subscriber.authorised-for-policy", "device.evidence-of-need"],
    ]
    issued = [r.details_dict for r in rows if r.action == "certificate.issued" and r.actor == "aro:A1@P1"]
    assert [(d["party"], d["aro"], d["route"]) for d in issued] == [("P1", "A1", "spoti")] * 2
    assert {"application.dual-control-refused", "aro.suspended", "aro.reinstatement-proposed", "aro.reinstated",
            "subscriber.dual-control-refused", "subscriber.reinstated", "staff.refused"} <= {
        r.action for r in rows}


def test_what_if_decisions_name_their_date_and_rule_set_and_record_nothing(run: Run, tmp_path: Path,
                                                                            database_url: str) -> None:
    """Issue 13 point 7: ``ra explain --on`` and ``request --dry-run --on``, without libfaketime."""
    app = _setup(run)
    ok(run, "ra", "evidence", app, "--kind", "installation-need", "--reference", "INST-1", "--as", "op1")
    store = Store.open(database_url)
    try:
        before = store.audit_head()
        stored = ok(run, "ra", "explain", app)
        early = ok(run, "ra", "explain", app, "--on", "2019-06-15")
        assert "What-if: the rule set in force on 2019-06-15 (baseline); nothing was recorded" in early
        assert "Decided on      2019-06-15" in early and "device.uept-completed" not in early
        future = (date.today() + timedelta(days=400)).isoformat()
        later = ok(run, "ra", "explain", app, "--on", future)
        assert "(MP127)" in later and "PASS    device.evidence-of-need" in later
        # Before the evidence was recorded (today), it does not count.
        assert "FAIL    device.evidence-of-need" in ok(run, "ra", "explain", app, "--on", "2020-01-01")
        fails(run, "input.bad-date", "ra", "explain", app, "--on", "next week")

        route = ["--party", "P1", "--aro", "A1", "--route", "gateway"]
        csr = _pem_csr(tmp_path / "d.csr", make_device_csr(bytes.fromhex("00DB000000000009"), Usage.DS))
        dry = run("request", "device", csr, "--out", str(tmp_path / "out"), *route, "--dry-run", "--on",
                  "2019-06-15")
        assert dry.code == 1 and "(baseline)" in dry.out and "FAIL    subscriber.authorised-for-policy" in dry.out
        assert f"{csr}: would be issued" in dry.out
        fails(run, "request.on-needs-dry-run", "request", "device", csr, "--out", str(tmp_path / "o"), *route,
              "--on", "2019-06-15")
        assert not (tmp_path / "out").exists()
        assert store.audit_head() == before  # nothing audited, proposed or issued
        assert ok(run, "ra", "explain", app) == stored
    finally:
        store.close()


def test_every_console_route_refuses_the_101st_certificate_for_one_device(run: Run, tmp_path: Path,
                                                                          database_url: str) -> None:
    """Spec §3.2: a CSR is rejected once 100 Device Certificates have been issued for its Device ID —
    on the console's subscriber path too (``smki request device|batch``), not only the web services,
    and on the CA operator's own ``smki issue device|batch``: the spec makes no exception for it."""
    app = _setup(run)
    ok(run, "ra", "evidence", app, "--kind", "installation-need", "--reference", "INST-1", "--as", "op1")
    ok(run, "aro", "verify", "A1", "--check", "passport", "--as", "op1")
    ok(run, "aro", "screen", "A1", "--date", "2020-01-03", "--as", "op1")
    ok(run, "ra", "propose", app, "--as", "op1")
    ok(run, "ra", "approve", app, "--as", "ap1")
    full = bytes.fromhex("00DB00000000F001")
    # 99 certificates by the CA operator's own path (no RA), then a batch of two: the 100th is
    # issued, the 101st refused within the same batch; then a single CSR, the 101st again
    csrs = [_pem_csr(tmp_path / f"f{i}.csr", make_device_csr(full, Usage.DS)) for i in range(99)]
    assert "99 issued" in ok(run, "issue", "device", *csrs, "--out", str(tmp_path / "filled"))
    two = tmp_path / "two.pem"
    two.write_text("".join(Path(_pem_csr(tmp_path / f"t{i}.csr", make_device_csr(full, Usage.DS))).read_text()
                           for i in range(2)))
    batch = run("issue", "batch", str(two), "--out", str(tmp_path / "op-batch"), "--workers", "0")
    assert batch.code == 0 and "1 issued, 1 rejected" in batch.out, batch.out + batch.err
    rows = (tmp_path / "op-batch" / "results.csv").read_text().splitlines()
    assert [row.split(",")[1] for row in rows[1:]] == ["issued", "rejected"] and ",csr.device-limit," in rows[2]
    single = run("issue", "device", _pem_csr(tmp_path / "op.csr", make_device_csr(full, Usage.KA)),
                 "--out", str(tmp_path / "op-single"))
    assert single.code == 1 and "0 issued, 1 rejected" in single.out, single.out + single.err
    assert "csr.device-limit: 100 Device Certificates have already been issued for Device ID 00DB00000000F001" \
        in single.err
    route = ["--party", "P1", "--aro", "A1", "--route", "gateway"]
    for command in ("device", "batch"):
        csr = _pem_csr(tmp_path / f"{command}.csr", make_device_csr(full, Usage.KA))
        result = run("request", command, csr, "--out", str(tmp_path / command), *route)
        assert "0 issued, 1 rejected" in result.out, result.out + result.err
        rows = (tmp_path / command / "results.csv").read_text().splitlines()
        assert rows[1].split(",")[1:2] == ["rejected"] and ",csr.device-limit," in rows[1], rows
    store = Store.open(database_url)
    try:
        assert store.count_device_certificates(full) == 100  # the refused CSRs were never signed
    finally:
        store.close()
