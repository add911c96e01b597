"""kill -9 in the middle of a batch: every certificate is either fully recorded or not issued."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from smki.ca.devcsr import write_device_csrs
from smki.domain import CertKind
from smki.store import CertificateQuery, Store
from tests.cli.helpers import openssl_verify


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _start_batch(source: Path, out: Path, ca_home: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``smki issue batch`` with two workers, in a session of its own (its process group is its pid)."""
    return subprocess.Popen(
        [sys.executable, "-m", "smki.interfaces.cli.main", "issue", "batch", str(source), "--out", str(out),
         "--workers", "2", "--chunk-size", "250", "--home", str(ca_home)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )


def test_sigkill_mid_batch_leaves_only_whole_records(ca_home: Path, env: dict[str, str], tmp_path: Path,
                                                     database_url: str) -> None:
    source = tmp_path / "csrs.pem"
    write_device_csrs(source, 40_000)
    out = tmp_path / "out"
    proc = _start_batch(source, out, ca_home, env)
    deadline = time.monotonic() + 120
    while _lines(out / "results.csv") < 1500 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the batch finished before it could be killed: make it larger"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    store = Store.open(database_url)
    try:
        report = store.verify_audit()
        assert report.ok, report
        device_ca = x509.load_pem_x509_certificate((ca_home / "device-ca.pem").read_bytes())
        public_key = device_ca.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        certificates = list(store.iter_certificates(CertificateQuery(kind=CertKind.DEVICE)))
        assert 1500 <= len(certificates) < 40_000
        serials = [c.serial for c in certificates]
        assert len(set(serials)) == len(serials)
        for record in certificates:
            cert = x509.load_der_x509_certificate(record.der)
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
            assert f"{cert.serial_number:032x}" == record.serial
        audited = [entry[0] for row in store.audit_rows() if row.action == "device-certificates.issued"
                   for entry in row.details_dict["issued"]]
        assert len(audited) == len(set(audited))
        assert set(audited) == set(serials)
    finally:
        store.close()
    # Every certificate the CLI released was committed first.
    released = sorted(out.glob("*.pem"))
    assert released
    sample = released[:: max(1, len(released) // 50)]
    check = openssl_verify(ca_home / "root.pem", ca_home / "device-ca.pem", *sample)
    assert check.returncode == 0, check.stdout + check.stderr
    assert len(released) <= len(certificates)


def _session_processes(session: int) -> list[int]:
    """The live (not zombie) processes of a session, read from ``/proc``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == session:  # state, …, session id
            found.append(int(entry.name))
    return found


def test_sigkill_of_the_batch_process_alone_leaves_no_worker_or_forkserver(ca_home: Path, env: dict[str, str],
                                                                          tmp_path: Path) -> None:
    """``kill -9`` of the CLI process only (not its group, as the OOM killer or an operator's
    ``kill -9 PID`` does): its signing workers and forkserver end too. They ran on for ever, with
    the CA key open: the workers' parent is the forkserver, which lives while a worker holds its
    keep-alive pipe, and a worker waited for work on a queue whose other end it held itself."""
    source = tmp_path / "csrs.pem"
    write_device_csrs(source, 40_000)
    out = tmp_path / "out"
    proc = _start_batch(source, out, ca_home, env)
    try:
        deadline = time.monotonic() + 120
        while _lines(out / "results.csv") < 1000 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the batch finished before it could be killed: make it larger"
        assert len(_session_processes(proc.pid)) >= 4  # the CLI, its forkserver, two workers
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while _session_processes(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _session_processes(proc.pid) == []
    finally:
        if _session_processes(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
