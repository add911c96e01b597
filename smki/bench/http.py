"""End-to-end benchmark of the Batched Device CSR web service over mutual TLS.

``smki bench http --csrs 10000 --csrs 50000`` makes a fresh home (CA, an
approved Device subscriber, its ARO's credential), starts ``smki serve`` as a separate process,
and for each size times: ``SubmitCSRBatch`` over TLS → the background job (RA rules, per-Device
limit, parse, verify, sign, persist with audit) → ``CSRBatchResult`` fetched (the clock stops when
the whole response has arrived; the client then parses it and checks that every CSR came back
SUCCESS, which is its own work, not the service's). In the same run ``openssl speed -multi
<cores> ecdsap256`` gives the machine's raw limit (one verify + one sign per certificate), and the
result is reported as a share of it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

PASSPHRASE = "bench-passphrase-not-secret"
#: How often the client asks whether the batch is done (a DCC User's system would poll too).
POLL_SECONDS = 0.05
P12_PASSWORD = b"bench-p12-password"


@dataclass(frozen=True)
class Run:
    csrs: int
    submit_seconds: float
    issue_seconds: float
    fetch_seconds: float
    total_seconds: float
    certs_per_second: float
    share_of_openssl_limit: float


def _subscriber(home_path: Path, database_url: str) -> Path:
    """A CA home with an approved Device subscriber; returns the ARO credential's directory."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    from smki.audit import AuditEvent
    from smki.config import Settings
    from smki.domain import CertificatePolicy
    from smki.services import applications as apps
    from smki.services import registry as reg
    from smki.services.ca_admin import initialise_ca
    from smki.services.context import open_home
    from smki.services.credentials import issue_credential
    from smki.services.staff import add_staff

    initialise_ca(Settings(home=home_path, database_url=database_url), PASSPHRASE.encode(), actor="bench")
    home = open_home(home_path, PASSPHRASE.encode())
    try:
        add_staff(home, "op", "Operator", ["ra-operator"], actor="bench")
        add_staff(home, "ap", "Approver", ["ra-approver"], actor="bench")
        with home.store.transaction() as tx:
            tx.registry.add_party("P1", "Bench Energy", "large-supplier")
            tx.registry.update_party("P1", srept_passed=date(2019, 1, 1), uept_completed=date(2019, 1, 2),
                                     registered_user_roles=["import-supplier"], gateway_connections=["GW"])
            tx.append_audit([AuditEvent("bench", "bench.setup", "P1")])
        reg.nominate_aro(home, "A1", "P1", "Bench Officer", "SRO", staff_id="op")
        reg.verify_aro(home, "A1", "bench", staff_id="op")
        reg.screen_aro(home, "A1", date(2021, 1, 1), "BS 7858:2019", staff_id="op")
        application = apps.apply(home, "P1", CertificatePolicy.DEVICE, staff_id="op").application_id
        apps.add_evidence(home, application, "installation-need", "bench", staff_id="op")
        apps.propose(home, application, staff_id="op")
        apps.approve(home, application, staff_id="ap")
        issued = issue_credential(home, "aro", "A1", password=P12_PASSWORD, actor="bench")
    finally:
        home.close()
    key, cert, extra = pkcs12.load_key_and_certificates(issued.pkcs12, P12_PASSWORD)
    assert key is not None and cert is not None and extra
    creds = home_path / "bench-client"
    creds.mkdir()
    (creds / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (creds / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    (creds / "ca.pem").write_bytes(extra[0].public_bytes(serialization.Encoding.PEM))
    return creds


def _body(count: int, first: int) -> bytes:
    from smki.ca.devcsr import device_csr_stream
    from smki.interfaces.dcc import codec as dx

    csrs = tuple(dx.DeviceCSR(f"ID{i}", der) for i, (_d, _u, der) in
                 enumerate(device_csr_stream(count, first_device=first, keys=64)))
    return dx.render_submit_csr_batch(dx.SubmitCSRBatch(f"bench-{count}", csrs))


def run(sizes: list[int], *, workers: int, database_url: str = "") -> dict[str, object]:
    import httpx

    from smki.bench.issue import openssl_limit
    from smki.interfaces.dcc import codec as dx

    cores = os.cpu_count() or 1
    before = openssl_limit(cores)
    with tempfile.TemporaryDirectory(prefix="smki-api-bench-") as tmp:
        home_path = Path(tmp) / "home"
        creds = _subscriber(home_path, database_url)
        with (home_path / "smki.toml").open("a", encoding="utf-8") as config:
            config.write('\n[api]\ngateway = "127.0.0.1:0"\nspoti-enabled = false\nbatch-poll = 0.02\n'
                         "\n[capacity]\nenabled = false\n")
        env = {**os.environ, "SMKI_KEY_PASSPHRASE": PASSPHRASE}
        server = subprocess.Popen(
            [sys.executable, "-m", "smki.interfaces.cli.serve_cmd", "--home", str(home_path),
             "--batch-workers", str(workers)], stdout=subprocess.PIPE, env=env, text=True, start_new_session=True)
        try:
            assert server.stdout is not None
            match = re.search(r"gateway=(\S+)", server.stdout.readline())
            if not match:
                raise RuntimeError("smki serve did not start")
            context = ssl.create_default_context(cafile=str(creds / "ca.pem"))
            context.load_cert_chain(str(creds / "cert.pem"), str(creds / "key.pem"))
            runs = []
            with httpx.Client(base_url=match.group(1), verify=context, timeout=600) as client:
                _wait_up(client)
                for n, size in enumerate(sizes):
                    body = _body(size, 0x00DB000000000000 + n * 0x1000000)
                    started = time.perf_counter()
                    status = dx.parse_submit_csr_batch_status(
                        client.post("/1.0/PortalCSRBatch/SubmitCSRBatch", content=body).content)
                    submitted = time.perf_counter()
                    if status.batch_id is None:
                        raise RuntimeError(f"batch refused: {status}")
                    while json.loads(client.get(f"/api/v1/device-batches/{status.batch_id}").content)[
                            "status"] != "completed":
                        time.sleep(POLL_SECONDS)
                    issued = time.perf_counter()
                    body = client.get("/1.0/PortalCSRBatch/CSRBatchResult", params={"BatchId": status.batch_id}).content
                    done = time.perf_counter()  # every result is in the client's hands
                    result = dx.parse_csr_batch_result(body)  # checked, but the client's own work: not timed
                    ok = sum(1 for c in result.certificates if c.status is dx.DeviceStatus.SUCCESS)
                    if ok != size:
                        raise RuntimeError(f"{size - ok} CSRs were not issued")
                    runs.append((size, submitted - started, issued - submitted, done - issued, done - started))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    sign_after, verify_after, limit_after = openssl_limit(cores)
    # The machine's speed drifts (other jobs): set the runs against the mean of the limit measured
    # just before and just after them, as ``smki bench issue`` does.
    sign, verify, limit = ((a + b) / 2 for a, b in zip(before, (sign_after, verify_after, limit_after), strict=True))
    results = [Run(size, round(a, 3), round(b, 3), round(c, 3), round(t, 3), round(size / t, 1),
                   round(size / t / limit, 3)) for size, a, b, c, t in runs]
    return {"cores": cores, "batch_workers": workers, "openssl_sign_per_s": sign, "openssl_verify_per_s": verify,
            "openssl_certs_per_s": round(limit, 1),
            "openssl_certs_per_s_before_after": [round(before[2], 1), round(limit_after, 1)],
            "runs": [asdict(r) for r in results]}


def _wait_up(client: object) -> None:
    import httpx

    assert isinstance(client, httpx.Client)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.get("/api/v1/whoami")
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csrs", type=int, action="append", help="batch size (repeatable); default 10000")
    parser.add_argument("--batch-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--database-url", default="", help="default: SQLite in the temporary home")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.csrs or [10_000], workers=args.batch_workers, database_url=args.database_url),
                     indent=2))


if __name__ == "__main__":
    main()
