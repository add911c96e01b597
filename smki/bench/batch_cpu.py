"""Where a batch's CPU goes: the single writer against the signing workers, and the workers'
crypto against the rest of their work.

    smki bench batch-cpu [--count 50000]

1. A batch of ``--count`` Device CSRs (multi-PEM, file key backend, SQLite or ``--database-url``) through a warm
   ``SigningPool``: wall time, and the CPU seconds of the parent (the writer: reading the source,
   SQLite, audit, IPC) and of the workers (read from ``/proc`` before and after), per certificate.
   With it, the batch's *ceiling*: the rate that CPU per certificate would give with every core
   busy all the time, as a share of the openssl limit (measured first, as ``smki bench issue``
   does), and the CPU per certificate that issue 15's 60% would allow.
2. On one core, for a 500-CSR chunk: the two ECDSA operations alone (verify + sign over SHA-256
   digests, the CSRs' keys loaded beforehand, as ``openssl speed`` measures them); the same with each
   key given as its CSR's point, as the workers verify it (``smki.ca.p256_verify``: the system's
   libcrypto, or cryptography), and through a cryptography key object made from each point; and the
   worker's whole ``_issue_items`` (decode, check, build, sign), per certificate, best of 15 rounds
   each, interleaved.

With ``--screens``, instead: the batch's cost with and without the screens that run between the
workers' checking and signing passes, as ratios within one run — the duplicate-key screen (issue 13
point 5: one register look-up per chunk, the fingerprints recorded with the certificates) switched
off, and the Eligible Subscriber screen (point 2) switched on, with every Device of the batch in the
device register. Each configuration issues the same CSRs into a fresh home (and database, with
``--database-url``), ``--rounds`` times, interleaved; the best round of each is compared.

    smki bench batch-cpu --count 50000 --screens [--rounds 2] [--database-url postgresql+psycopg://…]

Switching the duplicate-key screen off is for this measurement only: smki has no such setting.

With ``--profile-writer N``, the batch of step 1 runs with the writer's thread under ``cProfile``
(the signing workers are not profiled) and the N functions with the most time of their own are
listed, in µs of the thread's CPU per certificate (not wall time: waiting for the workers is not
counted): where the single writer's share goes (SQLite statements, commits,
the duplicate-key look-up, reading the source, IPC). ``cProfile`` slows Python code more than C
code, so compare the lines with each other, and not the total with an unprofiled run.

    smki bench batch-cpu --count 100000 --profile-writer 25

With ``--writer-phases``, the batch of step 1 runs with the writer's phases timed instead, each in
the thread CPU of its own calls (no profiler, so the split is the unprofiled writer's): reading the
source, the key register's look-ups (the screens), the commits and, within them, the certificates'
insert, the key register's insert, the in-use look-up and the audit record; after each phase's
parts, what they leave over (the commit's own Python, the transaction and SQLite's commit).

    smki bench batch-cpu --count 100000 --writer-phases

Figures from a loaded machine are not comparable between runs; compare the lines of one run.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import inspect
import os
import pstats
import resource
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from smki.bench._procstat import cpu_seconds
from smki.bench.issue import BENCH_PASSPHRASE, openssl_limit, prepare_csrs
from smki.ca import p256_verify
from smki.ca.devcsr import device_csr_stream
from smki.ca.p256_verify import p256_signature_valid
from smki.config import Settings
from smki.domain import CertKind
from smki.services import device_issuance
from smki.services.batch_sources import read_batch_source
from smki.services.ca_admin import initialise_ca
from smki.services.context import Home, open_home

if TYPE_CHECKING:
    from smki.services.key_register import Screen


class Split(NamedTuple):
    """One batch through a warm pool: wall seconds and the CPU seconds of each side."""

    wall: float
    parent: float  # this process: the writer and the pool's threads
    workers: float
    issued: int
    database: float  # PostgreSQL's server processes for this database (0 on SQLite)


def _cpu_of(pids: Iterable[int]) -> float:
    """The CPU seconds of ``pids`` so far (a process that ended counts nothing: it can no longer be read)."""
    return sum(cpu_seconds(pid) for pid in pids)


def pool_split(home: Home, work: Path, count: int, screen: Screen | None = None,
               quiet: bool = False, profile: int = 0) -> Split:
    """Issue ``count`` CSRs through a warm pool, timing each side's CPU (on PostgreSQL, the
    database's too: it runs on the same cores). With ``profile``, the writer's thread runs under
    ``cProfile`` and its top functions are listed."""
    from smki.bench.http import backend_pids

    source = prepare_csrs(count, work)
    url = home.settings.resolved_database_url if home.store.engine.dialect.name == "postgresql" else ""
    pool = device_issuance.SigningPool.for_home(home)
    try:
        pool.warm()
        pids = list(pool._executor._processes)  # the live worker processes
        workers_before = [cpu_seconds(pid) for pid in pids]
        database_before = _cpu_of(backend_pids(url))
        before = resource.getrusage(resource.RUSAGE_SELF)
        profiler = cProfile.Profile(time.thread_time) if profile else None  # CPU, not waiting
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        summary = device_issuance.issue_device_batch(home, read_batch_source(source), actor="bench",
                                                     batch_ref="cpu", pool=pool, screen=screen)
        if profiler is not None:
            profiler.disable()
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        workers = sum(cpu_seconds(pid) - b for pid, b in zip(pids, workers_before, strict=True))
        database = _cpu_of(backend_pids(url)) - database_before  # a connection made during the batch: all of it
    finally:
        pool.close()
    parent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    n = summary.issued
    split = Split(wall, parent, workers, n, database)
    if quiet:
        return split
    on_database = f", database {database / n * 1e6:.0f} µs" if url else ""
    print(f"batch of {n:,} with a warm pool: {wall:.2f} s, {n / wall:,.0f} certs/s; CPU per certificate: "
          f"parent {parent / n * 1e6:.0f} µs, workers {workers / n * 1e6:.0f} µs{on_database}, "
          f"{(parent + workers + database) / wall:.2f} cores busy")
    if profiler is not None:
        print(writer_profile(profiler, n, profile))
    return split


def writer_profile(profiler: cProfile.Profile, certificates: int, top: int) -> str:
    """The ``top`` functions by time of their own in a ``cProfile`` of the writer, per certificate."""
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}
    rows = sorted(((own, calls, _where(key)) for key, (_cc, calls, own, _cum, _callers) in stats.items()),
                  reverse=True)[:top]
    total = sum(own for _cc, _nc, own, _cum, _callers in stats.values())
    lines = [f"the writer under cProfile: {total / certificates * 1e6:.1f} µs per certificate in all; "
             f"the top {len(rows)} by own time:"]
    lines += [f"  {own / certificates * 1e6:7.2f} µs  {calls:>9,} calls  {where}" for own, calls, where in rows]
    return "\n".join(lines)


def _where(key: tuple[str, int, str]) -> str:
    """A profile entry's name: ``module.py:line(function)``, or the built-in's own name."""
    filename, line, name = key
    if filename == "~":
        return name
    return f"{Path(filename).name}:{line}({name})"


#: The in-process goal of issue 15: a share of the openssl limit at 100,000 CSRs.
GOAL_SHARE = 0.60


def ceiling(cores: int, cpu_per_certificate: float, limit: float) -> str:
    """The most a batch could reach at this CPU per certificate, with every core busy all the time
    (no start, no tail, no idle core), against the openssl limit; and the CPU per certificate the
    goal's share would allow. A measured run is below its ceiling: this says how far CPU alone is
    from the goal, whatever else is tuned."""
    best = cores / cpu_per_certificate
    allowed = cores / (GOAL_SHARE * limit)
    return (f"ceiling at this CPU per certificate, every core busy: {best:,.0f} certs/s, "
            f"{best / limit:.0%} of the openssl limit ({limit:,.0f} certs/s on {cores} cores); "
            f"{GOAL_SHARE:.0%} would allow {allowed * 1e6:.0f} µs per certificate "
            f"(now {cpu_per_certificate * 1e6:.0f})")


def one_core_split(home: Home) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    issuer = home.ca_certificate(CertKind.DEVICE_CA).public_bytes(Encoding.DER)
    assert home.secret is not None
    factory = device_issuance._make_factory(home.settings, home.secret, issuer)
    ders = [der for _d, _u, der in device_csr_stream(500, first_device=0x00DB000000000000, keys=64)]
    csrs = [x509.load_der_x509_csr(der) for der in ders]
    items = [(i, str(i), csr.public_bytes(Encoding.PEM)) for i, csr in enumerate(csrs)]
    keys = [cast(ec.EllipticCurvePublicKey, csr.public_key()) for csr in csrs]
    prehashed = ec.ECDSA(Prehashed(hashes.SHA256()))
    ca_key = ec.generate_private_key(ec.SECP256R1())

    digests = [hashlib.sha256(csr.tbs_certrequest_bytes).digest() for csr in csrs]
    signatures = [csr.signature for csr in csrs]
    points = [key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint) for key in keys]
    curve = ec.SECP256R1()

    # Each verifies the chunk, then signs it, as a worker's checking and signing passes do (one
    # library's code and tables in the caches at a time), over digests taken beforehand.
    def sign_all() -> None:
        for digest in digests:
            ca_key.sign(digest, prehashed)

    def crypto_only() -> None:
        for key, signature, digest in zip(keys, signatures, digests, strict=True):
            key.verify(signature, digest, prehashed)
        sign_all()

    def crypto_from_points() -> None:  # a new key object from each CSR's point
        for point, signature, digest in zip(points, signatures, digests, strict=True):
            ec.EllipticCurvePublicKey.from_encoded_point(curve, point).verify(signature, digest, prehashed)
        sign_all()

    def crypto_as_workers() -> None:  # as a worker does: the point and signature to p256_signature_valid
        for point, signature, digest in zip(points, signatures, digests, strict=True):
            if not p256_signature_valid(point, signature, digest):
                raise AssertionError("a benchmark CSR's signature did not verify")
        sign_all()

    def whole_worker() -> None:
        device_issuance._issue_items(factory, items)

    works = {"crypto": crypto_only, "key objects": crypto_from_points, "as workers": crypto_as_workers,
             "worker": whole_worker}
    best = dict.fromkeys(works, float("inf"))
    for _ in range(15):
        for name, work in works.items():
            started = time.process_time()
            work()
            best[name] = min(best[name], time.process_time() - started)
    crypto, key_objects, as_workers, worker = (best[name] / 500 * 1e6 for name in works)
    print(f"one core, per certificate: verify + sign {crypto:.0f} µs with the keys loaded beforehand; with each "
          f"CSR's key given as its point, {as_workers:.0f} µs as the workers verify it ({p256_verify.engine()}), "
          f"{key_objects:.0f} µs through cryptography's key objects; the worker's whole _issue_items "
          f"{worker:.0f} µs (the rest: {worker - as_workers:.0f} µs)")


def _screens_off() -> Callable[[], None]:
    """Switch the duplicate-key screen off in this process (for this benchmark only); returns the undo."""
    import contextlib

    from smki.services import key_register

    class NoScreen:
        def __init__(self, home: Home, *, known: object = None) -> None:  # DeviceKeyScreen's signature
            del home, known

        def __call__(self, entries: list[key_register.Entry]) -> list[key_register.Entry]:
            return entries

        def committed(self, _chunks: int) -> None:
            pass

        def held(self) -> contextlib.nullcontext[None]:
            return contextlib.nullcontext()

    names = ("DeviceKeyScreen", "record_device_keys")
    saved = [getattr(device_issuance, name) for name in names]
    setattr(device_issuance, names[0], NoScreen)
    setattr(device_issuance, names[1], lambda _tx, _pairs: None)

    def undo() -> None:
        for name, value in zip(names, saved, strict=True):
            setattr(device_issuance, name, value)

    return undo


def _register_devices(home: Home, count: int) -> None:
    """Every Device of the batch in the device register (pending: any approved subscriber may ask),
    so the eligibility screen finds an entry for each CSR rather than none."""
    from smki.services.device_register import import_rows

    first = 0x00DB000000000000  # smki.bench.issue's CSRs: DS and KA for consecutive Device IDs
    rows = ((n, {"device_id": f"{first + n:016x}", "device_type": "ESME", "smi_status": "pending"})
            for n in range((count + 1) // 2))
    import_rows(home, rows, actor="bench")


def _timed(targets: Sequence[tuple[str, object, str]]) -> tuple[dict[str, list[float]], Callable[[], None]]:
    """Time each ``(name, owner, attribute)`` call in this process — thread CPU and wall seconds,
    summed per name — by replacing ``owner.attribute`` (for this benchmark only); returns the sums
    and the undo. A generator function's result is timed at each item it yields.

    Why not cProfile: it slows Python code several times more than the C it calls (SQLite), so its
    split of the writer's time is not the writer's; thread CPU around a few calls costs next to nothing."""
    spent = {name: [0.0, 0.0] for name, _owner, _attribute in targets}
    originals = [(owner, attribute, getattr(owner, attribute)) for _name, owner, attribute in targets]

    def timed(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            cpu, wall = time.thread_time(), time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                spent[name][0] += time.thread_time() - cpu
                spent[name][1] += time.perf_counter() - wall
        return run

    def timed_items(name: str, call: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def run(*args: Any, **kwargs: Any) -> Iterator[Any]:
            items = timed(name, call)(*args, **kwargs)
            step = timed(name, next)
            while (item := step(items, _END)) is not _END:
                yield item
        return run

    for (name, owner, attribute), (_owner, _attribute, original) in zip(targets, originals, strict=True):
        wrap = timed_items if inspect.isgeneratorfunction(original) else timed
        setattr(owner, attribute, wrap(name, original))

    def undo() -> None:
        for owner, attribute, original in originals:
            setattr(owner, attribute, original)

    return spent, undo


_END = object()


def _timed_key_register() -> tuple[dict[str, list[float]], Callable[[], None]]:
    """Time the writer's own duplicate-key work (the screen's look-ups, the register's insert).

    Why: on a shared machine the parent's CPU moves by more between runs than the screen costs, so
    on-against-off cannot show it; timing the two calls themselves can."""
    from smki.services import key_register

    # by name: the issuance module imports record_device_keys, it does not export it
    return _timed([("screen", key_register.DeviceKeyScreen, "__call__"),
                   ("insert", device_issuance, "record_device_keys")])


#: The single writer's phases ``--writer-phases`` times: (name, owner, attribute). Indented names
#: are parts of the unindented one above them.
def _writer_phases() -> list[tuple[str, object, str]]:
    from smki.services import key_register
    from smki.store.transaction import Transaction

    return [
        ("the writer, in all", device_issuance, "issue_device_batch"),
        ("  reading the source", device_issuance, "_chunks"),
        ("  screens (the key register's look-ups)", key_register.DeviceKeyScreen, "__call__"),
        ("  commits, in all", device_issuance, "_commit_chunks"),
        ("    certificates' insert", Transaction, "copy_certificates"),
        ("    key register's insert", device_issuance, "record_device_keys"),
        ("    in-use certificates' look-up", Transaction, "retire_in_use_device_certificates"),
        ("    audit record", Transaction, "append_audit"),
    ]


def writer_phases(spent: dict[str, list[float]], certificates: int) -> str:
    """The writer's thread CPU per certificate by phase; after each phase's parts, what they leave over."""
    def depth(name: str) -> int:
        return len(name) - len(name.lstrip())

    def per(seconds: float) -> float:
        return seconds / certificates * 1e6

    names = list(spent)
    lines = ["the writer's thread CPU per certificate, by phase (no profiler; wall in brackets):"]
    pending: list[tuple[int, str]] = []  # (depth, line) of "the rest", printed after the phase's last part
    for position, name in enumerate(names):
        while pending and pending[-1][0] >= depth(name):
            lines.append(pending.pop()[1])
        cpu, wall = spent[name]
        lines.append(f"  {name:<42} {per(cpu):6.2f} µs ({per(wall):6.2f})")
        parts = []
        for other in names[position + 1:]:
            if depth(other) <= depth(name):
                break
            if depth(other) == depth(name) + 2:
                parts.append(other)
        if parts:
            rest = cpu - sum(spent[part][0] for part in parts)
            pending.append((depth(name), f"  {' ' * (depth(name) + 2) + 'the rest':<42} {per(rest):6.2f} µs"))
    lines += [line for _depth, line in reversed(pending)]
    return "\n".join(lines)


def screens(work: Path, count: int, rounds: int, database_url: str) -> None:
    """The screens' cost, as ratios within one run (see the module's docstring)."""
    from smki.bench.repository_scale import fresh_database
    from smki.services.eligibility import eligibility_screen

    secret = BENCH_PASSPHRASE.encode()
    prepare_csrs(count, work)
    configurations = ("duplicate keys on (default)", "duplicate keys off", "eligibility on, Devices registered")
    best: dict[str, Split] = {}
    register = ""
    for number in range(rounds):
        turn = number % len(configurations)  # each round starts with another: none always runs first
        for name in configurations[turn:] + configurations[:turn]:
            if database_url:
                fresh_database(database_url)
            home_dir = work / f"home-{number}-{configurations.index(name)}"
            initialise_ca(Settings(home=home_dir, database_url=database_url), secret, actor="bench")
            home = open_home(home_dir, secret)
            undo = _screens_off() if name == "duplicate keys off" else None
            spent: dict[str, list[float]] | None = None
            if number == 0 and name == configurations[0]:
                spent, undo = _timed_key_register()
            try:
                screen = None
                if name.startswith("eligibility"):
                    _register_devices(home, count)
                    screen = eligibility_screen(home, "bench-party")
                run = pool_split(home, work, count, screen, quiet=True)
            finally:
                if undo is not None:
                    undo()
                home.close()
            wall, parent, workers, n, _database = run
            print(f"  round {number + 1}, {name}: {wall:.2f} s, {n / wall:,.0f} certs/s; parent "
                  f"{parent / n * 1e6:.1f} µs, workers {workers / n * 1e6:.1f} µs per certificate", flush=True)
            if spent is not None:
                (screen_cpu, screen_wall), (insert_cpu, insert_wall) = spent["screen"], spent["insert"]
                register = (f"the writer's duplicate-key work, per certificate: screen {screen_cpu / n * 1e6:.2f} "
                            f"µs CPU ({screen_wall / n * 1e6:.2f} µs wall), insert {insert_cpu / n * 1e6:.2f}"
                            f" µs CPU ({insert_wall / n * 1e6:.2f} µs wall)")
                print(f"    {register}", flush=True)
            if name not in best or wall < best[name][0]:
                best[name] = run
    base = best[configurations[0]]
    store = "PostgreSQL" if database_url else "SQLite"
    print(f"{count:,} CSRs on {store}, best of {rounds} round(s) each (1-minute load average "
          f"{os.getloadavg()[0]:.2f}):")
    for name in configurations:
        wall, parent, workers, n, _database = best[name]
        print(f"  {name}: {n / wall:,.0f} certs/s (time {wall / base[0]:.3f} of the default's); parent "
              f"{parent / n * 1e6:.1f} µs ({parent / n * 1e6 - base[1] / base[3] * 1e6:+.1f}), workers "
              f"{workers / n * 1e6:.1f} µs per certificate")
    print(f"  round 1, {register}")
    off, eligible = best["duplicate keys off"], best[configurations[2]]

    def cpu(run: Split) -> float:
        return (run[1] + run[2]) / run[3]  # parent + workers, per certificate

    parent_extra = (base[1] / base[3] - off[1] / off[3]) * 1e6
    print(f"the duplicate-key screen costs {(base[0] / off[0] - 1) * 100:.1f}% of the batch's time, "
          f"{(cpu(base) / cpu(off) - 1) * 100:.1f}% of its CPU (parent {parent_extra:+.1f} µs per certificate); "
          f"the eligibility screen {(eligible[0] / base[0] - 1) * 100:.1f}% of the time, "
          f"{(cpu(eligible) / cpu(base) - 1) * 100:.1f}% of the CPU (parent "
          f"{(eligible[1] / eligible[3] - base[1] / base[3]) * 1e6:+.1f} µs). On a loaded machine the CPU figures, "
          "not the times, are the ones to compare.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--screens", action="store_true",
                        help="the duplicate-key and eligibility screens' cost, on against off, in one run")
    parser.add_argument("--rounds", type=int, default=2, help="with --screens: runs of each configuration")
    parser.add_argument("--database-url", default="",
                        help="a scratch PostgreSQL database to drop and re-create (for each run with --screens)")
    parser.add_argument("--profile-writer", type=int, default=0, metavar="N",
                        help="run the batch with the writer under cProfile and list its N costliest functions")
    parser.add_argument("--writer-phases", action="store_true",
                        help="time the writer's phases (reading, screens, commits and their parts) in thread CPU")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="smki-batch-cpu-") as tmp:
        work = Path(tmp)
        if args.screens:
            screens(work, args.count, args.rounds, args.database_url)
            return
        secret = BENCH_PASSPHRASE.encode()
        if args.database_url:
            from smki.bench.repository_scale import fresh_database

            fresh_database(args.database_url)
        initialise_ca(Settings(home=work / "home", database_url=args.database_url), secret, actor="bench")
        home = open_home(work / "home", secret)
        try:
            cores = os.cpu_count() or 1
            limit = openssl_limit(cores)[2]
            spent, undo = _timed(_writer_phases()) if args.writer_phases else (None, None)
            try:
                split = pool_split(home, work, args.count, profile=args.profile_writer)
            finally:
                if undo is not None:
                    undo()
            if spent is not None:
                print(writer_phases(spent, split.issued))
            print(ceiling(cores, (split.parent + split.workers + split.database) / split.issued, limit))
            one_core_split(home)
        finally:
            home.close()


if __name__ == "__main__":
    main()
