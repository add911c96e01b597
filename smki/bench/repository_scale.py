"""The Repository at scale: lookups, CRL generation and the full extract as the store grows.

    smki bench repository --records 1000000 --records 10000000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/smki_bench

The database named in the URL is dropped and created afresh (PostgreSQL), or the SQLite file is
removed. A CA hierarchy is created in a temporary home, then for each ``--records`` size, in
ascending order, the store is filled up to that many Device Certificate records with
``smki dev populate``'s service (real DER, signed by the Device CA) and measured:

* search by serial (``Store.certificate_by_serial``) and by Device ID (``Store.find_certificates``
  with ``device_id``, what ``smki cert search --device`` runs): p50/p99 latency in-process over
  random existing keys;
* CRL generation with ``--revoked`` revoked Organisation Certificates (added once, at the first
  size) through the real ``publish`` path: stream the entries, build, sign, lint, record, write;
* the full extract (``smki repo extract --full``) in a child process writing to /dev/null:
  records/s and the child's peak RSS — flat if the extract streams.

Lookups should stay flat from 1 M to 10 M (indexed); the CRL depends on the revoked entries, not
the table; the extract is linear in time and flat in memory.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from smki.config import Settings
from smki.errors import SmkiError
from smki.services.ca_admin import initialise_ca
from smki.services.context import Home, open_home
from smki.services.populate import FIRST_DEVICE, default_workers, populate_devices, populate_revoked_organisation
from smki.services.revocation import CRL, publish
from smki.store import CertificateQuery

PASSPHRASE = b"repository-bench-passphrase"


@dataclass
class Row:
    records: int
    populate_seconds: float
    populate_per_second: float
    serial_p50_ms: float
    serial_p99_ms: float
    device_p50_ms: float
    device_p99_ms: float
    crl_entries: int
    crl_seconds: float
    crl_bytes: int
    extract_records: int
    extract_seconds: float
    extract_per_second: float
    extract_peak_mib: float
    database_mib: float


#: Databases a PostgreSQL server needs for itself: a bench never drops them.
MAINTENANCE_DATABASES = frozenset({"postgres", "template0", "template1"})


def fresh_database(url: str) -> None:
    """Drop and re-create the database ``url`` names (SQLite: delete its files), so a bench starts
    from an empty store whatever ran before. A bench's database is scratch: the server's own
    databases (``postgres``, the templates) are refused with a one-line error, never dropped."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            for suffix in ("", "-wal", "-shm"):
                Path(parsed.database + suffix).unlink(missing_ok=True)
        return
    drop_database(url, then_create=True)


def drop_database(url: str, *, then_create: bool = False) -> None:
    """Drop the PostgreSQL database ``url`` names (and make it again, empty, with ``then_create``);
    the server's own databases are refused (``bench.database-not-scratch``) before connecting."""
    parsed = make_url(url)
    if not parsed.database or parsed.database in MAINTENANCE_DATABASES:
        raise SmkiError("bench.database-not-scratch",
                        f"a bench drops and re-creates the database its --database-url names; name a "
                        f"scratch database, not {parsed.database or 'none'!r}")
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
        if then_create:
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()


def analyse(url: str) -> float:
    """Refresh planner statistics (as autovacuum would) and return the database size in MiB."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("VACUUM ANALYZE certificates"))
            conn.execute(text("CHECKPOINT"))  # flush the bulk load now, not during the lookups
            size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        else:
            conn.execute(text("ANALYZE"))
            size = Path(str(make_url(url).database)).stat().st_size
    engine.dispose()
    return int(size) / 2**20


def show_progress(base: int, done: int) -> None:
    print(f"\r  {base + done:,} records", end="", file=sys.stderr)


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


def sample_serials(url: str, count: int, rng: random.Random) -> list[int]:
    """``count`` serials of Device Certificates in the store, picked at random: the serials are
    random themselves (``smki dev populate`` draws them as issuance does), so they are read back,
    by random row ids, before any lookup is timed."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            low, high = conn.execute(text("SELECT min(id), max(id) FROM certificates WHERE kind = 'device'")).one()
            if low is None:
                raise SmkiError("bench.no-device-records", "the store holds no Device Certificate to look up")
            serials: list[int] = []
            while len(serials) < count:
                ids = sorted({rng.randint(low, high) for _ in range(count - len(serials))})
                found = conn.execute(text("SELECT serial FROM certificates WHERE kind = 'device' AND id IN "
                                          f"({', '.join(map(str, ids))})")).scalars()
                serials.extend(int(serial, 16) for serial in found)
    finally:
        engine.dispose()
    return serials[:count]


def time_lookups(home: Home, url: str, devices: int, count: int) -> tuple[float, ...]:
    """p50/p99 of serial and Device ID lookups over ``count`` random existing keys each."""
    rng = random.Random(7)
    store = home.store
    serials = sample_serials(url, count, rng)
    serial_times, device_times = [], []
    for _ in range(50):  # warm the connection pool and statement cache
        store.certificate_by_serial(1)
    for serial in serials:
        started = time.perf_counter()
        found = store.certificate_by_serial(serial)
        serial_times.append(time.perf_counter() - started)
        assert found is not None, f"{serial:032x} not found"
        device = (FIRST_DEVICE + rng.randrange(devices)).to_bytes(8, "big")
        started = time.perf_counter()
        page = store.find_certificates(CertificateQuery(device_id=device))
        device_times.append(time.perf_counter() - started)
        assert len(page) == 2, f"{device.hex()} has {len(page)} certificates"
    return (*percentiles(serial_times), *percentiles(device_times))


def time_extract(home_dir: Path, url: str) -> tuple[int, float, float]:
    """Run ``smki repo extract --full`` in a child writing to /dev/null: (records, seconds, peak MiB).

    The child reports its own peak RSS at exit (``VmHWM``: not ``ru_maxrss``, which on Linux carries
    over the forking parent's resident size across ``exec``).
    """
    env = {**os.environ, "SMKI_DATABASE_URL": url}
    code = (
        "import atexit, sys\n"
        "def peak():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            print('PEAK_KIB', line.split()[1], file=sys.stderr)\n"
        "atexit.register(peak)\n"
        f"sys.argv = ['smki', 'repo', 'extract', '--full', '--home', {str(home_dir)!r}]\n"
        "from smki.interfaces.cli.main import run\n"
        "run()\n"
    )
    started = time.perf_counter()
    with open(os.devnull, "w") as sink:
        proc = subprocess.run([sys.executable, "-c", code], stdout=sink, stderr=subprocess.PIPE, text=True,
                              env=env, check=True, cwd=Path(__file__).resolve().parent.parent)
    seconds = time.perf_counter() - started
    lines = proc.stderr.strip().splitlines()
    peak_kib = int(next(line for line in lines if line.startswith("PEAK_KIB")).split()[1])
    records = int(next(line for line in lines if "extracted" in line).split()[0].replace(",", ""))
    return records, seconds, peak_kib / 1024


def device_records(url: str) -> int:
    """How many Device Certificate records the store holds."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM certificates WHERE kind = 'device'")).scalar_one())
    finally:
        engine.dispose()


def measure_existing(url: str, lookups: int, extract: bool) -> None:
    """Lookups (and the extract) on a store an earlier run left behind: no CA key needed."""
    from smki.store import Store

    total = device_records(url)
    store = Store.open(url)
    home = Home(settings=Settings(), store=store)
    result = time_lookups(home, url, (total + 1) // 2, lookups)
    print(json.dumps({"records": total, "serial_p50_ms": round(result[0], 3), "serial_p99_ms": round(result[1], 3),
                      "device_p50_ms": round(result[2], 3), "device_p99_ms": round(result[3], 3)}), flush=True)
    if extract:
        with tempfile.TemporaryDirectory(prefix="smki-bench-") as tmp:
            records, seconds, peak = time_extract(Path(tmp), url)
        print(json.dumps({"extract_records": records, "extract_per_second": round(records / seconds),
                          "extract_peak_mib": round(peak, 1)}), flush=True)
    store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, action="append", help="store size to measure at (repeatable)")
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/smki_bench")
    parser.add_argument("--revoked", type=int, default=100_000, help="revoked Organisation records on the CRL")
    parser.add_argument("--lookups", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--no-extract", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON lines here")
    parser.add_argument("--existing", action="store_true",
                        help="measure lookups (and the extract) on the store an earlier run left, without refilling")
    args = parser.parse_args(argv)
    if args.existing:
        measure_existing(args.database_url, args.lookups, not args.no_extract)
        return
    sizes = sorted(args.records or [1_000_000])
    url = args.database_url
    fresh_database(url)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="smki-bench-") as tmp:
        settings = Settings(home=Path(tmp) / "home", database_url=url)
        initialise_ca(settings, PASSPHRASE, actor="bench")
        home = open_home(settings.home, PASSPHRASE)
        have = 0
        for size in sizes:
            populate_seconds = 0.0
            if size > have:
                started = time.perf_counter()
                populate_devices(home, size - have, actor="bench", workers=args.workers,
                                 on_progress=functools.partial(show_progress, have))
                populate_seconds = time.perf_counter() - started
                print(file=sys.stderr)
                have = size
            if not rows and args.revoked:
                populate_revoked_organisation(home, args.revoked, actor="bench")
            db_mib = analyse(url)
            lookups = time_lookups(home, url, (have + 1) // 2, args.lookups)
            started = time.perf_counter()
            done = publish(home, CRL, actor="bench")
            crl_seconds = time.perf_counter() - started
            extract = time_extract(settings.home, url) if not args.no_extract else (0, 0.0, 0.0)
            row = Row(
                records=have, populate_seconds=round(populate_seconds, 1),
                populate_per_second=round((size - (rows[-1].records if rows else 0)) / populate_seconds)
                if populate_seconds else 0,
                serial_p50_ms=round(lookups[0], 3), serial_p99_ms=round(lookups[1], 3),
                device_p50_ms=round(lookups[2], 3), device_p99_ms=round(lookups[3], 3),
                crl_entries=done.entries, crl_seconds=round(crl_seconds, 2), crl_bytes=done.path.stat().st_size,
                extract_records=extract[0], extract_seconds=round(extract[1], 1),
                extract_per_second=round(extract[0] / extract[1]) if extract[1] else 0,
                extract_peak_mib=round(extract[2], 1), database_mib=round(db_mib),
            )
            rows.append(row)
            print(json.dumps(asdict(row)), flush=True)
            if args.json:
                with args.json.open("a") as handle:
                    handle.write(json.dumps(asdict(row)) + "\n")
        home.close()
    print()
    print("| records | populate rec/s | serial p50 / p99 ms | Device ID p50 / p99 ms | CRL (entries) s "
          "| extract rec/s | extract peak RSS MiB | database MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r.records:,} | {r.populate_per_second:,} | {r.serial_p50_ms} / {r.serial_p99_ms} "
              f"| {r.device_p50_ms} / {r.device_p99_ms} | {r.crl_seconds} ({r.crl_entries:,}) "
              f"| {r.extract_per_second:,} | {r.extract_peak_mib} | {r.database_mib:,} |")


if __name__ == "__main__":
    main()
