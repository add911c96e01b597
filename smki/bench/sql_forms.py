"""A single CSR's store statements against the batch forms, per statement, on PostgreSQL.

    smki bench sql-forms --database-url postgresql+psycopg://…/db [--rows 20000] [--runs 300]

The batch writer sends a chunk's Device IDs or key fingerprints packed into one ``bytea`` that a
sub-select cuts up (:func:`smki.store.driver.pg_fixed_width_any`, ``pg_packed_rows``): for 2,000
values that is far cheaper than a list. A single CSR (Ad Hoc, JSON) has one Device and one key, and
sends them as plain parameters. This bench drops and re-creates the named database, migrates it,
adds ``--rows`` Device Certificates and as many registered keys, then runs each statement of a
single CSR in both forms ``--runs`` times on one connection, two rounds alternated, and prints the
wall time, the backend's CPU (read from ``/proc``) and this client's CPU per statement. Key inserts
are rolled back.

Two more pairs put figures on what a statement costs whatever its form:

* **a round trip**: ``SELECT 1``, the least a statement costs the client and the server;
* **a wide read, prepared or parsed each time**: one certificate's row by serial, as a prepared
  statement and as psycopg sends a statement it has not prepared (parse, plan and run, every time).
  psycopg forgets a connection's prepared statements at every ``ROLLBACK``; smki's reads end
  without one (``smki/store/reads.py``), and psycopg prepares a statement at its second use on a
  connection (``smki/store/engine.py``).
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable
from typing import Any

from smki.bench._procstat import cpu_seconds
from smki.bench._scratch_pg import parse_postgres_args, scratch_postgres_parser

_DEVICE_SQL = "SELECT device_id, usage FROM certificates WHERE status = 'I' AND device_id = {}"
_COUNT_SQL = "SELECT device_id, count(*) FROM certificates WHERE device_id = {} GROUP BY device_id"
_KEY_SQL = "SELECT fingerprint, serial FROM certified_keys WHERE fingerprint = {}"
_PACKED_8 = "ANY(ARRAY(SELECT substring(%s::bytea FROM i * 8 + 1 FOR 8) FROM generate_series(0, %s - 1) AS i))"
_PACKED_16 = "ANY(ARRAY(SELECT substring(%s::bytea FROM i * 16 + 1 FOR 16) FROM generate_series(0, %s - 1) AS i))"
_INSERT_PACKED = ("INSERT INTO certified_keys (fingerprint, serial) SELECT f, encode(s, 'hex') FROM (SELECT "
                  "substring(%s::bytea FROM i * 16 + 1 FOR 16), substring(%s::bytea FROM i * 16 + 1 FOR 16) "
                  "FROM generate_series(0, %s - 1) AS i) AS r(f, s)")
_INSERT_ROW = "INSERT INTO certified_keys (fingerprint, serial) VALUES (%s, %s)"
_WIDE_SQL = ("SELECT id, serial, kind, usage, issuer_key_id, device_id, entity_id, role, status, not_before, "
             "not_after, der, issued_at, batch_id, revoked_at, revocation_reason, changed_at FROM certificates "
             "WHERE serial = %s")
#: Forms sent without ever being prepared (``prepare=False``): parsed and planned at every execution.
_UNPREPARED = {"wide read, parsed each time"}
#: Forms prepared from their first execution (``prepare=True``).
_PREPARED = {"wide read, prepared", "round trip (SELECT 1)"}


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _prepare(database_url: str, rows: int) -> None:
    from smki.bench.repository_scale import fresh_database
    from smki.store import Store

    fresh_database(database_url)
    store = Store.open(database_url)
    try:
        store.migrate()
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO certificates (serial, kind, usage, issuer_key_id, device_id, status, not_before, "
                "not_after, der, issued_at, batch_id, changed_at) SELECT md5(i::text), 'device', 'DS', 'bench', "
                "int8send(i), 'I', now(), now() + interval '1 year', '\\x3000'::bytea, now(), 'bench', now() "
                "FROM generate_series(1, %s) AS i", (rows,))
            conn.exec_driver_sql(
                "INSERT INTO certified_keys (fingerprint, serial) SELECT substring(sha256(int8send(i)) FROM 1 FOR 16), "
                "md5(i::text) FROM generate_series(1, %s) AS i", (rows,))
            conn.exec_driver_sql("ANALYZE certificates")
            conn.exec_driver_sql("ANALYZE certified_keys")
    finally:
        store.engine.dispose()


def run(database_url: str, *, rows: int, runs: int) -> dict[str, dict[str, Any]]:
    """Per form: the best round's wall time and backend CPU per statement (µs), and every round's wall."""
    import psycopg

    _prepare(database_url, rows)
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    figures: dict[str, dict[str, list[float]]] = {}
    with psycopg.connect(conninfo) as conn:
        conn.autocommit = True
        pid = conn.info.backend_pid
        device = (rows // 2).to_bytes(8, "big")
        key = conn.execute("SELECT fingerprint FROM certified_keys LIMIT 1").fetchone()[0]  # type: ignore[index]
        serial = conn.execute("SELECT serial FROM certificates LIMIT 1").fetchone()[0]  # type: ignore[index]

        def fresh() -> tuple[bytes, bytes]:
            return os.urandom(16), os.urandom(16)

        forms: dict[str, Callable[[], tuple[str, tuple[Any, ...]]]] = {
            "in-use look-up, packed": lambda: (_DEVICE_SQL.format(_PACKED_8), (device, 1)),
            "in-use look-up, plain": lambda: (_DEVICE_SQL.format("(%s)"), (device,)),
            "per-Device count, packed": lambda: (_COUNT_SQL.format(_PACKED_8), (device, 1)),
            "per-Device count, plain": lambda: (_COUNT_SQL.format("(%s)"), (device,)),
            "key look-up, packed": lambda: (_KEY_SQL.format(_PACKED_16), (key, 1)),
            "key look-up, plain": lambda: (_KEY_SQL.format("(%s)"), (key,)),
            "key insert, packed": lambda: (_INSERT_PACKED, (*fresh(), 1)),
            "key insert, one row": lambda: (_INSERT_ROW, (os.urandom(16), os.urandom(16).hex())),
            "round trip (SELECT 1)": lambda: ("SELECT 1", ()),
            "wide read, prepared": lambda: (_WIDE_SQL, (serial,)),
            "wide read, parsed each time": lambda: (_WIDE_SQL, (serial,)),
        }
        for _round in range(2):
            for name, form in forms.items():
                inserting = name.startswith("key insert")
                if inserting:
                    conn.autocommit = False
                prepare = True if name in _PREPARED else False if name in _UNPREPARED else None
                cpu, client, started = cpu_seconds(pid), _client_cpu(), time.perf_counter()
                for _ in range(runs):
                    sql, params = form()
                    cursor = conn.execute(sql, params, prepare=prepare)
                    if cursor.description is not None:
                        cursor.fetchall()
                wall = (time.perf_counter() - started) / runs
                backend = (cpu_seconds(pid) - cpu) / runs
                client = (_client_cpu() - client) / runs
                if inserting:
                    conn.rollback()
                    conn.autocommit = True
                entry = figures.setdefault(name, {"wall_us": [], "backend_cpu_us": [], "client_cpu_us": []})
                entry["wall_us"].append(round(wall * 1e6, 1))
                entry["backend_cpu_us"].append(round(backend * 1e6, 1))
                entry["client_cpu_us"].append(round(client * 1e6, 1))
    return {name: {"wall_us": min(entry["wall_us"]), "backend_cpu_us": min(entry["backend_cpu_us"]),
                   "client_cpu_us": min(entry["client_cpu_us"]), "rounds_wall_us": entry["wall_us"]}
            for name, entry in figures.items()}


def main(argv: list[str] | None = None) -> None:
    parser = scratch_postgres_parser(__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=300)
    args = parse_postgres_args(parser, argv, "the packed forms are")
    figures = run(args.database_url, rows=args.rows, runs=args.runs)
    if args.json:
        print(json.dumps(figures))
        return
    for name, entry in figures.items():
        print(f"{name:28s} wall {entry['wall_us']:7.1f} µs (rounds {entry['rounds_wall_us']}), "
              f"backend CPU {entry['backend_cpu_us']:6.1f} µs, client CPU {entry['client_cpu_us']:6.1f} µs")


if __name__ == "__main__":
    main()
