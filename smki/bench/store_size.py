"""Single-CSR issuance latency against the size of the store: populate, then issue over HTTP.

``smki bench store-size --records 10000 --records 100000 --records 1000000`` makes a fresh home
(CA, an approved Device subscriber, its ARO's credential, capacity limits off), and for each size,
smallest first: fills the store up to that many Device Certificate records with ``smki dev
populate``'s service, starts a fresh ``smki serve`` on it (a fresh process: what is measured is the
data, not a warm process), and times over mutual TLS, one request at a time, after a warm-up:

* **Ad Hoc**: ``POST /1.0/DeviceCSR`` (the DCC XML Ad Hoc service) for Devices that already have
  certificates (the service requires a known Device);
* **JSON**: ``POST /api/v1/device-certificates``;
* **results page**: ``GET /api/v1/device-batches/{id}/results?limit=100`` of a finished
  1,000-CSR batch submitted at that size.

It reports p50 and p99 of each, the server's CPU time per request (read from ``/proc``, with
PostgreSQL's backends for the bench's database included: on a shared machine the wall times move
with everything else that runs, the server's CPU is its own work), each against the smallest
size's, and, on SQLite, the size of the write-ahead log.
``--database-url`` runs it on PostgreSQL (the database named in the URL is dropped and
re-created). Every response is checked (a certificate came back).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from smki.bench._procstat import cpu_seconds
from smki.bench.http import PASSPHRASE, backend_pids, bench_home, running_server

#: Device IDs the populated records start at (``smki.services.populate.FIRST_DEVICE``).
FIRST_DEVICE = 0x00DB_0000_0000_0000
RESULTS_BATCH = 1_000


@dataclass(frozen=True)
class Row:
    records: int
    adhoc_p50_ms: float
    adhoc_p99_ms: float
    adhoc_cpu_ms: float
    json_p50_ms: float
    json_p99_ms: float
    json_cpu_ms: float
    results_p50_ms: float
    results_p99_ms: float
    results_cpu_ms: float
    wal_mib: float | None


@dataclass(frozen=True)
class Samples:
    """One kind of request: wall seconds of each timed one, and the server's CPU seconds per request
    (its own process; a single CSR is issued there). On a shared machine the wall times move with
    everything else that runs; the CPU time is the server's own work."""

    seconds: list[float]
    cpu_per_request: float

    def figures(self) -> tuple[float, float, float]:
        cuts = statistics.quantiles(self.seconds, n=100, method="inclusive")
        return round(cuts[49] * 1000, 2), round(cuts[98] * 1000, 2), round(self.cpu_per_request * 1000, 2)


def _populate_to(home_path: Path, records: int) -> int:
    """Add Device Certificate records until the store holds ``records`` of them; returns the count."""
    from smki.services.context import open_home
    from smki.services.populate import default_workers, populate_devices

    home = open_home(home_path, PASSPHRASE.encode())
    try:
        have = _device_records(home.store.engine)
        if records > have:
            populate_devices(home, records - have, actor="bench", workers=default_workers())
        return _device_records(home.store.engine)
    finally:
        home.close()


def _device_records(engine: Any) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM certificates WHERE kind = 'device'")).scalar_one())


def _settle(url: str, home_path: Path) -> float | None:
    """PostgreSQL: VACUUM ANALYZE and CHECKPOINT (what autovacuum would have done after the bulk
    load). SQLite: nothing is tuned; returns the write-ahead log's size in MiB."""
    from sqlalchemy import create_engine, text

    if url:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("VACUUM ANALYZE"))
            conn.execute(text("CHECKPOINT"))
        engine.dispose()
        return None
    wal = home_path / "smki.db-wal"
    return round(wal.stat().st_size / 2**20, 1) if wal.exists() else 0.0


def _timed(calls: list[Callable[[], None]], warm_up: int, pid: int, database_url: str) -> Samples:
    for call in calls[:warm_up]:
        call()
    samples = []
    pids = [pid, *backend_pids(database_url)]  # PostgreSQL: its backends' CPU is the server's work too
    cpu = sum(cpu_seconds(p) for p in pids)
    for call in calls[warm_up:]:
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return Samples(samples, (sum(cpu_seconds(p) for p in pids) - cpu) / len(samples))


def _measure(client: Any, pid: int, size_index: int, requests: int, warm_up: int,
             database_url: str) -> tuple[Samples, ...]:
    from smki.ca.devcsr import device_csr_stream
    from smki.interfaces.dcc import codec as dx

    total = requests + warm_up
    # Known Devices (the Ad Hoc service requires one): a different slice of the populated ones per
    # size, so no Device nears its 100-certificate limit however many sizes run.
    known = FIRST_DEVICE + size_index * total
    csrs = [der for _d, _u, der in device_csr_stream(2 * total, first_device=known)]

    def adhoc(der: bytes, n: int) -> Callable[[], None]:
        body = dx.render_device_csr_request(dx.DeviceCertificateSigningRequest(f"R{n}", der))

        def call() -> None:
            answer = dx.parse_device_csr_response(client.post("/1.0/DeviceCSR", content=body).content)
            if answer.certificate_der is None:
                raise RuntimeError(f"Ad Hoc request refused: {answer.error}")
        return call

    def single(der: bytes) -> Callable[[], None]:
        body = {"csr": base64.b64encode(der).decode()}

        def call() -> None:
            response = client.post("/api/v1/device-certificates", json=body)
            if response.status_code != 201:
                raise RuntimeError(f"JSON request refused: {response.text}")
        return call

    adhoc_samples = _timed([adhoc(der, n) for n, der in enumerate(csrs[:total])], warm_up, pid, database_url)
    json_samples = _timed([single(der) for der in csrs[total:]], warm_up, pid, database_url)

    batch = [{"id": f"c{n}", "csr": base64.b64encode(der).decode()} for n, (_d, _u, der) in enumerate(
        device_csr_stream(RESULTS_BATCH, first_device=0x00DC_0000_0000_0000 + size_index * RESULTS_BATCH))]
    submitted = client.post("/api/v1/device-batches", json={"reference": "bench", "csrs": batch})
    batch_id = submitted.json()["batch_id"]
    while client.get(f"/api/v1/device-batches/{batch_id}").json()["status"] != "completed":
        time.sleep(0.05)

    def page(after: int) -> Callable[[], None]:
        def call() -> None:
            response = client.get(f"/api/v1/device-batches/{batch_id}/results",
                                  params={"after": after, "limit": 100})
            if len([r for r in response.json()["results"] if r["certificate_pem"]]) != 100:
                raise RuntimeError("a results page came back without its certificates")
        return call

    results_samples = _timed([page((n * 100) % (RESULTS_BATCH - 100) - 1) for n in range(total)], warm_up,
                             pid, database_url)
    return adhoc_samples, json_samples, results_samples


def run(sizes: list[int], *, requests: int, warm_up: int, database_url: str = "") -> dict[str, object]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="smki-store-size-") as tmp:
        home_path, creds = bench_home(tmp, database_url)
        for n, size in enumerate(sorted(sizes)):
            records = _populate_to(home_path, size)
            wal = _settle(database_url, home_path)
            with running_server(home_path, creds) as server:
                adhoc, single, results = _measure(server.client, server.pid, n, requests, warm_up, database_url)
            rows.append(Row(records, *adhoc.figures(), *single.figures(), *results.figures(), wal))
            print(json.dumps(asdict(rows[-1])), file=sys.stderr, flush=True)
    base = rows[0]
    return {
        "store": "postgresql" if database_url else "sqlite", "cores": os.cpu_count(), "requests": requests,
        "rows": [{**asdict(r), "adhoc_vs_smallest": round(r.adhoc_p50_ms / base.adhoc_p50_ms, 2),
                  "json_vs_smallest": round(r.json_p50_ms / base.json_p50_ms, 2),
                  "adhoc_cpu_vs_smallest": round(r.adhoc_cpu_ms / base.adhoc_cpu_ms, 2),
                  "json_cpu_vs_smallest": round(r.json_cpu_ms / base.json_cpu_ms, 2)} for r in rows],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, action="append",
                        help="store size in Device Certificate records (repeatable); default 10000 and 100000")
    parser.add_argument("--requests", type=int, default=200, help="timed requests of each kind per size")
    parser.add_argument("--warm-up", type=int, default=20, help="untimed requests of each kind first")
    parser.add_argument("--database-url", default="",
                        help="PostgreSQL URL (its database is dropped and re-created); default: SQLite")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.records or [10_000, 100_000], requests=args.requests, warm_up=args.warm_up,
                         database_url=args.database_url), indent=2))


if __name__ == "__main__":
    main()
