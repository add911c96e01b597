"""Where a batch's CPU goes: the single writer against the signing workers, and the workers'
crypto against the rest of their work.

    smki bench batch-cpu [--count 50000]

1. A batch of ``--count`` Device CSRs (multi-PEM, file key backend, SQLite) through a warm
   ``SigningPool``: wall time, and the CPU seconds of the parent (the writer: reading the source,
   SQLite, audit, IPC) and of the workers (read from ``/proc`` before and after), per certificate.
2. On one core, for a 500-CSR chunk: the two ECDSA operations alone (verify + sign over SHA-256
   digests) against the worker's whole ``_issue_items`` (decode, check, build, sign), per
   certificate, best of 15 rounds each, interleaved.

Figures from a loaded machine are not comparable between runs; compare the lines of one run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding

from smki.bench.issue import BENCH_PASSPHRASE, prepare_csrs
from smki.ca.devcsr import device_csr_stream
from smki.config import Settings
from smki.domain import CertKind
from smki.services import device_issuance
from smki.services.batch_sources import read_batch_source
from smki.services.ca_admin import initialise_ca
from smki.services.context import Home, open_home


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pool_split(home: Home, work: Path, count: int) -> None:
    source = prepare_csrs(count, work)
    pool = device_issuance.SigningPool.for_home(home)
    try:
        pool.warm()
        pids = list(pool._executor._processes)  # the live worker processes
        workers_before = [_cpu_seconds(pid) for pid in pids]
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        summary = device_issuance.issue_device_batch(home, read_batch_source(source), actor="bench",
                                                     batch_ref="cpu", pool=pool)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        workers = sum(_cpu_seconds(pid) - b for pid, b in zip(pids, workers_before, strict=True))
    finally:
        pool.close()
    parent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    n = summary.issued
    print(f"batch of {n:,} with a warm pool: {wall:.2f} s, {n / wall:,.0f} certs/s; CPU per certificate: "
          f"parent {parent / n * 1e6:.0f} µs, workers {workers / n * 1e6:.0f} µs, "
          f"{(parent + workers) / wall:.2f} cores busy")


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

    def crypto_only() -> None:
        for csr, key in zip(csrs, keys, strict=True):
            digest = hashlib.sha256(csr.tbs_certrequest_bytes).digest()
            key.verify(csr.signature, digest, prehashed)
            ca_key.sign(digest, prehashed)

    def whole_worker() -> None:
        device_issuance._issue_items(factory, items)

    best = {"crypto": float("inf"), "worker": float("inf")}
    for _ in range(15):
        for name, work in (("crypto", crypto_only), ("worker", whole_worker)):
            started = time.process_time()
            work()
            best[name] = min(best[name], time.process_time() - started)
    crypto, worker = best["crypto"] / 500 * 1e6, best["worker"] / 500 * 1e6
    print(f"one core, per certificate: verify + sign {crypto:.0f} µs; the worker's whole _issue_items "
          f"{worker:.0f} µs (the rest: {worker - crypto:.0f} µs)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=50_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="smki-batch-cpu-") as tmp:
        work = Path(tmp)
        secret = BENCH_PASSPHRASE.encode()
        initialise_ca(Settings(home=work / "home"), secret, actor="bench")
        home = open_home(work / "home", secret)
        try:
            pool_split(home, work, args.count)
            one_core_split(home)
        finally:
            home.close()


if __name__ == "__main__":
    main()
