"""``smki bench``: one entry point for every benchmark in :mod:`smki.bench`."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smki import bench as bench_package
from smki.interfaces.cli.bench_cmd import FORWARDED
from tests.cli.helpers import smki, smki_env


def test_every_benchmark_module_has_a_command() -> None:
    runnable = {info.name for info in pkgutil.iter_modules(bench_package.__path__)
                if callable(getattr(importlib.import_module(f"smki.bench.{info.name}"), "main", None))}
    commanded = {module for module, _ in FORWARDED.values()}
    assert runnable == commanded  # ``issue`` is the typed command and has no argv main


def test_bench_help_lists_them_and_forwards_arguments(database_url: str) -> None:
    env = smki_env(database_url)
    listing = smki(["bench", "--help"], env)
    assert listing.code == 0
    for name in ("issue", *FORWARDED):
        assert name in listing.out
    codec = smki(["bench", "codec", "--count", "200"], env)
    assert codec.code == 0, codec.err
    assert "SubmitCSRBatch parse: 200 CSRs" in codec.out
    assert "CSRBatchResult render (streamed): 200" in codec.out
    usage = smki(["bench", "crl", "--help"], env)
    assert usage.code == 0 and "--entries" in usage.out


def test_bench_access_log_measures_the_middleware_against_the_bare_app(database_url: str) -> None:
    """issue 12: the same requests with and without the access log and metrics, in one run."""
    import json

    run = smki(["bench", "access-log", "--requests", "200", "--rounds", "1", "--json"], smki_env(database_url))
    assert run.code == 0, run.err
    figures = json.loads(run.out)
    assert figures["metrics"] == "multiprocess" and figures["requests"] == 200
    assert all(figures[key] > 0 for key in ("bare_us", "logged_us", "metrics_us"))
    plain = smki(["bench", "access-log", "--requests", "200", "--rounds", "1", "--app", "asgi", "--in-process"],
                 smki_env(database_url))
    assert plain.code == 0, plain.err
    assert "asgi app, metrics in-process" in plain.out and "+ access log + metrics" in plain.out


def test_bench_devices_creates_its_schema_and_times_import_and_update(database_url: str) -> None:
    """issue 13: the device register bench runs on an empty database (it creates smki's schema)."""
    import json

    run = smki(["bench", "devices", "--count", "300", "--database-url", database_url], smki_env(database_url))
    assert run.code == 0, run.err
    figures = json.loads(run.out)
    # 300 rows can take under the figures' rounding (0.005 s): the times only need to be there
    assert figures["rows"] == 300 and figures["import_seconds"] >= 0 and figures["update_seconds"] >= 0
    assert figures["import_cpu_seconds"]["client"] >= 0


def test_the_bench_s_screen_off_stands_in_for_the_duplicate_key_screen() -> None:
    """``batch-cpu --screens`` swaps ``DeviceKeyScreen`` for a no-op: it must offer every method the
    issuance calls (a missing one failed the PostgreSQL bench only at run time)."""
    from smki.bench.batch_cpu import _screens_off
    from smki.services import device_issuance
    from smki.services.key_register import DeviceKeyScreen

    undo = _screens_off()
    try:
        stand_in = device_issuance.DeviceKeyScreen
    finally:
        undo()
    public = {name for name in vars(DeviceKeyScreen) if not name.startswith("_")} | {"__call__"}
    assert public <= set(dir(stand_in))
    # and is made as the issuance makes the real one (a keyword added there failed the bench at run time)
    assert inspect.signature(stand_in).parameters.keys() == inspect.signature(DeviceKeyScreen).parameters.keys()
    assert device_issuance.DeviceKeyScreen is DeviceKeyScreen


def test_bench_service_phases_runs_a_batch_through_the_service_and_reports_each_phase(database_url: str) -> None:
    """issue 15: parse, submit, the runner's issue, result rows and render of one batch, in process."""
    import json

    run = smki(["bench", "service-phases", "--csrs", "40", "--workers", "1", "--json"], smki_env(database_url))
    assert run.code == 0, run.err
    figures = json.loads(run.out)
    assert figures["csrs"] == 40 and figures["result_bytes"] > 40 * 400  # every CSR's certificate rendered
    assert figures["total_seconds"] > 0 and figures["share_of_openssl_limit"] > 0
    # Per-phase CPU of 40 CSRs can round to 0 (the workers' is read from /proc in 10 ms ticks): only its shape here.
    assert all(figures[key] >= 0 for key in ("parse_us", "submit_us", "issue_writer_us", "result_rows_us",
                                             "render_us", "workers_us", "database_us", "pool_warm_up_seconds",
                                             "result_streamed_seconds", "result_streamed_read_ahead_seconds"))


def test_the_http_bench_client_long_polls_until_completed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``wait_completed`` asks with ``?wait=`` (the server answers when the status changes), never
    sleeps between questions, stops at ``completed`` and fails on a rejected batch."""
    import json as json_lib

    from smki.bench import http as bench_http

    def client(states: list[str]) -> tuple[object, list[tuple[str, object]]]:
        asked: list[tuple[str, object]] = []

        class Client:
            def get(self, path: str, params: object = None) -> object:
                asked.append((path, params))
                return type("Answer", (), {"content": json_lib.dumps({"status": states[len(asked) - 1]}).encode()})()

        return Client(), asked

    def no_sleep(_seconds: float) -> None:
        raise AssertionError("the client slept between questions")

    monkeypatch.setattr(bench_http.time, "sleep", no_sleep)
    done, asked = client(["queued", "processing", "completed"])
    bench_http.wait_completed(done, 7)
    assert asked == [("/api/v1/device-batches/7", {"wait": bench_http.STATUS_WAIT_SECONDS})] * 3
    refused, _ = client(["pending", "rejected"])
    with pytest.raises(RuntimeError, match="rejected"):
        bench_http.wait_completed(refused, 8)


SQL_FORMS = ["in-use look-up, packed", "in-use look-up, plain", "per-Device count, packed", "per-Device count, plain",
             "key look-up, packed", "key look-up, plain", "key insert, packed", "key insert, one row",
             "round trip (SELECT 1)", "wide read, prepared", "wide read, parsed each time"]


@pytest.mark.parametrize("name", ["sql-forms", "pg-indexes", "store-size"])
def test_the_postgresql_benches_refuse_sqlite_in_one_line(name: str, tmp_path: Path) -> None:
    """Their --database-url is PostgreSQL's (sql-forms and pg-indexes measure what only it has; store-size
    keeps a SQLite store in each home): given SQLite, a usage error."""
    url = f"sqlite:///{tmp_path / 'smki.db'}"
    run = smki(["bench", name, "--database-url", url], smki_env(url))
    assert run.code == 2 and "PostgreSQL" in run.err and "Traceback" not in run.err


def _postgresql_bench(database_url: str, name: str, *options: str) -> dict[str, dict[str, Any]]:
    """A PostgreSQL-only bench's ``--json`` figures (skipped on the SQLite lane, whose refusal
    test_the_postgresql_benches_refuse_sqlite_in_one_line checks)."""
    import json

    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's (SQLite's refusal: test_the_postgresql_benches_refuse_sqlite_in_one_line)")
    run = smki(["bench", name, "--database-url", database_url, *options, "--json"], smki_env(database_url))
    assert run.code == 0, run.err
    figures: dict[str, dict[str, Any]] = json.loads(run.out)
    return figures


def test_bench_sql_forms_times_both_forms_of_each_single_csr_statement(database_url: str) -> None:
    """issue 15: the plain and packed form of every statement a single CSR makes, on PostgreSQL."""
    figures = _postgresql_bench(database_url, "sql-forms", "--rows", "300", "--runs", "5")
    assert list(figures) == SQL_FORMS
    assert all(f["wall_us"] > 0 and len(f["rounds_wall_us"]) == 2 and f["backend_cpu_us"] >= 0
               and f["client_cpu_us"] >= 0 for f in figures.values())


def test_bench_pg_indexes_times_the_table_without_each_of_its_five_secondary_indexes(database_url: str) -> None:
    """issue 15: every variant is measured on a table that really lacks its indexes (and has them all
    back afterwards)."""
    from smki.bench.pg_indexes import AS_IS, NONE_OF_THEM, SECONDARY

    figures = _postgresql_bench(database_url, "pg-indexes", "--rows", "3000", "--rounds", "2")
    assert list(figures) == [AS_IS, *(f"without {name}" for name in SECONDARY), NONE_OF_THEM]
    assert figures[AS_IS]["wall_vs_as_is_us"] == 0
    assert all(f["wall_us"] > 0 and len(f["rounds_wall_us"]) == 2 for f in figures.values())
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            indexes = set(conn.exec_driver_sql("SELECT indexname FROM pg_indexes WHERE tablename = 'certificates'")
                          .scalars())
            rows = conn.exec_driver_sql("SELECT count(*) FROM certificates").scalar_one()
    finally:
        engine.dispose()
    assert set(SECONDARY) <= indexes and rows == 3000  # the last variant's table, its indexes back


def test_bench_issue_starts_each_run_from_an_empty_database(database_url: str, tmp_path: Path) -> None:
    """Each run initialises a CA in the database it is given: a second run on the same URL (two
    ``--count`` values, or a rerun) once stopped at ``ca.exists``."""
    from smki.bench.issue import run_issue_benchmark

    for count in (20, 30):
        run = run_issue_benchmark(count, tmp_path, database_url, workers=1)
        assert run.count == run.issued == count
        if not database_url.startswith("postgresql"):
            assert run.autovacuums == 0  # SQLite has none


def test_bench_issue_runs_with_the_backend_as_the_cli_gives_it(database_url: str, tmp_path: Path) -> None:
    """``--backend`` is an enum choice: its member, written into the child's code by ``repr``, was
    ``<Backend.file: 'file'>``, and every ``smki bench issue`` failed with a SyntaxError."""
    from smki.bench.issue import run_issue_benchmark
    from smki.interfaces.cli.bench_cmd import Backend

    run = run_issue_benchmark(20, tmp_path, database_url, workers=1, backend=Backend.file)
    assert run.count == run.issued == 20


@pytest.mark.parametrize("name", ["postgres", "template1", ""])
def test_a_bench_never_drops_the_server_s_own_databases(name: str) -> None:
    from smki.bench.repository_scale import fresh_database
    from smki.errors import SmkiError

    with pytest.raises(SmkiError) as refused:
        fresh_database(f"postgresql+psycopg://postgres@127.0.0.1:1/{name}")  # refused before connecting
    assert refused.value.code == "bench.database-not-scratch"


def test_batch_cpu_ceiling_is_cores_over_cpu_per_certificate() -> None:
    """2 cores at 100 µs of CPU per certificate: at most 20,000 certs/s, 80% of a 25,000/s limit;
    60% of that limit is 15,000/s, which 2 cores reach at 133 µs per certificate."""
    from smki.bench.batch_cpu import ceiling

    line = ceiling(2, 100e-6, 25_000.0)
    assert "20,000 certs/s, 80% of the openssl limit (25,000 certs/s on 2 cores)" in line
    assert "60% would allow 133 µs per certificate (now 100)" in line


def test_batch_cpu_writer_profile_lists_own_cpu_per_certificate_costliest_first() -> None:
    """``--profile-writer``: a thread-CPU profile, each function's own time divided by the batch's
    certificates, the costliest first; a function that only waits costs (nearly) nothing."""
    import cProfile
    import re
    import time

    from smki.bench.batch_cpu import writer_profile

    def burn() -> int:
        return sum(i * i for i in range(300_000))

    def idle() -> None:
        time.sleep(0.2)

    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    burn()
    idle()
    profiler.disable()
    report = writer_profile(profiler, certificates=1_000, top=50).splitlines()
    assert report[0].startswith("the writer under cProfile: ")
    rows = [re.match(r"\s+([\d.]+) µs\s+([\d,]+) calls  (.+)$", line) for line in report[1:]]
    assert all(rows), report
    costs = [float(row[1]) for row in rows if row]
    assert costs == sorted(costs, reverse=True)
    by_name = {row[3]: float(row[1]) for row in rows if row}
    generator = next(name for name in by_name if "<genexpr>" in name)
    assert by_name[generator] > 10  # 300,000 steps over 1,000 certificates: well over 10 µs each
    sleep = next(name for name in by_name if "sleep" in name)
    assert by_name[sleep] < by_name[generator] / 10  # 200 ms asleep is not CPU


def test_batch_cpu_writer_phases_time_a_real_batch_and_put_everything_back(tmp_path: Path) -> None:
    """``--writer-phases``: each phase of the single writer gets the thread CPU of its calls (a
    generator's at every item it yields), a phase is never less than its parts, the report says what
    the parts leave over, and afterwards every replaced function is the original again."""
    import re

    from smki.bench.batch_cpu import _timed, _writer_phases, writer_phases
    from smki.bench.issue import BENCH_PASSPHRASE, prepare_csrs
    from smki.config import Settings
    from smki.services import device_issuance
    from smki.services.batch_sources import read_batch_source
    from smki.services.ca_admin import initialise_ca
    from smki.services.context import open_home

    targets = _writer_phases()
    originals = [getattr(owner, attribute) for _name, owner, attribute in targets]
    secret = BENCH_PASSPHRASE.encode()
    initialise_ca(Settings(home=tmp_path / "home"), secret, actor="bench")
    home = open_home(tmp_path / "home", secret)
    source = prepare_csrs(1_200, tmp_path)
    spent, undo = _timed(targets)
    try:
        summary = device_issuance.issue_device_batch(home, read_batch_source(source), actor="bench",
                                                     batch_ref="phases", workers=1)
    finally:
        undo()
        home.close()
    assert summary.issued == 1_200
    assert [getattr(owner, attribute) for _name, owner, attribute in targets] == originals
    cpu = {name.strip(): seconds for name, (seconds, _wall) in spent.items()}
    assert all(seconds > 0 for seconds in cpu.values()), cpu
    parts = ("certificates' insert", "key register's insert", "in-use certificates' look-up", "audit record")
    assert cpu["commits, in all"] >= sum(cpu[part] for part in parts)
    assert cpu["the writer, in all"] >= cpu["commits, in all"] + cpu["reading the source"]
    report = writer_phases(spent, summary.issued).splitlines()
    assert report[0].startswith("the writer's thread CPU per certificate, by phase")
    names = [re.match(r"\s+(.+?)\s{2,}-?[\d.]+ µs", line)[1] for line in report[1:]]  # type: ignore[index]
    assert names == ["the writer, in all", "reading the source", "screens (the key register's look-ups)",
                     "commits, in all", *parts, "the rest", "the rest"]


def test_batch_cpu_timed_generators_yield_what_they_did() -> None:
    from smki.bench.batch_cpu import _timed

    class Owner:
        @staticmethod
        def numbers(n: int) -> Iterator[int]:
            yield from range(n)

    spent, undo = _timed([("numbers", Owner, "numbers")])
    try:
        assert list(Owner.numbers(5)) == [0, 1, 2, 3, 4]
    finally:
        undo()
    assert spent["numbers"][1] > 0 and list(Owner.numbers(2)) == [0, 1]


@pytest.mark.parametrize("service", [False, True], ids=["issuance", "service"])
def test_batch_growth_issues_every_batch_into_each_store_in_turn(database_url: str, tmp_path: Path,
                                                                 service: bool) -> None:
    """issue 15: each store takes each batch, the order alternating by round; each row counts what
    the store held before it, and the bytes written (SQLite: by this process; PostgreSQL: its WAL).
    On SQLite each store is made with the page size it is named after, and smki's own is left as it
    was. Through the service, every batch is a stored job the batch runner issued in full."""
    import sqlite3

    from smki.bench import batch_growth
    from smki.store import engine as store_engine

    on_postgresql = database_url.startswith("postgresql")
    own_page_size = store_engine.SQLITE_PAGE_SIZE
    sizes = [] if on_postgresql else [4096, 16384]
    rows = batch_growth.run(tmp_path, 150, 2, sizes, database_url if on_postgresql else "", service)
    assert own_page_size == store_engine.SQLITE_PAGE_SIZE
    names = ["postgresql"] if on_postgresql else ["sqlite, 4 KiB pages", "sqlite, 16 KiB pages"]
    order = names + names[1:] + names[:1]
    assert [row.store for row in rows] == order
    assert [row.before for row in rows] == [0] * len(names) + [150] * len(names)
    assert all(row.issued == 150 and row.written_kib > 0 and row.limit > 0 and row.parent_us > 0 for row in rows)
    if not on_postgresql:
        for size in sizes:
            with sqlite3.connect(tmp_path / f"sqlite-{size}" / "smki.db") as db:
                assert db.execute("PRAGMA page_size").fetchone()[0] == size
                jobs = db.execute("SELECT count(*), sum(issued) FROM batch_jobs WHERE status = 'COMPLETED'").fetchone()
                assert tuple(jobs) == ((2, 300) if service else (0, None))


@pytest.mark.parametrize(("options", "said"), [
    (["--page-size", "1000"], "power of two"),
    (["--count", "0"], "at least 1"),
    (["--through", "service", "--count", "50001"], "at most 50,000"),
    (["--page-size", "4096", "--database-url", "postgresql+psycopg://postgres@127.0.0.1:1/scratch"], "SQLite's"),
])
def test_batch_growth_refuses_bad_options_in_one_line(options: list[str], said: str) -> None:
    run = smki(["bench", "batch-growth", *options], smki_env(""))
    assert run.code == 2 and said in run.err and "Traceback" not in run.err


def test_bench_repository_looks_up_populated_records_at_each_size(tmp_path: Path) -> None:
    """The serials populate draws are random: the look-ups read existing ones back, at every size,
    and on a store an earlier run left (``--existing``)."""
    url = f"sqlite:///{tmp_path / 'repository.db'}"
    rows_file = tmp_path / "rows.jsonl"
    env = smki_env("")
    run = smki(["bench", "repository", "--records", "300", "--records", "500", "--revoked", "3",
                "--lookups", "30", "--no-extract", "--workers", "0", "--database-url", url,
                "--json", str(rows_file)], env)
    assert run.code == 0, run.err
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert [row["records"] for row in rows] == [300, 500]
    assert all(row["serial_p50_ms"] > 0 and row["device_p50_ms"] > 0 and row["crl_entries"] == 3 for row in rows)
    assert all(row["populate_per_second"] > 0 for row in rows)
    again = smki(["bench", "repository", "--existing", "--lookups", "20", "--no-extract", "--database-url", url], env)
    assert again.code == 0, again.err
    assert json.loads(again.out.strip().splitlines()[-1])["records"] == 500


def test_bench_store_size_times_each_store_in_turn(database_url: str) -> None:
    """One store per size, each filled to its size; every kind of request answered by each. On
    PostgreSQL the larger size's database is made beside the URL's and dropped at the end."""
    if not database_url.startswith("postgresql"):
        database_url = ""  # SQLite: each store in its own home (a SQLite --database-url is refused)
    options = ["--database-url", database_url] if database_url else []
    run = smki(["bench", "store-size", "--records", "60", "--records", "120", "--requests", "6",
                "--warm-up", "2", *options], smki_env(database_url))
    assert run.code == 0, run.err
    report = json.loads(run.out)
    assert [row["records"] for row in report["rows"]] == [60, 120]
    for row in report["rows"]:
        assert all(row[f"{kind}_p50_ms"] > 0 and row[f"{kind}_cpu_ms"] > 0 for kind in ("adhoc", "json", "results"))
    assert report["rows"][0]["adhoc_vs_smallest"] == 1.0
    if database_url:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        name = make_url(database_url).database
        engine = create_engine(database_url)
        try:
            with engine.connect() as conn:
                left = set(conn.exec_driver_sql("SELECT datname FROM pg_database").scalars())
        finally:
            engine.dispose()
        assert name in left and f"{name}_1" not in left
