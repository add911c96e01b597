"""What an interrupted CLI command leaves behind: Ctrl-C (SIGINT to the terminal's process group) or
SIGTERM in the middle of a batch closes the batch in the audit log, with exactly the certificates
it committed, and the log still verifies; a resumed batch finishes the job. One real ``smki``
process per interrupted command, signalled as an operator's terminal or a service manager would."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smki.ca.devcsr import write_device_csrs
from smki.domain import CertKind
from smki.services.context import open_home
from smki.store import CertificateQuery, Store
from tests.cli.conftest import Run
from tests.cli.helpers import Result, ctrl_c_answered, ctrl_c_on_chunk, smki_env
from tests.cli.test_qa_cli import one_line, stopped_batch

ARO = ("--party", "P1", "--aro", "A1", "--route", "gateway")


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def interrupted(args: list[str], home: Path, database_url: str, results: Path, sig: signal.Signals,
                after: int = 600) -> Result:
    """``smki ARGS`` in its own process group, sent ``sig`` once ``results`` has ``after`` lines:
    SIGINT to the whole group (as a terminal's Ctrl-C), SIGTERM to the process alone (as ``kill``)."""
    proc = subprocess.Popen([sys.executable, "-m", "smki.interfaces.cli.main", *args, "--home", str(home)],
                            env={**smki_env(database_url), "SMKI_ACTOR": "admin:test"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True,
                            preexec_fn=ctrl_c_answered)
    deadline = time.monotonic() + 120
    while _lines(results) < after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the batch finished before it could be interrupted: make it larger"
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    return Result(proc.returncode, out, err)


def _batch_records(database_url: str, ref: str) -> list[tuple[str, dict[str, object]]]:
    store = Store.open(database_url)
    try:
        assert store.verify_audit().ok
        return [(row.action, row.details_dict) for row in store.audit_rows_for(ref)]
    finally:
        store.close()


def _device_serials(run: Run) -> set[str]:
    store = open_home(run.home).store
    try:
        return {record.serial for record in store.iter_certificates(CertificateQuery(kind=CertKind.DEVICE))}
    finally:
        store.close()


def _issued_in(records: list[tuple[str, dict[str, object]]]) -> set[str]:
    return {str(entry[0]) for action, details in records if action == "device-certificates.issued"
            for entry in details["issued"]}  # type: ignore[attr-defined]


def _check_closed(run: Run, database_url: str, ref: str, signal_name: str, out: Path) -> int:
    """The batch's last record says it was interrupted, with as many issued as the store holds and
    its audit records list; results.csv reports no certificate that was not committed."""
    records = _batch_records(database_url, ref)
    action, details = records[-1]
    assert action == "batch.interrupted" and details["signal"] == signal_name, records[-1]
    serials = _device_serials(run)
    assert details["issued"] == len(serials) > 0
    assert _issued_in(records) == serials
    with (out / "results.csv").open(newline="") as handle:
        assert {line["serial"] for line in csv.DictReader(handle)} <= serials
    assert run("audit", "verify").code == 0
    return len(serials)


def _subscriber(run: Run) -> None:
    """P1 and P2 approved for Device certificates, their AROs A1 and A2 verified and screened (the
    helpers of tests.ra_services)."""
    from smki.services import applications as apps
    from smki.services.staff import add_staff
    from tests.ra_services.conftest import qualified_party, verified_aro

    home = open_home(run.home)
    try:
        add_staff(home, "op1", "Olive Operator", ["ra-operator"], actor="admin")
        add_staff(home, "ap1", "April Approver", ["ra-approver"], actor="admin")
        for party, aro, entity in (("P1", "A1", "90B3D51F30010000"), ("P2", "A2", "90B3D51F30020000")):
            qualified_party(home, party, entity)
            verified_aro(home, aro, party)
            app = apps.apply(home, party, "device", staff_id="op1")
            apps.add_evidence(home, app.application_id, "installation-need", "RA-EV-1", staff_id="op1")
            apps.propose(home, app.application_id, staff_id="op1")
            apps.approve(home, app.application_id, staff_id="ap1")
    finally:
        home.close()


def test_ctrl_c_in_an_issue_batch_closes_it_in_the_audit_log_and_resume_finishes_it(
        run: Run, tmp_path: Path, database_url: str) -> None:
    csrs, out = tmp_path / "csrs.pem", tmp_path / "out"
    write_device_csrs(csrs, 20_000)
    stopped = interrupted(["issue", "batch", str(csrs), "--out", str(out), "--workers", "2", "--chunk-size", "250"],
                          run.home, database_url, out / "results.csv", signal.SIGINT)
    assert stopped.code == 130
    ref = stopped_batch(stopped)
    assert ref == next(r["subject"] for r in json.loads(run("audit", "tail", "-n", "50", "--json").out)
                       if r["action"] == "batch.started")
    issued = _check_closed(run, database_url, ref, "SIGINT", out)
    resumed = run("issue", "batch", str(csrs), "--out", str(out), "--workers", "0", "--resume", ref)
    assert resumed.code == 0, resumed.err
    assert f"{20_000 - issued} issued" in resumed.out
    assert len(_device_serials(run)) == 20_000 == len(list(out.glob("*.pem")))
    assert _batch_records(database_url, ref)[-1][0] == "batch.completed"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_request_batch_is_closed_in_the_audit_log(
        run: Run, tmp_path: Path, database_url: str, sig: signal.Signals) -> None:
    _subscriber(run)
    csrs, out = tmp_path / "csrs.pem", tmp_path / "out"
    write_device_csrs(csrs, 20_000)
    stopped = interrupted(["request", "batch", str(csrs), "--out", str(out), *ARO, "--workers", "0"],
                          run.home, database_url, out / "results.csv", sig)
    code, word = (143, "terminated") if sig == signal.SIGTERM else (130, "interrupted")
    assert stopped.code == code, stopped.err
    ref = stopped_batch(stopped, word)
    assert ref == next(r["subject"] for r in json.loads(run("audit", "tail", "-n", "50", "--json").out)
                       if r["action"] == "batch.started")
    _check_closed(run, database_url, ref, sig.name, out)


def test_ctrl_c_before_the_first_chunk_commits_still_records_the_opening_and_the_end(
        run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process (``issue device``) the opening records go with the first chunk's commit:
    interrupted before it, they are written with ``batch.interrupted`` (nothing issued)."""
    from smki.services import device_issuance

    csr = tmp_path / "d.csr"
    assert run("dev", "make-csr", "device", "--device-id", "00DB000000000001", "--out", str(csr)).code == 0

    def ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(device_issuance, "_record_chunks", ctrl_c)
    result = run("issue", "device", str(csr), "--out", str(tmp_path / "out"))
    assert result.code == 130 and stopped_batch(result)
    tail = json.loads(run("audit", "tail", "-n", "2", "--json").out)
    assert [r["action"] for r in tail] == ["batch.started", "batch.interrupted"]
    assert tail[1]["details"] == {"kind": "device", "signal": "SIGINT", "issued": 0, "rejected": 0}
    assert run("audit", "verify").code == 0 and not _device_serials(run)


def test_request_batch_resume_redelivers_and_finishes_under_the_ra_rules_checked_again(
        run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _subscriber(run)
    csrs, out = tmp_path / "csrs.pem", tmp_path / "out"
    write_device_csrs(csrs, 10)
    monkeypatch.setattr("smki.services.requests.DEFAULT_CHUNK", 3)  # request batch has no --chunk-size
    with ctrl_c_on_chunk(2):
        first = run("request", "batch", str(csrs), "--out", str(out), *ARO, "--workers", "0")
    assert first.code == 130
    ref = stopped_batch(first)
    assert len(list(out.glob("*.pem"))) == 3
    assert ref == next(r["subject"] for r in json.loads(run("audit", "tail", "--json").out)
                       if r["action"] == "batch.started")

    # Another Party's ARO, or the batch of nobody: refused and audited, nothing written.
    other = ("--party", "P2", "--aro", "A2", "--route", "gateway")
    for args, code in (((*other, "--resume", ref), "request.batch-not-found"),
                       ((*ARO, "--resume", "cli-20260101T000000Z-00000000"), "request.batch-not-found")):
        refused = run("request", "batch", str(csrs), "--out", str(out), *args, "--workers", "0")
        assert refused.code == 1 and refused.err.startswith(f"error: {code}: "), refused.err
        assert json.loads(run("audit", "tail", "-n", "1", "--json").out)[0]["action"] == "request.refused"
    # A suspended Party: the RA rules refuse the resumption before anything is written out.
    assert run("party", "subscriber", "P1", "--policy", "device", "--standing", "suspended", "--as", "op1").code == 0
    suspended = run("request", "batch", str(csrs), "--out", str(out), *ARO, "--workers", "0", "--resume", ref)
    assert suspended.code == 1 and "FAIL subscriber.authorised-for-policy:" in suspended.err
    assert len(list(out.glob("*.pem"))) == 3 and len(_device_serials(run)) == 6
    assert run("party", "subscriber", "P1", "--policy", "device", "--standing", "approved", "--as", "op1").code == 0
    item = json.loads(run("ra", "reinstatements", "list", "--json").out)[0]["item"]
    assert run("ra", "reinstatements", "approve", str(item), "--as", "ap1").code == 0

    what_if = run("request", "batch", str(csrs), "--out", str(out), *ARO, "--resume", ref, "--dry-run")
    assert what_if.code == 1 and one_line(what_if).startswith("error: request.resume-with-dry-run: ")
    resumed = run("request", "batch", str(csrs), "--out", str(out), *ARO, "--workers", "0", "--resume", ref)
    assert resumed.code == 0, resumed.err
    assert "4 issued" in resumed.out and "wrote 3 certificate(s)" in resumed.err
    serials = _device_serials(run)
    assert len(serials) == 10 == len(list(out.glob("*.pem")))
    with (out / "results.csv").open() as handle:
        assert sorted(line["serial"] for line in csv.DictReader(handle)) == sorted(serials)
    tail = [r["action"] for r in json.loads(run("audit", "tail", "-n", "4", "--json").out)]
    assert tail[-1] == "batch.completed" and "batch.resumed" in tail and run("audit", "verify").code == 0


def test_an_interrupted_make_csr_batch_leaves_no_file(tmp_path: Path, database_url: str) -> None:
    out = tmp_path / "csrs" / "batch.pem"
    proc = subprocess.Popen([sys.executable, "-m", "smki.interfaces.cli.main", "dev", "make-csr", "batch",
                             "--count", "1000000", "--out", str(out)], env=smki_env(database_url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=ctrl_c_answered)
    partial = out.with_name(out.name + ".partial")
    deadline = time.monotonic() + 60
    while _lines(partial) < 1000 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "make-csr finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and one_line(Result(proc.returncode, "", err)) == "interrupted"
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("format", ["pem", "json"])
def test_a_make_csr_batch_that_fails_part_way_keeps_the_file_that_was_there(
        run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, format: str) -> None:
    from smki.ca import devcsr

    out = tmp_path / "csrs" / "batch.pem"
    out.parent.mkdir()
    out.write_bytes(b"the previous batch")
    real_stream = devcsr.device_csr_stream

    def stream_then_ctrl_c(*args: object, **kwargs: object) -> Iterator[tuple[bytes, object, bytes]]:
        for n, item in enumerate(real_stream(*args, **kwargs)):  # type: ignore[arg-type]
            if n == 5:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(devcsr, "device_csr_stream", stream_then_ctrl_c)
    result = run("dev", "make-csr", "batch", "--count", "10", "--format", format, "--out", str(out))
    assert result.code == 130 and one_line(result) == "interrupted"
    assert out.read_bytes() == b"the previous batch" and list(out.parent.iterdir()) == [out]


def test_an_interrupted_backup_leaves_no_archive_and_is_never_readable_by_others(
        run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from smki.services import backup

    out = tmp_path / "backups" / "b.tar.gz"
    real_add = backup._add
    modes: list[int] = []

    def add_then_ctrl_c(archive: object, name: str, data: bytes) -> None:
        modes.append(out.with_name(f"{out.name}.{os.getpid()}.partial").stat().st_mode & 0o777)
        real_add(archive, name, data)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(backup, "_add", add_then_ctrl_c)
    result = run("backup", "create", "--out", str(out))
    assert result.code == 130 and one_line(result) == "interrupted"
    assert modes == [0o600] and list(out.parent.iterdir()) == []


def test_an_out_that_cannot_take_the_certificates_is_refused_before_any_is_issued(
        run: Run, tmp_path: Path) -> None:
    csr, org = tmp_path / "d.csr", tmp_path / "o.csr"
    assert run("dev", "make-csr", "device", "--device-id", "00DB000000000001", "--out", str(csr)).code == 0
    assert run("dev", "make-csr", "org", "--entity-id", "90B3D51F30010000", "--out", str(org)).code == 0
    a_file, a_dir = tmp_path / "a-file", tmp_path / "a-dir"
    a_file.write_text("not a directory")
    a_dir.mkdir()
    before = run("audit", "tail", "-n", "1", "--json").out
    for args, code in ((("issue", "device", str(csr), "--out", str(a_file)), "output.not-a-directory"),
                       (("issue", "batch", str(csr), "--out", str(a_file)), "output.not-a-directory"),
                       (("request", "batch", str(csr), "--out", str(a_file), *ARO), "output.not-a-directory"),
                       (("issue", "org", str(org), "--out", str(a_dir)), "output.is-directory"),
                       (("request", "org", str(org), "--out", str(a_dir), *ARO), "output.is-directory")):
        result = run(*args)
        assert result.code == 1 and one_line(result).startswith(f"error: {code}: "), (args, result.err)
    assert run("audit", "tail", "-n", "1", "--json").out == before and not _device_serials(run)


def test_a_file_error_after_the_last_commit_leaves_the_batch_completed_not_also_failed(
        run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process ``batch.completed`` commits with the last chunk; a certificate file that then
    cannot be written (a full disk) is an io error, and the audit log still says what happened."""
    import errno

    from smki.interfaces.cli import issue_cmd

    csr = tmp_path / "d.csr"
    assert run("dev", "make-csr", "device", "--device-id", "00DB000000000001", "--out", str(csr)).code == 0

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(issue_cmd, "write_whole", disk_full)
    result = run("issue", "device", str(csr), "--out", str(tmp_path / "out"))
    assert result.code == 1 and "No space left on device" in one_line(result)
    tail = [r["action"] for r in json.loads(run("audit", "tail", "-n", "2", "--json").out)]
    assert tail == ["device-certificates.issued", "batch.completed"] and run("audit", "verify").code == 0


def test_a_restore_that_fails_part_way_leaves_the_new_home_as_it_found_it(
        run: Run, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if database_url.startswith("postgresql"):
        pytest.skip("restores a SQLite backup (a PostgreSQL one needs a second empty database)")
    from smki.services import backup

    archive, target = tmp_path / "b.tar.gz", tmp_path / "restored"
    assert run("backup", "create", "--out", str(archive)).code == 0
    monkeypatch.delenv("SMKI_DATABASE_URL")
    real_point = backup._point_config_at

    def ctrl_c(*args: object) -> None:  # every file is written by then
        raise KeyboardInterrupt

    monkeypatch.setattr(backup, "_point_config_at", ctrl_c)
    stopped = run("backup", "restore", str(archive), "--home", str(target))
    assert stopped.code == 130 and not target.exists()
    target.mkdir()
    assert run("backup", "restore", str(archive), "--home", str(target)).code == 130
    assert target.is_dir() and list(target.iterdir()) == []
    monkeypatch.setattr(backup, "_point_config_at", real_point)
    restored = run("backup", "restore", str(archive), "--home", str(target))
    assert restored.code == 0, restored.err


def test_a_file_is_on_the_disk_before_it_takes_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``replaced_on_success`` flushes the finished ``.partial`` to the disk, then renames it: a
    crash just after the rename finds the whole file under its name, never an empty one."""
    from smki.services import files

    events: list[str] = []
    real_fsync, real_replace = os.fsync, Path.replace

    def fsync(fd: int) -> None:
        events.append("fsync " + os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1])
        real_fsync(fd)

    def replace(self: Path, target: str | os.PathLike[str]) -> Path:
        events.append(f"rename {self.name}")
        return real_replace(self, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Path, "replace", replace)
    files.write_whole(tmp_path / "extract.csv", b"serial\n")
    assert events == ["fsync extract.csv.partial", "rename extract.csv.partial"]
    assert (tmp_path / "extract.csv").read_bytes() == b"serial\n"


def test_resume_of_a_batch_never_started_is_refused_in_one_line_and_starts_nothing(
        run: Run, tmp_path: Path) -> None:
    """``smki issue batch --resume REF`` with a REF no batch ever had started a fresh batch under that
    name, recorded as ``batch.resumed`` — and of a Party's request batch, continued it without the RA
    rules. Both are ``batch.not-found``; ``smki request batch --resume`` of the CA operator's batch,
    or of none, is ``request.batch-not-found`` (the Party's batches only)."""
    _subscriber(run)
    csrs = tmp_path / "csrs.pem"
    write_device_csrs(csrs, 3)
    issued = run("issue", "batch", str(csrs), "--out", str(tmp_path / "op"), "--workers", "0")
    assert issued.code == 0, issued.err
    operator_ref = issued.out.split()[1].rstrip(":")
    requested = run("request", "batch", str(csrs), "--out", str(tmp_path / "req"), *ARO, "--workers", "0")
    assert requested.code == 1 and "0 issued, 3 rejected" in requested.out  # the keys are certified already
    request_ref = next(r["subject"] for r in json.loads(run("audit", "tail", "--json").out)
                       if r["action"] == "request.authorised")
    before = run("audit", "tail", "-n", "1", "--json").out
    serials = _device_serials(run)

    for ref in ("cli-20260101T000000Z-00000000", request_ref):
        out = tmp_path / f"out-{ref}"
        refused = run("issue", "batch", str(csrs), "--out", str(out), "--workers", "0", "--resume", ref)
        assert refused.code == 1 and one_line(refused).startswith("error: batch.not-found: "), refused.err
        assert ref in refused.err and not out.exists()
    assert "request batch" in refused.err  # says how a Party's batch is resumed
    assert run("audit", "tail", "-n", "1", "--json").out == before and _device_serials(run) == serials

    for ref in ("req-20260101T000000Z-00000000", operator_ref):
        refused = run("request", "batch", str(csrs), "--out", str(tmp_path / "r2"), *ARO, "--workers", "0",
                      "--resume", ref)
        assert refused.code == 1 and one_line(refused).startswith("error: request.batch-not-found: "), refused.err
    assert _device_serials(run) == serials

    again = run("issue", "batch", str(csrs), "--out", str(tmp_path / "op"), "--workers", "0", "--resume", operator_ref)
    assert again.code == 0 and "0 issued, 0 rejected" in again.out, again.out + again.err


def test_request_batch_resume_of_a_batch_the_server_holds_is_refused(run: Run, tmp_path: Path) -> None:
    """A batch the Party submitted to the server (XML, JSON, Portal) is resumed by the server's
    runner from its stored CSRs; ``smki request batch --resume`` of its reference would issue the
    CSRs of the caller's file under it, two batches in one. Refused ``request.batch-on-server``,
    audited, nothing issued."""
    from smki.domain import Route
    from smki.services.batch_jobs import BatchRunner, submit_batch
    from smki.services.batch_sources import read_batch_source
    from smki.services.capacity import capacity_settings
    from smki.services.requests import Requester
    from tests.cli.helpers import PASSPHRASE

    _subscriber(run)
    server_csrs, file_csrs = tmp_path / "server.pem", tmp_path / "file.pem"
    write_device_csrs(server_csrs, 2, start=0x00DB000000000A00)
    write_device_csrs(file_csrs, 2, start=0x00DB000000000B00)
    home = open_home(run.home, PASSPHRASE.encode())
    try:
        job = submit_batch(home, Requester("P1", "A1", Route.GATEWAY),
                           [(item.item_id, item.data) for item in read_batch_source(server_csrs)],
                           interface="json", client_ref="c1", capacity=capacity_settings(home))
        assert BatchRunner(home, workers=0, poll=0.01).run_once() == 1
    finally:
        home.close()
    serials = _device_serials(run)
    refused = run("request", "batch", str(file_csrs), "--out", str(tmp_path / "r"), *ARO, "--workers", "0",
                  "--resume", job.ref)
    assert refused.code == 1 and one_line(refused).startswith("error: request.batch-on-server: "), refused.err
    assert _device_serials(run) == serials and not (tmp_path / "r").exists()
    last = json.loads(run("audit", "tail", "-n", "1", "--json").out)[-1]
    assert last["action"] == "request.refused" and "request.batch-on-server" in json.dumps(last)
