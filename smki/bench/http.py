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
import functools
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from smki.bench._cfssl_peer import PeerRun
from smki.bench._procstat import Watch
from smki.bench._serve_env import passphrase_file_env

PASSPHRASE = "bench-passphrase-not-secret"
#: How long one status request may wait for the batch's status to change (``?wait=``: long polling).
STATUS_WAIT_SECONDS = 10
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
    #: CPU seconds from submit to the last result byte: the server process (HTTP, parse, the single
    #: writer), its signing workers, and PostgreSQL's backends for its connections (0 on SQLite).
    server_cpu_seconds: float
    workers_cpu_seconds: float
    database_cpu_seconds: float
    server_peak_mib: float
    worker_peak_mib: float


@dataclass(frozen=True)
class Timing:
    """One batch through the service: its phases (wall seconds)."""

    csrs: int
    submit: float
    issue: float
    fetch: float

    @property
    def total(self) -> float:
        return self.submit + self.issue + self.fetch


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
            tx.registry.update_party("P1", srept_passed=date(2019, 1, 1), uept_completed=date(2019, 1, 2))
            tx.registry.start_period("P1", "registered-role", "import-supplier", on=date(2019, 1, 2), by="bench")
            tx.registry.start_period("P1", "gateway-connection", "GW", on=date(2019, 1, 2), by="bench")
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
                 enumerate(device_csr_stream(count, first_device=first)))
    return dx.render_submit_csr_batch(dx.SubmitCSRBatch(f"bench-{count}", csrs))


def wait_completed(client: Any, batch_id: int) -> None:
    """Wait until the batch is completed, by long polling: each status request waits in the server
    until the status changes (``?wait=``), so completion is seen as it happens, in two or three
    requests per batch.

    The client used to ask again and again (every 50 ms at first, later as long as the CSRs left
    would take at 40,000/s): completion was seen up to 50 ms late, and each answer cost the server
    a TLS request, the credential check and a read (3-5 ms of CPU) taken from the signing the bench
    measures. A batch refused by the RA never completes: that is an error here.
    """
    while True:
        state = json.loads(client.get(f"/api/v1/device-batches/{batch_id}",
                                      params={"wait": STATUS_WAIT_SECONDS}).content)
        if state["status"] == "completed":
            return
        if state["status"] == "rejected":
            raise RuntimeError(f"batch {batch_id} was rejected")


def one_batch(client: Any, size: int, first_device: int, body: bytes | None = None) -> Timing:
    """Submit one batch, wait for it (polling), fetch its whole result; check every CSR was issued."""
    from smki.interfaces.dcc import codec as dx

    body = body if body is not None else _body(size, first_device)
    started = time.perf_counter()
    status = dx.parse_submit_csr_batch_status(client.post("/1.0/PortalCSRBatch/SubmitCSRBatch", content=body).content)
    submitted = time.perf_counter()
    if status.batch_id is None:
        raise RuntimeError(f"batch refused: {status}")
    wait_completed(client, status.batch_id)
    issued = time.perf_counter()
    answer = client.get("/1.0/PortalCSRBatch/CSRBatchResult", params={"BatchId": status.batch_id}).content
    done = time.perf_counter()  # every result is in the client's hands
    result = dx.parse_csr_batch_result(answer)  # checked, but the client's own work: not timed
    ok = sum(1 for c in result.certificates if c.status is dx.DeviceStatus.SUCCESS)
    if ok != size:
        raise RuntimeError(f"{size - ok} CSRs were not issued")
    return Timing(size, submitted - started, issued - submitted, done - issued)


def backend_pids(database_url: str) -> list[int]:
    """PostgreSQL: the server processes serving connections to the bench's database (not this one)."""
    if not database_url:
        return []
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [int(pid) for pid in conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )).scalars()]
    finally:
        engine.dispose()


def bench_home(tmp: str, database_url: str) -> tuple[Path, Path]:
    """A fresh home under ``tmp`` for a server benchmark (capacity limits off, Gateway on a free
    port; a PostgreSQL database re-created); returns it and the ARO client credential's directory."""
    home_path = Path(tmp) / "home"
    if database_url:
        from smki.bench.repository_scale import fresh_database

        fresh_database(database_url)
    creds = _subscriber(home_path, database_url)
    with (home_path / "smki.toml").open("a", encoding="utf-8") as config:
        config.write('\n[api]\ngateway = "127.0.0.1:0"\nspoti-enabled = false\n\n'
                     "\n[capacity]\nenabled = false\n")
    return home_path, creds


def _measured(server: Server, database_url: str, work: Callable[[], list[Timing]]) -> tuple[list[Timing], Watch]:
    watch = Watch(server.pid, backend_pids(database_url)).start()
    try:
        timings = work()
    finally:
        watch.stop()
    return timings, watch


def run(sizes: list[int], *, workers: int, database_url: str = "", peers: Sequence[str] = (),
        peer_csrs: int = 10_000, nightly: bool = False) -> dict[str, object]:
    """Each batch size in turn through one ``smki serve`` (and, with ``nightly``, 375,000 CSRs as 8
    batches from 2 concurrent clients), then each peer, all set against openssl's limit."""
    from smki.bench.issue import openssl_limit

    cores = os.cpu_count() or 1
    before = openssl_limit(cores)
    measured: list[tuple[list[Timing], Watch]] = []
    nightly_run: tuple[list[Timing], Watch, float] | None = None
    with tempfile.TemporaryDirectory(prefix="smki-api-bench-") as tmp:
        home_path, creds = bench_home(tmp, database_url)
        with running_server(home_path, creds, ["--batch-workers", str(workers)]) as server:
            for n, size in enumerate(sizes):
                body = _body(size, 0x00DB000000000000 + n * 0x1000000)
                measured.append(_measured(server, database_url, functools.partial(_single, server, size, body)))
            if nightly:
                nightly_run = _nightly(server, database_url, first=0x00DB000000000000 + len(sizes) * 0x1000000)
    peer_runs = [_peer(name, peer_csrs) for name in peers]
    sign_after, verify_after, limit_after = openssl_limit(cores)
    # The machine's speed drifts (other jobs): set the runs against the mean of the limit measured
    # just before and just after them, as ``smki bench issue`` does.
    sign, verify, limit = ((a + b) / 2 for a, b in zip(before, (sign_after, verify_after, limit_after), strict=True))
    results = [_run_row(timings[0], watch, limit) for timings, watch in measured]
    report: dict[str, object] = {
        "cores": cores, "batch_workers": workers, "store": "postgresql" if database_url else "sqlite",
        "openssl_sign_per_s": sign, "openssl_verify_per_s": verify, "openssl_certs_per_s": round(limit, 1),
        "openssl_certs_per_s_before_after": [round(before[2], 1), round(limit_after, 1)],
        "runs": [asdict(r) for r in results],
    }
    if nightly_run is not None:
        timings, watch, wall = nightly_run
        total = sum(t.csrs for t in timings)
        report["nightly"] = {
            "csrs": total, "batches": len(timings), "clients": NIGHTLY_CLIENTS, "seconds": round(wall, 2),
            "certs_per_second": round(total / wall, 1), "share_of_openssl_limit": round(total / wall / limit, 3),
            "server_peak_mib": round(watch.server_peak_mib, 1), "worker_peak_mib": round(watch.worker_peak_mib, 1),
            "server_cpu_seconds": round(watch.server_cpu, 2), "workers_cpu_seconds": round(watch.workers_cpu, 2),
            "database_cpu_seconds": round(watch.others_cpu, 2),
        }
    if peers:
        report["peers"] = [asdict(p) if p is not None else {"name": name, "skipped": "not installed"}
                           for name, p in zip(peers, peer_runs, strict=True)]
        best = max((r.certs_per_second for r in results), default=0.0)
        report["smki_vs_peers"] = {p.name: round(best / p.certs_per_second, 2) for p in peer_runs if p is not None}
    return report


def _single(server: Server, size: int, body: bytes) -> list[Timing]:
    return [one_batch(server.client, size, 0, body)]


def _run_row(timing: Timing, watch: Watch, limit: float) -> Run:
    rate = timing.csrs / timing.total
    return Run(timing.csrs, round(timing.submit, 3), round(timing.issue, 3), round(timing.fetch, 3),
               round(timing.total, 3), round(rate, 1), round(rate / limit, 3), round(watch.server_cpu, 2),
               round(watch.workers_cpu, 2), round(watch.others_cpu, 2), round(watch.server_peak_mib, 1),
               round(watch.worker_peak_mib, 1))


#: The DCC's nightly capacity: 375,000 Device CSRs, as 8 batches (at most 50,000 each) from 2 clients.
NIGHTLY_CSRS = 375_000
NIGHTLY_BATCHES = 8
NIGHTLY_CLIENTS = 2


def _nightly(server: Server, database_url: str, first: int) -> tuple[list[Timing], Watch, float]:
    """Every client submits its share of the batches one after the other (submit, wait, fetch)."""
    per_batch = NIGHTLY_CSRS // NIGHTLY_BATCHES
    bodies = [_body(per_batch, first + b * 0x100000) for b in range(NIGHTLY_BATCHES)]  # made before the clock
    timings: list[Timing] = []
    errors: list[BaseException] = []

    def client_loop(mine: list[bytes]) -> None:
        try:
            with server.new_client() as client:
                for body in mine:
                    timings.append(one_batch(client, per_batch, 0, body))
        except BaseException as exc:  # reported after the others finish
            errors.append(exc)

    def work() -> list[Timing]:
        threads = [threading.Thread(target=client_loop, args=(bodies[c::NIGHTLY_CLIENTS],))
                   for c in range(NIGHTLY_CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return timings

    started = time.perf_counter()
    done, watch = _measured(server, database_url, work)
    return done, watch, time.perf_counter() - started


def _peer(name: str, csrs: int) -> PeerRun | None:
    from smki.bench import _cfssl_peer as cfssl_peer
    from smki.ca.devcsr import device_csr_stream

    if name != "cfssl":
        raise SystemExit(f"unknown peer {name!r} (known: cfssl)")
    if not cfssl_peer.available():
        print("note: cfssl is not installed (Debian: golang-cfssl); the peer is skipped", file=sys.stderr)
        return None
    return cfssl_peer.run_cfssl([der for _d, _u, der in device_csr_stream(csrs, first_device=0x00DD000000000000,
                                                                             keys=64)])


@dataclass(frozen=True)
class Server:
    """A running ``smki serve``: its pid and a client for its Gateway listener (``new_client`` for
    more, e.g. one per concurrent caller)."""

    pid: int
    client: Any
    base_url: str
    context: ssl.SSLContext

    def new_client(self) -> Any:
        import httpx

        return httpx.Client(base_url=self.base_url, verify=self.context, timeout=600)


@contextmanager
def running_server(home_path: Path, creds: Path, args: Sequence[str] = ()) -> Iterator[Server]:
    """``smki serve`` on ``home_path`` as a child process, and an HTTP client with ``creds`` for its
    Gateway listener; stops the server after."""
    env = passphrase_file_env(home_path, PASSPHRASE)
    process = subprocess.Popen(
        [sys.executable, "-m", "smki.interfaces.cli.serve_cmd", "--home", str(home_path), *args],
        stdout=subprocess.PIPE, env=env, text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        match = re.search(r"gateway=(\S+)", process.stdout.readline())
        if not match:
            raise RuntimeError("smki serve did not start")
        context = ssl.create_default_context(cafile=str(creds / "ca.pem"))
        context.load_cert_chain(str(creds / "cert.pem"), str(creds / "key.pem"))
        server = Server(process.pid, None, match.group(1), context)
        with server.new_client() as client:
            _wait_up(client)
            yield Server(process.pid, client, server.base_url, context)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


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
    parser.add_argument("--database-url", default="",
                        help="PostgreSQL URL (its database is dropped and re-created); default: SQLite")
    parser.add_argument("--peer", action="append", default=[], choices=["cfssl"],
                        help="also time a peer CA on the same CSRs (cfssl: skipped with a note when not installed)")
    parser.add_argument("--peer-csrs", type=int, default=10_000, help="CSRs the peer signs (default 10000)")
    parser.add_argument("--nightly", action="store_true",
                        help="also 375,000 CSRs as 8 batches from 2 concurrent clients: total time and peak memory")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.csrs or ([] if args.nightly else [10_000]), workers=args.batch_workers,
                         database_url=args.database_url, peers=args.peer, peer_csrs=args.peer_csrs,
                         nightly=args.nightly), indent=2))


if __name__ == "__main__":
    main()
