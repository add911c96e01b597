"""Single-CSR issuance latency against the size of the store: populate, then issue over HTTP.

``smki bench store-size --records 10000 --records 100000 --records 1000000`` makes one fresh home
per size (CA, an approved Device subscriber, its ARO's credential, capacity limits off; on
PostgreSQL a database each) and fills each to its size with ``smki dev populate``'s service — every
record with its own key in the key register and a random serial, as issuance leaves them. It then
starts a fresh ``smki serve`` on each (fresh processes: what is measured is the data, not a warm
process), all at once, and times over mutual TLS, one request at a time, after a warm-up:

* **Ad Hoc**: ``POST /1.0/DeviceCSR`` (the DCC XML Ad Hoc service) for Devices that already have
  certificates (the service requires a known Device);
* **JSON**: ``POST /api/v1/device-certificates``;
* **results page**: ``GET /api/v1/device-batches/{id}/results?limit=100`` of a finished
  1,000-CSR batch.

The stores' requests are timed *in turn* (the first request of each store, then the second of
each …), so a spell of a shared machine falls on every size alike: measured one size after the
other, as until the seventeenth session, the smallest store's requests once took 3.5 ms of the
server's CPU and the largest's 8.5, in a run where the two sizes measured alone, in one spell,
took the same.

It reports p50 and p99 of each, the server's CPU time per request (read from ``/proc``, with
PostgreSQL's backends for that store's database included: on a shared machine the wall times move
with everything else that runs, the server's CPU is its own work), each against the smallest
size's, and, on SQLite, the size of the write-ahead log.
``--database-url`` runs it on PostgreSQL: the database named in the URL (the smallest size's) is
dropped and re-created, and the other sizes' (``<name>_1`` …) are made beside it and dropped at the
end. Every response is checked (a certificate came back).
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
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from smki.bench._procstat import cpu_seconds
from smki.bench.http import PASSPHRASE, backend_pids, bench_home, running_server
from smki.bench.repository_scale import drop_database

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


class _Kind:
    """One kind of request against one server: its calls (warm-up first), and the processes whose
    CPU is that server's work."""

    def __init__(self, calls: list[Callable[[], None]], pids: list[int]) -> None:
        self.calls = calls
        self.pids = pids
        self.seconds: list[float] = []
        self.cpu = 0.0


def _timed_in_turn(kinds: list[_Kind], warm_up: int) -> list[Samples]:
    """Every kind's warm-up, then its timed calls *in turn* (the first of each, the second of
    each …), so that every store's requests meet the machine in the same spells: measured one
    store after the other, a shared host's spell could make one store's requests twice as dear as
    another's for the same work (seventeenth session: 3.5 against 8.5 ms of CPU)."""
    for kind in kinds:
        for call in kind.calls[:warm_up]:
            call()
    for kind in kinds:
        kind.cpu = -sum(cpu_seconds(p) for p in kind.pids)
    for position in range(warm_up, min(len(kind.calls) for kind in kinds)):
        for kind in kinds:
            started = time.perf_counter()
            kind.calls[position]()
            kind.seconds.append(time.perf_counter() - started)
    for kind in kinds:
        kind.cpu += sum(cpu_seconds(p) for p in kind.pids)
    return [Samples(kind.seconds, kind.cpu / len(kind.seconds)) for kind in kinds]


def _calls(client: Any, requests: int, warm_up: int) -> tuple[list[Callable[[], None]], ...]:
    """Ad Hoc, JSON and results-page calls for one server (its store populated from
    ``FIRST_DEVICE``); the results pages are of a 1,000-CSR batch submitted and finished here."""
    from smki.ca.devcsr import device_csr_stream
    from smki.interfaces.dcc import codec as dx

    total = requests + warm_up
    # Known Devices (the Ad Hoc service requires one), each given one more certificate.
    csrs = [der for _d, _u, der in device_csr_stream(2 * total, first_device=FIRST_DEVICE)]

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

    batch = [{"id": f"c{n}", "csr": base64.b64encode(der).decode()} for n, (_d, _u, der) in enumerate(
        device_csr_stream(RESULTS_BATCH, first_device=0x00DC_0000_0000_0000))]
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

    return ([adhoc(der, n) for n, der in enumerate(csrs[:total])], [single(der) for der in csrs[total:]],
            [page((n * 100) % (RESULTS_BATCH - 100) - 1) for n in range(total)])


def _database_for(database_url: str, position: int) -> str:
    """Each size's own store: SQLite in its own home; PostgreSQL the URL's database for the
    smallest, and ``<name>_<position>`` beside it for the others (dropped at the end)."""
    if not database_url or position == 0:
        return database_url
    from sqlalchemy.engine import make_url

    parsed = make_url(database_url)
    return parsed.set(database=f"{parsed.database}_{position}").render_as_string(hide_password=False)


def run(sizes: list[int], *, requests: int, warm_up: int, database_url: str = "") -> dict[str, object]:
    """One store per size, each filled to its size; then one server per store, all running at
    once, and their requests timed in turn (see :func:`_timed_in_turn`)."""
    sizes = sorted(sizes)
    extra = [_database_for(database_url, n) for n in range(1, len(sizes))] if database_url else []
    try:
        with tempfile.TemporaryDirectory(prefix="smki-store-size-") as tmp, ExitStack() as servers:
            stores = []
            for n, size in enumerate(sizes):
                url = _database_for(database_url, n)
                home_path, creds = bench_home(str(Path(tmp) / str(n)), url)
                records = _populate_to(home_path, size)
                stores.append((home_path, creds, url, records, _settle(url, home_path)))
                print(json.dumps({"records": records, "populated": True}), file=sys.stderr, flush=True)
            running = [servers.enter_context(running_server(home_path, creds))
                       for home_path, creds, _url, _records, _wal in stores]
            per_server = [_calls(server.client, requests, warm_up) for server in running]
            measured = []
            for kind in range(3):  # Ad Hoc, JSON, results pages: each kind in turn across the stores
                measured.append(_timed_in_turn(
                    [_Kind(calls[kind], [server.pid, *backend_pids(url)])
                     for calls, server, (_h, _c, url, _r, _w) in zip(per_server, running, stores, strict=True)],
                    warm_up))
    finally:
        for url in extra:
            drop_database(url)
    rows = [Row(records, *measured[0][n].figures(), *measured[1][n].figures(), *measured[2][n].figures(), wal)
            for n, (_h, _c, _u, records, wal) in enumerate(stores)]
    for row in rows:
        print(json.dumps(asdict(row)), file=sys.stderr, flush=True)
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
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url names a PostgreSQL database (postgresql+psycopg://…); "
                     "without it each store is SQLite in its own home")
    # Each store's home names its own database; an inherited SMKI_DATABASE_URL would override it
    # here and in every server started, and point them all at one store.
    os.environ.pop("SMKI_DATABASE_URL", None)
    print(json.dumps(run(args.records or [10_000, 100_000], requests=args.requests, warm_up=args.warm_up,
                         database_url=args.database_url), indent=2))


if __name__ == "__main__":
    main()
