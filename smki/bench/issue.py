"""Benchmarks that anyone can rerun: ``smki bench issue --count 10000 --count 100000``.

Each run issues a batch end to end in a fresh home — parse, validate, sign, persist, audit — in a
child process, so its peak memory (the parent's and the largest worker's) is measured cleanly.
In the same run, ``openssl speed ecdsap256`` on all cores gives the machine's raw limit: one
verify (the CSR's proof of possession) plus one sign per certificate. Figures are ratios within
one run because these machines are noisy.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from smki.ca.devcsr import write_device_csrs

if TYPE_CHECKING:
    from sqlalchemy import Engine

BENCH_PASSPHRASE = "bench-passphrase-not-secret"


@dataclass(frozen=True)
class IssueRun:
    count: int
    issued: int
    seconds: float
    certs_per_second: float
    parent_peak_mib: float
    worker_peak_mib: float
    #: PostgreSQL: autovacuum and autoanalyze passes over the store's tables that ended during the
    #: run, or were still running at its end. A run starts from an empty database, whose thresholds
    #: 100,000 inserts pass: those passes take the same cores as the batch (docs/performance.md).
    autovacuums: int = 0


_AUTOVACUUMS = (
    "SELECT (SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) FROM pg_stat_user_tables), "
    "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
    "AND datname = current_database())")


def _autovacuums(engine: Engine) -> tuple[int, int]:
    """(passes ended so far, passes running now) over this database's tables; (0, 0) on SQLite."""
    if engine.dialect.name != "postgresql":
        return 0, 0
    from sqlalchemy import text

    with engine.connect() as conn:
        ended, running = conn.execute(text(_AUTOVACUUMS)).one()
    return int(ended), int(running)


def openssl_limit(cores: int, seconds: int = 3) -> tuple[float, float, float]:
    """(sign/s, verify/s, certs/s) for ECDSA P-256 on ``cores`` cores, from ``openssl speed``."""
    output = subprocess.run(
        ["openssl", "speed", "-multi", str(cores), "-seconds", str(seconds), "ecdsap256"],
        capture_output=True, text=True, check=True,
    ).stdout
    match = re.search(r"256 bits ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", output)
    if not match:
        raise RuntimeError(f"cannot read openssl speed output:\n{output}")
    sign, verify = float(match.group(1)), float(match.group(2))
    return sign, verify, 1.0 / (1.0 / sign + 1.0 / verify)


def _child(source: Path, home: Path, database_url: str, count: int, workers: int | None,
           backend: str = "file", module: str = "", token: str = "") -> None:
    """Runs in the child process: set up a home, issue the batch, print a JSON line of figures."""
    import threading

    from smki.bench._procstat import descendants, peak_rss_mib
    from smki.config import Settings
    from smki.services.batch_sources import read_batch_source
    from smki.services.ca_admin import initialise_ca
    from smki.services.context import open_home
    from smki.services.device_issuance import issue_device_batch

    peaks: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:  # pool workers are the forkserver's children, so RUSAGE_CHILDREN misses them
        while not stop.wait(0.1):
            for pid in descendants(os.getpid()):
                peaks[pid] = max(peaks.get(pid, 0.0), peak_rss_mib(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    secret = BENCH_PASSPHRASE.encode()
    if backend == "pkcs11":
        secret = os.environ["SMKI_PKCS11_PIN"].encode()
    initialise_ca(Settings(home=home, database_url=database_url, key_backend=backend, pkcs11_module=module,
                           pkcs11_token=token), secret, actor="bench")
    opened = open_home(home, secret)
    vacuumed_before, _ = _autovacuums(opened.store.engine)
    started = time.perf_counter()
    summary = issue_device_batch(opened, read_batch_source(source), actor="bench", batch_ref="bench",
                                 workers=workers)
    seconds = time.perf_counter() - started
    vacuumed_after, running = _autovacuums(opened.store.engine)
    opened.close()
    stop.set()
    sampler.join()
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_peak = max(peaks.values(), default=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    print(json.dumps(asdict(IssueRun(count, summary.issued, seconds, summary.issued / seconds,
                                     self_peak, child_peak, vacuumed_after - vacuumed_before + running))))


SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def softhsm_token(workdir: Path, label: str) -> dict[str, str]:
    """A throw-away SoftHSM2 token under ``workdir`` (for the PKCS#11 run); returns the env to reach it."""
    directory = workdir / f"softhsm-{label}"
    (directory / "tokens").mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {"SOFTHSM2_CONF": str(conf), "SMKI_PKCS11_PIN": "bench-pin-0000"}
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", env["SMKI_PKCS11_PIN"],
                    "--so-pin", "bench-so-pin-0000"], check=True, capture_output=True, env={**os.environ, **env})
    return env


def prepare_csrs(count: int, workdir: Path) -> Path:
    """The multi-PEM file of ``count`` Device CSRs the runs read (written once per work directory)."""
    source = workdir / f"csrs-{count}.pem"
    if not source.exists():
        write_device_csrs(source, count)
    return source


def run_issue_benchmark(count: int, workdir: Path, database_url: str = "", workers: int | None = None,
                        backend: str = "file") -> IssueRun:
    source = prepare_csrs(count, workdir)
    if database_url:  # each run initialises a CA in the database it is given: start it empty
        from smki.bench.repository_scale import fresh_database

        fresh_database(database_url)
    home = Path(tempfile.mkdtemp(prefix=f"home-{count}-{backend}-", dir=workdir))
    env = dict(os.environ, SMKI_KEY_PASSPHRASE=BENCH_PASSPHRASE)
    module = token = ""
    if backend == "pkcs11":
        token = home.name
        module = SOFTHSM_MODULE
        env.update(softhsm_token(workdir, token))
    code = (
        "import sys; from pathlib import Path; from smki.bench.issue import _child; "
        f"_child(Path({str(source)!r}), Path({str(home)!r}), {database_url!r}, {count}, {workers!r}, "
        f"{str(backend)!r}, {module!r}, {token!r})"  # str(): a StrEnum member's repr is no Python literal
    )
    env.pop("SMKI_DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{result.stderr[-4000:]}")
    return IssueRun(**json.loads(result.stdout.strip().splitlines()[-1]))
