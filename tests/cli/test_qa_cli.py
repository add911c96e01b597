"""Exploratory QA of the CLI (branch qa-cli): bad input an operator really gives is one line on
stderr with a documented exit status — never an internal error — and a failed command leaves no
record behind. Run in-process through ``main.run`` (the ``run`` fixture)."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest

from tests.cli.conftest import Run
from tests.cli.helpers import Result, ctrl_c_on_chunk


def one_line(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    return lines[0]


def stopped_batch(result: Result, word: str = "interrupted") -> str:
    """The reference of the batch a stopped ``issue``/``request`` command names in its one line:
    its summary line, never printed when stopped, is where the reference ``--resume`` needs was."""
    matched = re.fullmatch(rf"{word}: batch (\S+) stopped; continue it with --resume (\S+)", one_line(result))
    assert matched is not None and matched[1] == matched[2], result.err
    return matched[1]


def refused_by_rule(result: Result, rule_id: str) -> str:
    """The error line of a refusal by one RA rule, after checking what follows it: the rule with its
    reason, then the reference it rests on (as ``ra propose`` lists a decision's failing rules)."""
    lines = result.err.strip().splitlines()
    assert len(lines) == 3 and "Traceback" not in result.err, result.err
    assert lines[1].startswith(f"  FAIL {rule_id}: ") and lines[2].lstrip().startswith("ref: "), result.err
    return lines[0]


def test_an_out_file_in_a_missing_directory_or_a_directory_is_an_io_error_not_internal(
        run: Run, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "x"
    root = json.loads(run("ca", "show", "--json").out)[0]["serial"]
    for args in (("cert", "export", root, "--format", "pem", "--out", str(missing)),
                 ("cert", "export", root, "--format", "der", "--out", str(tmp_path)),
                 ("repo", "extract", "--full", "--out", str(missing))):
        result = run(*args)
        assert result.code == 1, (args, result)
        assert one_line(result).startswith("error: io: "), result.err
        assert ".partial" not in result.err  # the file the operator named, not the one written beside it
    assert not list(tmp_path.glob("*.partial"))  # nothing left behind
    # Too long for a file name, and not a serial either: a serial's refusal, whatever its length
    for which in ("F" * 400, "F" * 5000):
        shown = run("cert", "show", which)
        assert shown.code == 1 and one_line(shown).startswith("error: store.bad-serial: "), shown.err


def test_ctrl_c_inside_a_command_says_interrupted_with_status_130(
        run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from smki.store import Store

    def interrupted(self: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "verify_audit", interrupted)
    result = run("audit", "verify")
    assert result.code == 130
    assert one_line(result) == "interrupted"


def _staff_and_aro(run: Run) -> None:
    for args in (("staff", "add", "op1", "--name", "Olive", "--role", "ra-operator"),
                 ("staff", "add", "ap1", "--name", "April", "--role", "ra-approver"),
                 ("staff", "add", "aud", "--name", "Audrey", "--role", "auditor"),
                 ("party", "add", "P1", "--name", "Acme", "--category", "large-supplier", "--as", "op1"),
                 ("aro", "nominate", "A1", "--party", "P1", "--name", "Ann", "--sro", "Sam", "--as", "op1")):
        result = run(*args)
        assert result.code == 0, result.err


def _credentials(run: Run) -> list[str]:
    return [row["serial"] for row in json.loads(run("credential", "list", "--json").out) if row["kind"] != "ca"]


def test_a_credential_file_that_cannot_be_written_leaves_no_credential_recorded(
        run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _staff_and_aro(run)
    monkeypatch.setenv("SMKI_P12_PASSWORD", "p12-password-1")
    existing = tmp_path / "taken.p12"
    existing.write_bytes(b"someone else's file")
    before = _credentials(run)
    exists = run("aro", "credential", "issue", "A1", "--out", str(existing))
    assert exists.code == 1 and one_line(exists).startswith("error: credential.exists: ")
    assert existing.read_bytes() == b"someone else's file"
    missing = run("credential", "staff", "op1", "--out", str(tmp_path / "no-such-dir" / "op1.p12"))
    assert missing.code == 1 and one_line(missing).startswith("error: io: ")
    refused = run("aro", "credential", "issue", "NOPE", "--out", str(tmp_path / "nope.p12"))
    assert refused.code == 1 and not (tmp_path / "nope.p12").exists()
    assert _credentials(run) == before
    good = run("aro", "credential", "issue", "A1", "--out", str(tmp_path / "a1.p12"))
    assert good.code == 0, good.err
    assert (tmp_path / "a1.p12").stat().st_size > 0 and len(_credentials(run)) == len(before) + 1


def test_no_credential_is_issued_for_a_revoked_aro_or_a_system_answerable_to_one(
        run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _staff_and_aro(run)
    monkeypatch.setenv("SMKI_P12_PASSWORD", "p12-password-1")
    assert run("aro", "revoke", "A1", "--as", "op1").code == 0
    before = _credentials(run)
    aro = run("aro", "credential", "issue", "A1", "--out", str(tmp_path / "a1.p12"))
    assert aro.code == 1 and one_line(aro).startswith("error: credential.aro-revoked: ")
    system = run("system", "credential", "issue", "sys1", "--party", "P1", "--aro", "A1",
                 "--out", str(tmp_path / "sys1.p12"))
    assert system.code == 1 and one_line(system).startswith("error: credential.aro-revoked: ")
    assert _credentials(run) == before
    assert not (tmp_path / "a1.p12").exists() and not (tmp_path / "sys1.p12").exists()


def test_a_revocation_beyond_the_staff_members_role_is_audited_like_every_other(run: Run) -> None:
    _staff_and_aro(run)
    cas = {row["ca"]: row["serial"] for row in json.loads(run("ca", "show", "--json").out)}
    device = run("dev", "make-csr", "device", "--device-id", "00DB000000000001", "--out", str(run.home / "d.csr"))
    assert device.code == 0, device.err
    assert run("issue", "device", str(run.home / "d.csr"), "--out", str(run.home / "certs")).code == 0
    serial = json.loads(run("cert", "search", "--kind", "device", "--json").out)["certificates"][0]["serial"]
    attempts = [("cert", "set-status", serial, "N", "--as", "aud"),
                ("cert", "revoke", serial, "--reason", "keyCompromise", "--as", "ap1"),
                ("ca", "revoke", "propose", cas["org-ca"], "--reason", "keyCompromise", "--as", "ap1")]
    for args in attempts:
        result = run(*args)
        assert result.code == 1, result.err
        assert refused_by_rule(result, "ra.staff-holds-role").startswith("error: staff.role-required: ")
    proposed = run("ca", "revoke", "propose", cas["org-ca"], "--reason", "keyCompromise", "--as", "op1")
    assert proposed.code == 0, proposed.err
    approve = run("ca", "revoke", "approve", "1", "--as", "op1")
    assert approve.code == 1
    assert refused_by_rule(approve, "ra.staff-holds-role").startswith("error: staff.role-required: ")
    tail = json.loads(run("audit", "tail", "-n", "10", "--json").out)
    refused = [(r["actor"], r["subject"]) for r in tail if r["action"] == "staff.refused"]
    assert refused == [("aud", serial), ("ap1", serial), ("ap1", cas["org-ca"]), ("op1", "ca-revocation:1")]
    # Each names the rule that decided it: these actions are reserved to one role (ra.staff-holds-role).
    assert all(r["details"]["rule"] == "ra.staff-holds-role" for r in tail if r["action"] == "staff.refused")
    assert run("audit", "verify").code == 0


def test_a_resumed_batch_writes_out_what_the_interrupted_run_committed_but_never_wrote(
        run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csrs, out = tmp_path / "csrs.pem", tmp_path / "out"
    assert run("dev", "make-csr", "batch", "--count", "10", "--out", str(csrs)).code == 0
    with ctrl_c_on_chunk(2):
        first = run("issue", "batch", str(csrs), "--out", str(out), "--workers", "0", "--chunk-size", "3")
    assert first.code == 130
    ref = stopped_batch(first)
    assert len(list(out.glob("*.pem"))) == 3
    assert ref == next(r["subject"] for r in json.loads(run("audit", "tail", "--json").out)
                       if r["action"] == "batch.started")
    resumed = run("issue", "batch", str(csrs), "--out", str(out), "--workers", "0", "--resume", ref)
    assert resumed.code == 0, resumed.err
    assert "4 issued" in resumed.out and "wrote 3 certificate(s)" in resumed.err
    issued = json.loads(run("cert", "search", "--kind", "device", "--json").out)["certificates"]
    assert len(issued) == 10
    with (out / "results.csv").open() as handle:
        lines = list(csv.DictReader(handle))
    assert sorted(line["serial"] for line in lines) == sorted(c["serial"] for c in issued)
    assert {line["item"] for line in lines} == {f"csrs.pem#{n}" for n in range(1, 11)}
    assert len(list(out.glob("*.pem"))) == 10
    again = run("issue", "batch", str(csrs), "--out", str(out), "--workers", "0", "--resume", ref)
    assert again.code == 0 and "0 issued" in again.out and "wrote" not in again.err



def test_a_batch_is_resumed_only_over_the_source_it_started_with(
        run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resumed batch skips its items by position: over another source it skipped CSRs that were
    never issued (exit 0) and filed the first run's certificates under the new source's names."""
    csrs, other, out = tmp_path / "csrs.pem", tmp_path / "other.pem", tmp_path / "out"
    assert run("dev", "make-csr", "batch", "--count", "10", "--out", str(csrs)).code == 0
    assert run("dev", "make-csr", "batch", "--count", "10", "--start", "00DB000000200000",
               "--out", str(other)).code == 0
    with ctrl_c_on_chunk(2):
        first = run("issue", "batch", str(csrs), "--out", str(out), "--workers", "0", "--chunk-size", "3")
    ref = stopped_batch(first)
    results = (out / "results.csv").read_bytes()
    trail = json.loads(run("audit", "tail", "-n", "1", "--json").out)
    reordered = tmp_path / "reordered.pem"  # the same CSRs, another order: their positions differ
    blocks = csrs.read_text().split("-----END CERTIFICATE REQUEST-----\n")[:-1]
    reordered.write_text("".join(f"{b}-----END CERTIFICATE REQUEST-----\n" for b in reversed(blocks)))
    for source in (other, reordered):
        refused = run("issue", "batch", str(source), "--out", str(out), "--workers", "0", "--resume", ref)
        assert refused.code == 1 and one_line(refused).startswith("error: batch.other-source: "), refused.err
        assert (out / "results.csv").read_bytes() == results and len(list(out.glob("*.pem"))) == 3
        assert json.loads(run("audit", "tail", "-n", "1", "--json").out) == trail  # nothing recorded, nothing issued
    resumed = run("issue", "batch", str(csrs), "--out", str(out), "--workers", "0", "--resume", ref)
    assert resumed.code == 0 and "4 issued" in resumed.out, resumed.err
    assert len(list(out.glob("*.pem"))) == 10


def test_signing_workers_leave_ctrl_c_to_the_process_that_owns_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C signals the terminal's whole process group: a pool worker waiting for work printed a
    KeyboardInterrupt traceback (``smki issue batch --workers N``, ``smki serve``), beside the one line."""
    import signal

    from smki.services import device_issuance, procguard

    monkeypatch.setattr(procguard, "die_with_parent", lambda *a, **k: True)
    monkeypatch.setattr(procguard, "exit_with", lambda *a, **k: None)
    monkeypatch.setattr(device_issuance, "_make_factory", lambda *a: None)
    previous = signal.getsignal(signal.SIGINT)
    try:
        device_issuance._init_worker(None, b"", b"", os.getpid())  # type: ignore[arg-type]
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("text", [
    b"\xb1\x00\xff garbage from a bad copy",
    b'device-policy-oid = "not.an.oid"\n',
    b'hw-type-oids = ["1.2.826.0.1.8641679.1.2.2.1", "hwtype"]\n',
    b"organisation-validity-years = 100000\n",
    b"crl-next-update-hours = 99999999999\n",  # passed, then failed every revocation's CRL (OverflowError)
    b"arl-next-update-days = 367\n",
    b"[api]\ncrl-check-seconds = nan\n",  # passed every range check: an idle server spun at 87% CPU
    b"[api]\nbatch-lease = inf\n",
    b"[api]\nhandshake-timeout = -nan\n",
    b'key-backend = "pkcs11"\npkcs11-module = ""\n',  # config check said OK; commands then key.not-configured
    b'root-name = "Root \xc3\xa9"\n',  # not PrintableString: ca init refused it (ca.bad-name), config check did not
    b'device-ca-name = "' + b"E" * 65 + b'"\n',
    b'[api]\nserver-names = ["localhost", "bad name!"]\n',  # went into the server certificate as given
    b'[api]\nserver-names = ["a..b"]\n',
    b'database-url = "mysql://smki@127.0.0.1/smki"\n',
    b'database-url = "postgresql+psycopg2://smki@127.0.0.1/smki"\n',
    b'database-url = "not a url"\n',
])
def test_a_bad_smki_toml_is_refused_by_config_check_and_every_command_in_one_line(run: Run, text: bytes) -> None:
    (run.home / "smki.toml").write_bytes(text)
    for args in (("config", "check"), ("ca", "show")):
        result = run(*args)
        assert result.code == 1, (args, result)
        assert one_line(result).startswith("error: config.invalid: "), result.err


def test_a_number_too_large_for_the_store_is_a_usage_error_not_internal(run: Run) -> None:
    huge = "99999999999999999999999"
    for args in (("cert", "search", "--role", huge), ("cert", "search", "--after", huge),
                 ("crl", "show", "--number", huge), ("crl", "export", "--number", huge, "--out", "x.crl"),
                 ("ca", "revoke", "approve", huge, "--as", "ap1"), ("ra", "batches", "approve", huge, "--as", "ap1")):
        result = run(*args)
        assert result.code == 2, (args, result)
        assert one_line(result).startswith("error: usage: "), result.err


def test_device_import_of_a_missing_file_a_directory_or_binary_is_one_line(run: Run, tmp_path: Path) -> None:
    _staff_and_aro(run)
    binary = tmp_path / "devices.csv"
    binary.write_bytes(b"\xbb\xff\x00" * 100)
    huge = tmp_path / "huge.csv"  # a field over the csv module's limit: was an internal csv.Error (exit 4)
    huge.write_text("device_id,device_type,smi_status\n0011223344556603,ESME," + "A" * 200_000 + "\n")
    for source in (tmp_path / "missing.csv", tmp_path, binary, huge):
        result = run("device", "import", str(source), "--as", "op1")
        assert result.code == 1, (source, result)
        assert one_line(result).startswith("error: device.bad-file: "), result.err


def test_a_batch_refused_before_any_csr_leaves_no_out_directory(
        run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csr, empty = tmp_path / "d.csr", tmp_path / "empty.pem"
    assert run("dev", "make-csr", "device", "--device-id", "00DB000000000001", "--out", str(csr)).code == 0
    empty.write_text("")
    refused = run("issue", "batch", str(empty), "--out", str(tmp_path / "out1"))
    assert refused.code == 1 and one_line(refused).startswith("error: batch.empty: ")
    monkeypatch.setenv("SMKI_KEY_PASSPHRASE", "not-the-passphrase")
    locked = run("issue", "device", str(csr), "--out", str(tmp_path / "out2"))
    assert locked.code == 1 and one_line(locked).startswith("error: key."), locked.err
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()


def test_repo_extract_into_a_directory_is_refused_and_leaves_no_partial_file(run: Run, tmp_path: Path) -> None:
    target = tmp_path / "extracts"
    target.mkdir()
    result = run("repo", "extract", "--full", "--out", str(target))
    assert result.code == 1 and one_line(result).startswith("error: extract.out-is-directory: ")
    assert not list(tmp_path.glob("*.partial"))


def test_a_corrupt_sqlite_database_is_one_line_naming_it_not_internal(
        run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    url = os.environ["SMKI_DATABASE_URL"]
    if not url.startswith("sqlite:///"):
        pytest.skip("corrupts the SQLite file under the home (the PostgreSQL lane has none)")
    path = Path(url.removeprefix("sqlite:///"))
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"\x8f\x01garbage" * 2000)
    for args in (("ca", "show"), ("audit", "verify"), ("db", "status")):
        result = run(*args)
        assert result.code == 1, (args, result)
        assert one_line(result).startswith("error: store.corrupt: "), result.err


def test_dev_make_csr_org_refuses_a_common_name_longer_than_x520_allows(run: Run, tmp_path: Path) -> None:
    result = run("dev", "make-csr", "org", "--entity-id", "90B3D51F30010000", "--cn", "x" * 65,
                 "--out", str(tmp_path / "o.csr"))
    assert result.code == 1 and one_line(result).startswith("error: csr.bad-common-name: ")
    assert not (tmp_path / "o.csr").exists()


def test_dev_make_csr_batch_refuses_device_ids_past_the_last_instead_of_wrapping(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "b.pem"
    result = run("dev", "make-csr", "batch", "--count", "3", "--start", "FFFFFFFFFFFFFFFF", "--out", str(out))
    assert result.code == 1 and one_line(result).startswith("error: dev.bad-start: "), result
    assert not out.exists()
    fits = run("dev", "make-csr", "batch", "--count", "2", "--start", "FFFFFFFFFFFFFFFF", "--out", str(out))
    assert fits.code == 0, fits
    assert out.read_bytes().count(b"-----BEGIN CERTIFICATE REQUEST-----") == 2


def test_an_interrupted_device_import_says_how_many_rows_are_in(run: Run, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM or Ctrl-C printed only ``terminated``/``interrupted``; a bad row's error said how many
    rows were already in the register (found by an exploratory run)."""
    from smki.services import device_register

    def two_chunks_then_ctrl_c(_home: object, _source: Path, *, staff_id: str | None,
                               on_chunk: object) -> None:
        for _ in range(2):
            on_chunk(10_000)  # type: ignore[operator]
        raise KeyboardInterrupt

    _staff_and_aro(run)
    source = tmp_path / "devices.csv"
    source.write_text("device_id,device_type,smi_status\n")
    monkeypatch.setattr(device_register, "import_file", two_chunks_then_ctrl_c)
    result = run("device", "import", str(source), "--as", "op1")
    assert result.code == 130
    assert one_line(result) == ("interrupted: 20,000 rows were imported before it (each chunk commits on its own; "
                                "importing the file again is harmless)")
