"""``smki serve`` as a real process: a batch survives ``kill -9`` and resumes; several workers."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from smki.ca.devcsr import device_csr_stream
from smki.domain import Route
from smki.interfaces.dcc import codec as dx
from smki.services.context import Home
from smki.store.batches import batch_reads
from tests.api.conftest import SECRET, ClientFiles
from tests.api.serve_process import ServeProcess, write_api_config

SUBMIT = "/1.0/PortalCSRBatch/SubmitCSRBatch"
RESULT = "/1.0/PortalCSRBatch/CSRBatchResult"


def _batch(count: int, first: int, keys: int = 0) -> tuple[bytes, dict[str, bytes]]:
    csrs = {f"D{i}": der for i, (_d, _u, der) in enumerate(device_csr_stream(count, first_device=first, keys=keys))}
    batch = dx.SubmitCSRBatch("restart", tuple(dx.DeviceCSR(k, v) for k, v in csrs.items()))
    body = dx.render_submit_csr_batch(batch)
    return body, csrs


def _client(server: ServeProcess, who: ClientFiles) -> httpx.Client:
    return httpx.Client(base_url=server.url(Route.GATEWAY), verify=who.context(), timeout=120)


def _check_results(home: Home, result: dx.CSRBatchResult, csrs: dict[str, bytes]) -> None:
    """One SUCCESS per CSR, its certificate for that CSR's key; nothing issued twice."""
    assert [c.id for c in result.certificates] == list(csrs)
    serials = []
    for entry in result.certificates:
        assert entry.status is dx.DeviceStatus.SUCCESS, entry
        assert entry.certificate_der is not None
        cert = x509.load_der_x509_certificate(entry.certificate_der)
        assert cert.public_key() == x509.load_der_x509_csr(csrs[entry.id]).public_key()
        serials.append(cert.serial_number)
    assert len(set(serials)) == len(serials)


def test_a_batch_in_progress_resumes_after_the_server_is_killed(home: Home, aro: ClientFiles) -> None:
    write_api_config(home.settings.home)
    count = 4000
    body, csrs = _batch(count, 0x00DB550000000000)
    server = ServeProcess(home.settings.home, SECRET, "--batch-workers", "0")
    try:
        with _client(server, aro) as client:
            status = dx.parse_submit_csr_batch_status(client.post(SUBMIT, content=body).content)
        assert status.batch_id is not None
        reader = batch_reads(home.store)
        deadline = time.monotonic() + 60
        while (job := reader.job(status.batch_id)) is not None and job.processed < 500:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert job is not None and job.processed < count, "the batch finished before it could be interrupted"
        server.kill()
    finally:
        server.stop()
    job = reader.job(status.batch_id)
    assert job is not None and job.status == "PROCESSING"
    issued_before = len(home.store.find_certificates(_by_batch(job.ref)))
    assert 0 < issued_before < count

    restarted = ServeProcess(home.settings.home, SECRET, "--batch-workers", "0")
    try:
        with _client(restarted, aro) as client:
            deadline = time.monotonic() + 120
            while (result := _fetch(client, status.batch_id)).status is not dx.BatchStatus.COMPLETED:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        restarted.stop()
    _check_results(home, result, csrs)
    stored = list(home.store.iter_certificates(_by_batch(job.ref)))
    assert len(stored) == count  # every CSR issued exactly once, across both runs
    assert Counter((c.device_id, c.usage) for c in stored).most_common(1)[0][1] == 1
    actions = [r.action for r in home.store.audit_rows_for(job.ref)]
    assert actions[0] == "batch.accepted" and actions.count("batch.started") == 2  # one per run
    assert home.store.verify_audit().ok


def _fetch(client: httpx.Client, batch_id: int) -> dx.CSRBatchResult:
    return dx.parse_csr_batch_result(client.get(RESULT, params={"BatchId": batch_id}).content)


def _by_batch(ref: str) -> object:
    from smki.store import CertificateQuery

    return CertificateQuery(batch_id=ref, limit=1000)


def test_two_server_processes_issue_concurrent_batches(home: Home, aro: ClientFiles, other_aro: ClientFiles) -> None:
    write_api_config(home.settings.home)
    server = ServeProcess(home.settings.home, SECRET, "--workers", "2", "--batch-workers", "0")
    try:
        bodies = [_batch(600, 0x00DB660000000000 + n * 0x10000) for n in range(4)]
        ids = []
        for n, (body, _csrs) in enumerate(bodies):
            with _client(server, aro if n % 2 else other_aro) as client:
                status = dx.parse_submit_csr_batch_status(client.post(SUBMIT, content=body).content)
                assert status.batch_id is not None
                ids.append(status.batch_id)
        reader = batch_reads(home.store)
        deadline = time.monotonic() + 180
        while any((j := reader.job(i)) is None or j.status != "COMPLETED" for i in ids):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        owners = {reader.job(i).started_at is not None for i in ids}  # type: ignore[union-attr]
        assert owners == {True}
        for n, batch_id in enumerate(ids):
            with _client(server, aro if n % 2 else other_aro) as client:
                result = dx.parse_csr_batch_result(client.get(RESULT, params={"BatchId": batch_id}).content)
            _check_results(home, result, bodies[n][1])
    finally:
        server.stop()
    serials = [c.serial for c in home.store.iter_certificates(_by_batch_any())]
    assert len(serials) == len(set(serials))
    assert home.store.verify_audit().ok


def _by_batch_any() -> object:
    from smki.store import CertificateQuery

    return CertificateQuery(limit=1000)


@pytest.mark.slow
def test_10000_csrs_through_submitcsrbatch_with_visible_progress_all_verified_by_openssl(
        home: Home, aro: ClientFiles, tmp_path: Path) -> None:
    write_api_config(home.settings.home)
    body, csrs = _batch(10_000, 0x00DB880000000000)
    server = ServeProcess(home.settings.home, SECRET, "--batch-workers", "2")
    try:
        with _client(server, aro) as client:
            status = dx.parse_submit_csr_batch_status(client.post(SUBMIT, content=body).content)
            assert status.batch_id is not None
            progress = []
            deadline = time.monotonic() + 240
            while (now := client.get(f"/api/v1/device-batches/{status.batch_id}").json())["status"] != "completed":
                progress.append(now["processed"])
                assert time.monotonic() < deadline
                time.sleep(0.05)
            result = _fetch(client, status.batch_id)
    finally:
        server.stop()
    assert any(0 < p < 10_000 for p in progress), progress  # progress was visible while it ran
    assert progress == sorted(progress)
    _check_results_keys_shared(result, csrs)
    chain = tmp_path / "chain"
    chain.mkdir()
    from cryptography.hazmat.primitives.serialization import Encoding

    from smki.domain import CertKind

    (chain / "root.pem").write_bytes(home.ca_certificate(CertKind.ROOT).public_bytes(Encoding.PEM))
    (chain / "ca.pem").write_bytes(home.ca_certificate(CertKind.DEVICE_CA).public_bytes(Encoding.PEM))
    leaves = tmp_path / "leaves"
    leaves.mkdir()
    paths = []
    for entry in result.certificates:
        assert entry.certificate_der is not None
        path = leaves / f"{entry.id}.pem"
        path.write_bytes(x509.load_der_x509_certificate(entry.certificate_der).public_bytes(Encoding.PEM))
        paths.append(str(path))
    done = subprocess.run(["openssl", "verify", "-partial_chain", "-CAfile", str(chain / "root.pem"),
                           "-untrusted", str(chain / "ca.pem"), *paths], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count(": OK") == 10_000


def _check_results_keys_shared(result: dx.CSRBatchResult, csrs: dict[str, bytes]) -> None:
    """As _check_results, for CSRs that share keys: match each certificate to its own CSR's key."""
    assert [c.id for c in result.certificates] == list(csrs)
    serials = set()
    for entry in result.certificates:
        assert entry.status is dx.DeviceStatus.SUCCESS and entry.certificate_der is not None
        cert = x509.load_der_x509_certificate(entry.certificate_der)
        assert cert.public_key() == x509.load_der_x509_csr(csrs[entry.id]).public_key()
        serials.add(cert.serial_number)
    assert len(serials) == len(csrs)
