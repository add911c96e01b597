"""Where the Gateway batch service's own time goes, phase by phase, without HTTP in the way.

    smki bench service-phases [--csrs 50000] [--database-url postgresql+psycopg://…] [--json]

One ``SubmitCSRBatch`` of ``--csrs`` Device CSRs goes through the server's own code in this
process, in the order a server runs it: the XML parse (``parse_submit_csr_batch``), the
submission (``submit_batch``: RA rules, the job and its items stored), the batch runner's run of
the job through its warm signing pool (two workers by default), then the ``CSRBatchResult``
rows read back and rendered. The phases run one after another — without the server's head start
(``BatchRunner.head_start``: the workers check a batch's first chunks while it is stored) — so that
each phase's CPU is its own. For each phase it prints this process's CPU per CSR (every thread),
and for the run the wall time, the workers' CPU per certificate, the database's (PostgreSQL
backends) and the share of the openssl limit measured just before — the same limit as
``smki bench issue`` and ``smki bench http``. The difference from ``smki bench http``'s figures is
what HTTP, TLS and the client cost; the difference from ``smki bench issue``'s is what the service
adds to issuance (item bookkeeping, the per-Device limit, eligibility, result rows). It also times
the warm-up of a fresh signing pool (the workers' start, as a CLI batch pays it), and the whole
result read and rendered as the server streams it, with and without the next page read ahead
(``BatchReads.iter_result_rows``; the server reads ahead on PostgreSQL only).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from smki.bench.issue import openssl_limit


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _streamed(home: Any, job_id: int, ahead: bool) -> float:
    """Seconds to read and render a finished batch's whole ``CSRBatchResult`` as the server streams
    it (rows a page at a time, rendered as they come), the next page read ahead or not."""
    from smki.interfaces.dcc import codec as dx
    from smki.store.batches import batch_reads

    started = time.perf_counter()
    rows = batch_reads(home.store).iter_result_rows(job_id, ahead=ahead)
    for _chunk in dx.iter_csr_batch_result(dx.BatchStatus.COMPLETED, ((row.item_id, bytes(row.der))
                                                                       for row in rows if row.der is not None)):
        pass
    return time.perf_counter() - started


def run(count: int, database_url: str = "", workers: int = 2) -> dict[str, float]:
    from smki.bench.batch_cpu import _cpu_of
    from smki.bench.http import PASSPHRASE, _body, _subscriber, backend_pids
    from smki.domain import Route
    from smki.interfaces.dcc import codec as dx
    from smki.services import batch_jobs
    from smki.services.capacity import CapacitySettings
    from smki.services.context import open_home
    from smki.services.device_issuance import SigningPool
    from smki.services.requests import Requester
    from smki.store.batches import batch_reads

    with tempfile.TemporaryDirectory(prefix="smki-phases-") as tmp:
        home_path = Path(tmp) / "home"
        if database_url:
            from smki.bench.repository_scale import fresh_database

            fresh_database(database_url)
        _subscriber(home_path, database_url)
        home = open_home(home_path, PASSPHRASE.encode())
        try:
            with SigningPool.for_home(home, workers) as fresh:  # a CLI batch's pool: started, then closed
                started = time.perf_counter()
                fresh.warm()
                warm_up = time.perf_counter() - started
            body = _body(count, 0x00DB000000000000)
            runner = batch_jobs.BatchRunner(home, workers=workers)
            pool = runner.signing_pool()
            assert pool is not None
            worker_pids = list(pool._executor._processes)  # the live signing processes
            database = backend_pids(database_url) if database_url else []
            _sign, _verify, limit = openssl_limit(os.cpu_count() or 1)
            requester = Requester("P1", "A1", Route.GATEWAY)
            workers_before, database_before = _cpu_of(worker_pids), _cpu_of(database)
            marks = [(_cpu(), time.perf_counter())]
            batch = dx.parse_submit_csr_batch(body, max_bytes=len(body) + 1)
            marks.append((_cpu(), time.perf_counter()))
            job = batch_jobs.submit_batch(home, requester, [(c.id, c.csr_der) for c in batch.csrs], interface="xml",
                                          client_ref=batch.id, capacity=CapacitySettings(enabled=False))
            marks.append((_cpu(), time.perf_counter()))
            runner.run_once()
            marks.append((_cpu(), time.perf_counter()))
            done = batch_reads(home.store).job(job.id)
            assert done is not None and done.issued == count, f"only {done and done.issued} of {count} issued"
            rows = list(batch_jobs.iter_result_rows(home, done))
            marks.append((_cpu(), time.perf_counter()))
            entries = [(row.item_id, bytes(row.der)) for row in rows if row.der is not None]
            size = 0
            for chunk in dx.iter_csr_batch_result(dx.BatchStatus.COMPLETED, entries, chunk_bytes=1 << 20):
                size += len(chunk)
            marks.append((_cpu(), time.perf_counter()))
            workers_cpu = _cpu_of(worker_pids) - workers_before
            database_cpu = _cpu_of(backend_pids(database_url) if database_url else []) - database_before
            streamed: dict[bool, list[float]] = {False: [], True: []}  # after the CPU figures: not counted in them
            for ahead in (False, True, False, True):  # the result as the server streams it, both ways, alternated
                streamed[ahead].append(_streamed(home, job.id, ahead))
            runner.stop()
        finally:
            home.close()
    per = [(marks[i + 1][0] - marks[i][0]) / count * 1e6 for i in range(len(marks) - 1)]
    wall = marks[-1][1] - marks[0][1]
    return {
        "csrs": count, "result_bytes": size, "pool_warm_up_seconds": round(warm_up, 3),
        "parse_us": round(per[0], 1), "submit_us": round(per[1], 1), "issue_writer_us": round(per[2], 1),
        "result_rows_us": round(per[3], 1), "render_us": round(per[4], 1),
        "workers_us": round(workers_cpu / count * 1e6, 1), "database_us": round(database_cpu / count * 1e6, 1),
        "issue_seconds": round(marks[3][1] - marks[2][1], 3), "total_seconds": round(wall, 3),
        "openssl_limit": round(limit, 1), "share_of_openssl_limit": round(count / wall / limit, 3),
        "result_streamed_seconds": round(min(streamed[False]), 3),
        "result_streamed_read_ahead_seconds": round(min(streamed[True]), 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csrs", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2, help="signing processes of the runner's pool")
    parser.add_argument("--database-url", default="",
                        help="a PostgreSQL database to drop and re-create (default: SQLite in a temp home)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    args = parser.parse_args(argv)
    figures = run(args.csrs, args.database_url, args.workers)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{args.csrs:,} CSRs ({'PostgreSQL' if args.database_url else 'SQLite'}), this process's CPU per CSR: "
          f"parse {figures['parse_us']} µs, submit {figures['submit_us']} µs, issue (the writer) "
          f"{figures['issue_writer_us']} µs, result rows {figures['result_rows_us']} µs, "
          f"render {figures['render_us']} µs")
    print(f"signing workers {figures['workers_us']} µs per certificate, database {figures['database_us']} µs")
    print(f"issue {figures['issue_seconds']} s, total {figures['total_seconds']} s: "
          f"{100 * figures['share_of_openssl_limit']:.1f}% of the openssl limit "
          f"({figures['openssl_limit']:,.0f} certs/s)")
    print(f"a fresh signing pool warms up in {figures['pool_warm_up_seconds']} s")
    print(f"the whole result, read and rendered as the server streams it: {figures['result_streamed_seconds']} s, "
          f"{figures['result_streamed_read_ahead_seconds']} s with the next page read ahead (best of two each)")


if __name__ == "__main__":
    main()
