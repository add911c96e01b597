"""``smki bench devices``: bulk import of the device register (issue 13: 1,000,000 rows in under a
minute on PostgreSQL), then request-time look-ups (one query per 500 Device IDs, as a batch's writer
makes them for the Eligible Subscriber check).

Usage: ``smki bench devices [--count N] [--database-url URL] [--format csv|jsonl]``. The database
must exist (the bench creates smki's schema in it). The input file is written first (not timed);
the import is the service the CLI uses (``import_path``: streamed, 10,000 rows per transaction). A
second import of the same file measures an update of every row (each Device's entry rewritten and
one more dated change each). Besides wall time it reports the CPU of this process and, on a
PostgreSQL server on this machine, of its backend: on a shared machine those move less.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from smki.audit import AuditEvent
from smki.bench._procstat import cpu_seconds
from smki.config import Settings, write_default_config
from smki.services.context import Home, open_home
from smki.services.device_register import ImportSummary, import_path
from smki.store.devices import device_reads

STATUSES = ("pending", "whitelisted", "installed-not-commissioned", "commissioned", "commissioned", "commissioned",
            "decommissioned", "withdrawn", "suspended", "recovery", "recovered")
TYPES = ("ESME", "GSME", "CHF", "GPF", "PPMID", "HCALCS")
PARTIES = ("SUPP1", "SUPP2", "SUPP3", "GAS1", "DNO1")
FIRST = 0x00DB000000000000


def write_input(path: Path, count: int, form: str) -> None:
    rng = random.Random(13)
    with path.open("w", encoding="utf-8", newline="") as handle:
        if form == "csv":
            handle.write("device_id,device_type,smi_status,import_supplier,gas_supplier,network_operator,effective\n")
        for n in range(count):
            row = ((FIRST + n).to_bytes(8, "big").hex(), rng.choice(TYPES), rng.choice(STATUSES),
                   rng.choice(PARTIES[:3]), rng.choice(("GAS1", "")), "DNO1", "2026-01-01")
            if form == "csv":
                handle.write(",".join(row) + "\n")
            else:
                handle.write(json.dumps(dict(zip(("device_id", "device_type", "smi_status", "import_supplier",
                                                  "gas_supplier", "network_operator", "effective"), row,
                                                 strict=True))) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="smki bench devices", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="smki-bench-devices-"))
    source = work / f"devices.{'csv' if args.format == 'csv' else 'jsonl'}"
    write_input(source, args.count, args.format)
    settings = Settings(home=work / "home", database_url=args.database_url)
    write_default_config(settings)
    home = open_home(settings.home, None, migrate=True, create=True)  # a fresh database: create the schema
    with home.store.transaction() as tx:
        for party in PARTIES:
            tx.registry.add_party(party, party, "large-supplier")
        tx.append_audit([AuditEvent("bench", "bench.setup", "devices")])
    cpu: dict[str, tuple[float, float]] = {}

    def timed(label: str) -> ImportSummary:
        """The import, with the CPU it cost this process and (PostgreSQL) its server backend."""
        backend = _backend(home)
        before = os.times(), cpu_seconds(backend) if backend else 0.0
        summary = import_path(home, source, actor="bench")
        after = os.times()
        cpu[label] = (after.user + after.system - before[0].user - before[0].system,
                      (cpu_seconds(backend) - before[1]) if backend and _backend(home) == backend else -1.0)
        return summary

    try:
        first = timed("import")
        again = timed("update")
        reads = device_reads(home.store)
        rng = random.Random(7)
        ids = [(FIRST + rng.randrange(args.count)).to_bytes(8, "big") for _ in range(50_000)]
        started = time.perf_counter()
        for start in range(0, len(ids), 2000):
            reads.entries(ids[start:start + 2000])
        lookup = time.perf_counter() - started
    finally:
        home.close()
    print(json.dumps({
        "rows": args.count, "format": args.format, "store": args.database_url or "sqlite",
        "import_seconds": round(first.seconds, 2), "import_rows_per_second": round(first.rows / first.seconds),
        "update_seconds": round(again.seconds, 2), "lookup_us_per_device": round(1e6 * lookup / len(ids), 1),
        **{f"{label}_cpu_seconds": {"client": round(client, 2), "server": round(server, 2) if server >= 0 else None}
           for label, (client, server) in cpu.items()},
        "cpus": os.cpu_count(), "load_average": [round(n, 2) for n in os.getloadavg()],
    }))


def _backend(home: Home) -> int | None:
    """The PostgreSQL backend's process id (the bench's one connection, reused by the pool), to read
    the server's CPU from ``/proc`` when the server runs on this machine; None on SQLite."""
    if home.store.dialect != "postgresql":
        return None
    with home.store.engine.connect() as conn:
        pid = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    return pid if os.path.exists(f"/proc/{pid}") else None


if __name__ == "__main__":
    main()
