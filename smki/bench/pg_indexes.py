"""What each index of ``certificates`` costs a Device Certificate's insert, on PostgreSQL.

    smki bench pg-indexes --database-url postgresql+psycopg://…/db [--rows 200000] [--rounds 3]

Device rows enter seven indexes of ``certificates``: the primary key, the serial's unique index and
five more (issued_at, changed_at, batch_id, the Device's (device_id, usage, status), and the partial
unique index of the in-use Device Certificate). Each is read by something (``smki.store.models``);
this bench puts a figure on what each costs a batch, the question every profile of the PostgreSQL
writer left open ("the ``COPY`` of the certificates: seven indexes").

It drops and re-creates the named database, migrates it, and then, for each variant — the table as
it is, each of the five without it, and none of the five — empties the table, drops that variant's
indexes, inserts ``--rows`` Device rows as the batch writer commits them (2,000 a transaction, with a
random serial, DS and KA for consecutive Device IDs, a ~480-byte ``der``) and puts the indexes back.
The rows are made by the server (``INSERT … SELECT``), so the figure is the database's alone: the
wall time and the backend's CPU (``/proc``, so the server must be this machine's) per row. Variants
are alternated for ``--rounds`` rounds and the median is reported, with its difference from the
table as it is.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from smki.bench._procstat import cpu_seconds
from smki.bench._scratch_pg import parse_postgres_args, scratch_postgres_parser

#: The indexes device rows enter besides the primary key and the serial's (which every row needs).
SECONDARY = ("ix_certificates_issued_at", "ix_certificates_changed_at", "ix_certificates_batch_id",
             "ix_certificates_device_id_usage_status", "uq_certificates_device_in_use")
AS_IS = "as is"
NONE_OF_THEM = "none of the five"
_CHUNK = 2_000
_INSERT = """
INSERT INTO certificates (serial, kind, usage, issuer_key_id, device_id, status, not_before, not_after,
                          der, issued_at, batch_id, changed_at)
SELECT md5(%(salt)s || i::text), 'device', CASE WHEN i %% 2 = 0 THEN 'DS' ELSE 'KA' END, repeat('ab', 20),
       int8send(i / 2), 'I', now(), now() + interval '30 years',
       decode(repeat(md5(i::text), 30), 'hex'), clock_timestamp(), %(batch)s, clock_timestamp()
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i"""


def variants() -> dict[str, tuple[str, ...]]:
    """Each variant's name → the indexes it goes without."""
    return {AS_IS: (), **{f"without {name}": (name,) for name in SECONDARY}, NONE_OF_THEM: SECONDARY}


def run(database_url: str, *, rows: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Per variant: the median wall and backend CPU µs per row over ``rounds``, each round's, and the
    difference of the medians from the table as it is."""
    from smki.bench.repository_scale import fresh_database
    from smki.store import Store

    fresh_database(database_url)
    store = Store.open(database_url)
    walls: dict[str, list[float]] = {name: [] for name in variants()}
    cpus: dict[str, list[float]] = {name: [] for name in variants()}
    try:
        store.migrate()
        with store.engine.connect() as conn:
            definitions: dict[str, str] = {str(name): str(ddl) for name, ddl in conn.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'certificates'")}
            backend = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
            conn.commit()

            def once(name: str, without: tuple[str, ...], salt: str) -> None:
                with conn.begin():
                    conn.exec_driver_sql("TRUNCATE certificates RESTART IDENTITY")
                    for index in without:
                        conn.exec_driver_sql(f"DROP INDEX {index}")
                wall, cpu = time.perf_counter(), cpu_seconds(backend)
                for lo in range(0, rows, _CHUNK):
                    with conn.begin():
                        conn.exec_driver_sql(_INSERT, {"salt": salt, "lo": lo, "hi": min(lo + _CHUNK, rows) - 1,
                                                       "batch": f"bench-{lo // 50_000}"})
                walls[name].append((time.perf_counter() - wall) / rows * 1e6)
                cpus[name].append((cpu_seconds(backend) - cpu) / rows * 1e6)
                with conn.begin():
                    for index in without:
                        conn.exec_driver_sql(definitions[index])

            for number in range(rounds):
                for name, without in variants().items():
                    once(name, without, f"{number}-{name}")
    finally:
        store.engine.dispose()
    base_wall, base_cpu = statistics.median(walls[AS_IS]), statistics.median(cpus[AS_IS])
    return {name: {"wall_us": round(statistics.median(walls[name]), 2),
                   "backend_cpu_us": round(statistics.median(cpus[name]), 2),
                   "wall_vs_as_is_us": round(statistics.median(walls[name]) - base_wall, 2),
                   "backend_cpu_vs_as_is_us": round(statistics.median(cpus[name]) - base_cpu, 2),
                   "rounds_wall_us": [round(w, 2) for w in walls[name]]}
            for name in variants()}


def main(argv: list[str] | None = None) -> None:
    parser = scratch_postgres_parser(__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parse_postgres_args(parser, argv, "the indexes measured are")
    if args.rows < 1 or args.rounds < 1:
        parser.error("--rows and --rounds must be at least 1")
    figures = run(args.database_url, rows=args.rows, rounds=args.rounds)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{args.rows:,} Device rows a variant, {args.rounds} round(s), median µs per row:")
    for name, entry in figures.items():
        print(f"  {name:48s} wall {entry['wall_us']:6.2f} ({entry['wall_vs_as_is_us']:+6.2f}), backend CPU "
              f"{entry['backend_cpu_us']:6.2f} ({entry['backend_cpu_vs_as_is_us']:+6.2f}); "
              f"rounds {entry['rounds_wall_us']}")


if __name__ == "__main__":
    main()
