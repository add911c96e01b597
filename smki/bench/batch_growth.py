"""Batch issuance as the store grows: the same batch size, issued again and again into one store.

    smki bench batch-growth [--count 100000] [--batches 5] [--page-size 4096 --page-size 16384]
    smki bench batch-growth --count 50000 --batches 8 --through service
    smki bench batch-growth --database-url postgresql+psycopg://postgres@127.0.0.1:5432/smki_bench

``smki bench issue`` and ``batch-cpu`` start from an empty store. A real one holds millions of
Device Certificates, and two of the indexes every certificate enters take random keys: the serial
(a random 16-octet integer, spec §4) and the key register's fingerprint (``csr.duplicate``). A
batch's commit writes every index page it touched (SQLite writes each whole page to its WAL, and
copies it back at the next checkpoint; PostgreSQL writes a full page image the first time a page
changes after a checkpoint), and random keys touch pages all over those indexes: so the bytes
written per certificate grow with the store until each certificate touches a page of its own.

This benchmark issues ``--batches`` batches of ``--count`` fresh Device CSRs (each batch its own
Devices and keys, made once in parallel) through a warm signing pool into one store, and reports
each batch: the certificates in the store before it, certificates per second and their share of
the openssl limit (measured before each round), the CPU per certificate of the writer (this process),
of the workers and of PostgreSQL's server, and the bytes written per certificate (SQLite: what this
process wrote, WAL and checkpoints; PostgreSQL: the server's WAL while the batch ran, which counts
any other database's writes of that time too: run it on an otherwise idle server).

With ``--through service``, each batch goes the way a Gateway ``SubmitCSRBatch`` goes, without the
HTTP: stored as a batch job of an approved subscriber (``batch_jobs.submit_batch``), then issued by
the server's batch runner, whose commits also write each item's outcome. The writer's CPU then
counts both.

With ``--page-size`` given more than once (SQLite), each page size has its own store, and the
stores take each batch in turn, the order alternating from round to round, so each row of one
sees the machine as the same row of the other did. Choosing the page size is for this
measurement only; smki makes a new SQLite database with ``smki.store.engine.SQLITE_PAGE_SIZE``.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from smki.bench._procstat import written_bytes
from smki.bench.issue import BENCH_PASSPHRASE, openssl_limit
from smki.ca.csr import decode_csr_text
from smki.ca.devcsr import write_device_csrs
from smki.config import Settings
from smki.services import device_issuance
from smki.services.batch_jobs import MAX_CSRS
from smki.services.batch_sources import read_batch_source
from smki.services.ca_admin import initialise_ca
from smki.services.context import Home, open_home
from smki.store import engine as store_engine

if TYPE_CHECKING:
    from smki.services.batch_jobs import BatchRunner

#: The first batch's first Device ID; batch i starts ``i * count`` Devices further (two CSRs each).
FIRST_DEVICE = 0x00DB_6000_0000_0000


@dataclass(frozen=True)
class BatchRow:
    """One batch issued into a store: what the table prints."""

    store: str
    before: int
    issued: int
    seconds: float
    limit: float
    parent_us: float
    workers_us: float
    database_us: float
    written_kib: float

    @property
    def share(self) -> float:
        return self.issued / self.seconds / self.limit

    def line(self) -> str:
        database = f" {self.database_us:8.1f}" if self.database_us else ""
        return (f"{self.store:<21} {self.before:>10,} {self.issued / self.seconds:>9,.0f} {self.share:>6.1%} "
                f"{self.parent_us:>8.1f} {self.workers_us:>8.1f}{database} {self.written_kib:>9.1f}")


def header(on_postgresql: bool) -> str:
    database, under = (f" {'database':>8}", f" {'µs/cert':>8}") if on_postgresql else ("", "")
    return (f"{'store':<21} {'before':>10} {'certs/s':>9} {'limit':>6} {'writer':>8} {'workers':>8}{database} "
            f"{'KiB/cert':>9}\n{'':<21} {'(certs)':>10} {'':>9} {'share':>6} {'µs/cert':>8} {'µs/cert':>8}"
            f"{under} {'written':>9}")


def csr_files(work: Path, count: int, batches: int) -> list[Path]:
    """The batches' multi-PEM files, made in parallel (a fresh key per CSR costs ~100 µs of Python)."""
    paths = [work / f"batch-{count}-{number}.pem" for number in range(batches)]
    missing = [(path, number) for number, path in enumerate(paths) if not path.exists()]
    if missing:
        with ProcessPoolExecutor(max_workers=min(len(missing), os.cpu_count() or 1)) as makers:
            list(makers.map(_write_batch, [(path, count, number) for path, number in missing]))
    return paths


def _write_batch(job: tuple[Path, int, int]) -> None:
    path, count, number = job
    write_device_csrs(path, count, start=FIRST_DEVICE + number * count)


def _wal_position(home: Home) -> int:
    from sqlalchemy import text

    with home.store.engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")).scalar_one())


class Store:
    """One home and its warm pool, taking the batches one after another (``service``: as the
    server's batch runner takes stored batch jobs)."""

    def __init__(self, name: str, home: Path, database_url: str, stack: ExitStack, service: bool = False) -> None:
        self.name = name
        self.url = database_url
        self.issued = 0
        self.runner: BatchRunner | None = None
        if database_url:
            from smki.bench.repository_scale import fresh_database

            fresh_database(database_url)
        if service:
            from smki.bench.http import PASSPHRASE, _subscriber
            from smki.services.batch_jobs import BatchRunner

            _subscriber(home, database_url)  # a CA and an approved Device subscriber, P1 / A1
            self.home = open_home(home, PASSPHRASE.encode())
            stack.callback(self.home.close)
            self.runner = BatchRunner(self.home, workers=os.cpu_count() or 1)
            stack.callback(self.runner.stop)
            pool = self.runner.signing_pool()
            assert pool is not None
            self.pool = pool
        else:
            secret = BENCH_PASSPHRASE.encode()
            initialise_ca(Settings(home=home, database_url=database_url), secret, actor="bench")
            self.home = open_home(home, secret)
            stack.callback(self.home.close)
            self.pool = device_issuance.SigningPool.for_home(self.home)
            stack.callback(self.pool.close)
        self.pool.warm()

    def _issue(self, source: Path, number: int) -> int:
        """Issue the batch in ``source``; how many certificates it issued."""
        if self.runner is None:
            return device_issuance.issue_device_batch(self.home, read_batch_source(source), actor="bench",
                                                      batch_ref=f"growth-{number}", pool=self.pool).issued
        from smki.domain import Route
        from smki.services.batch_jobs import submit_batch
        from smki.services.capacity import CapacitySettings
        from smki.services.requests import Requester
        from smki.store.batches import batch_reads

        job = submit_batch(self.home, Requester("P1", "A1", Route.GATEWAY), _ders(source), interface="xml",
                           client_ref=f"growth-{number}", capacity=CapacitySettings(enabled=False))
        self.runner.run_once()
        done = batch_reads(self.home.store).job(job.id)
        return 0 if done is None else done.issued

    def issue(self, source: Path, number: int, limit: float) -> BatchRow:
        from smki.bench.batch_cpu import _cpu_of
        from smki.bench.http import backend_pids

        pids = list(self.pool._executor._processes)  # the live worker processes
        workers = _cpu_of(pids)
        database = _cpu_of(backend_pids(self.url))
        written = _wal_position(self.home) if self.url else written_bytes()
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        n = self._issue(source, number)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        written = (_wal_position(self.home) if self.url else written_bytes()) - written
        if n == 0:
            raise SystemExit(f"batch {number} issued nothing")
        row = BatchRow(
            self.name, self.issued, n, seconds, limit,
            ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / n * 1e6,
            (_cpu_of(pids) - workers) / n * 1e6,
            (_cpu_of(backend_pids(self.url)) - database) / n * 1e6,
            written / n / 1024,
        )
        self.issued += n
        return row


def _ders(source: Path) -> list[tuple[str, bytes]]:
    """The batch's items as a Gateway client sends them: (item id, CSR DER)."""
    return [(str(item.item_id), decode_csr_text(item.data)) for item in read_batch_source(source)]


def run(work: Path, count: int, batches: int, page_sizes: Sequence[int], database_url: str,
        service: bool = False) -> list[BatchRow]:
    """Issue the batches into each store in turn; print and return a row per batch and store."""
    sources = csr_files(work, count, batches)
    cores = os.cpu_count() or 1
    rows: list[BatchRow] = []
    with ExitStack() as stack:
        stores: list[Store] = []
        if database_url:
            stores.append(Store("postgresql", work / "postgresql", database_url, stack, service))
        for size in page_sizes:
            made_with, store_engine.SQLITE_PAGE_SIZE = store_engine.SQLITE_PAGE_SIZE, size  # only while made
            try:
                stores.append(Store(f"sqlite, {size // 1024} KiB pages", work / f"sqlite-{size}", "", stack, service))
            finally:
                store_engine.SQLITE_PAGE_SIZE = made_with
        print(header(bool(database_url)), flush=True)
        for number, source in enumerate(sources):
            limit = openssl_limit(cores, seconds=2)[2]
            turn = number % len(stores)
            for store in stores[turn:] + stores[:turn]:
                row = store.issue(source, number, limit)
                rows.append(row)
                print(row.line(), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000, help="CSRs per batch")
    parser.add_argument("--batches", type=int, default=5, help="batches issued one after another into each store")
    parser.add_argument("--page-size", type=int, action="append", default=[],
                        help="SQLite: a store made with this page size (repeatable; default: smki's own)")
    parser.add_argument("--through", choices=("issuance", "service"), default="issuance",
                        help="issuance: smki issue batch's path; service: the Gateway batch service's (no HTTP)")
    parser.add_argument("--database-url", default="",
                        help="a scratch PostgreSQL database to drop and re-create (instead of SQLite)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.batches < 1:
        parser.error("--count and --batches must be at least 1")
    if args.through == "service" and args.count > MAX_CSRS:
        parser.error(f"--through service: a Gateway batch holds at most {MAX_CSRS:,} CSRs")
    if args.database_url and args.page_size:
        parser.error("--page-size is SQLite's; leave it out with --database-url")
    for size in args.page_size:
        if size < 512 or size > 65536 or size & (size - 1):
            parser.error(f"a SQLite page size is a power of two from 512 to 65536, not {size}")
    page_sizes = [] if args.database_url else (args.page_size or [store_engine.SQLITE_PAGE_SIZE])
    with tempfile.TemporaryDirectory(prefix="smki-batch-growth-") as tmp:
        run(Path(tmp), args.count, args.batches, page_sizes, args.database_url, args.through == "service")


if __name__ == "__main__":
    main()
