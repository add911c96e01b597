"""Signatures per second: the file key backend beside PKCS#11 on a throw-away SoftHSM2 token.

    smki bench hsm [--seconds 2] [--repeat 3] [--processes 1,2] [--threads 1] [--json]

Both backends are measured in the same run, on the same machine, the way batch issuance uses
them: each worker is a forkserver process that opens its own backend with ``open_backend`` (the
token's login and session pool are per process), waits for the others, then signs
``--payload`` bytes (about one TBSCertificate) for ``--seconds``. PKCS#11 is measured twice:
``pkcs11`` as configured by default (each session signs with its own session-object copy of the
key, ``pkcs11-session-keys = true``) and ``pkcs11 (token object)`` signing with the token object
itself (``pkcs11-session-keys = false``). A row is the total over its workers, best of
``--repeat`` interleaved rounds; "vs file" is the row's rate ÷ the file backend's at the same
process count.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing.synchronize import Barrier
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # measure this checkout's smki

from smki.config import Settings
from smki.keys import open_backend
from smki.keys.pkcs11 import Pkcs11KeyBackend

MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/local/lib/softhsm/libsofthsm2.so")
LABEL = "bench-ca"
FILE_SECRET = b"benchmark passphrase"
PIN = b"bench-pin-0000"

_barrier: Barrier | None = None


def _init_worker(barrier: Barrier) -> None:
    global _barrier
    _barrier = barrier


def _worker(settings: Settings, secret: bytes, seconds: float, threads: int, payload: int) -> int:
    """One batch worker: open the backend here, sign for ``seconds`` from ``threads`` threads."""
    backend = open_backend(settings, secret)
    signer = backend.signer(LABEL)
    data = os.urandom(payload)
    signer.sign(data)  # warm: login, session, key handle
    counts = [0] * threads
    assert _barrier is not None
    _barrier.wait(timeout=120)
    deadline = time.perf_counter() + seconds

    def run(slot: int) -> None:
        done = 0
        while time.perf_counter() < deadline:
            signer.sign(data)
            done += 1
        counts[slot] = done

    pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(counts)


@dataclass
class Row:
    backend: str  # "file", "pkcs11" or "pkcs11 (token object)"
    processes: int
    threads: int
    signs_per_second: float


def measure(name: str, settings: Settings, secret: bytes, processes: int, args: argparse.Namespace) -> Row:
    context = multiprocessing.get_context("forkserver")
    barrier = context.Barrier(processes)
    pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_init_worker, initargs=(barrier,))
    with pool:
        jobs = [
            pool.submit(_worker, settings, secret, args.seconds, args.threads, args.payload)
            for _ in range(processes)
        ]
        total = sum(job.result() for job in jobs)
    return Row(name, processes, args.threads, total / args.seconds)


def softhsm_module() -> str:
    module = os.environ.get("SMKI_PKCS11_MODULE") or next((m for m in MODULES if Path(m).exists()), "")
    if not module or shutil.which("softhsm2-util") is None:
        sys.exit("SoftHSM2 is not installed (apt-get install softhsm2)")
    return module


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measurement")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each row is the best round")
    parser.add_argument("--processes", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--threads", type=int, default=1, help="signing threads per worker")
    parser.add_argument("--payload", type=int, default=400, help="bytes signed per signature")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.processes.split(",")]

    with tempfile.TemporaryDirectory(prefix="smki-bench-") as tmp:
        home = Path(tmp)
        (home / "tokens").mkdir()
        conf = home / "softhsm2.conf"
        settings_text = f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\n"
        conf.write_text(settings_text + "log.level = ERROR\n")
        os.environ["SOFTHSM2_CONF"] = str(conf)  # before the forkserver starts: workers inherit it
        module = softhsm_module()
        init = ["softhsm2-util", "--init-token", "--free", "--label", "bench", "--so-pin", "bench-so-0000"]
        subprocess.run(
            [*init, "--pin", PIN.decode()],
            check=True,
            capture_output=True,
        )
        with Pkcs11KeyBackend(module, "bench", PIN) as hsm:
            hsm.generate(LABEL)
        file_settings = Settings(home=home, key_backend="file")
        open_backend(file_settings, FILE_SECRET).generate(LABEL)
        hsm_settings = Settings(home=home, key_backend="pkcs11", pkcs11_module=module, pkcs11_token="bench")
        token_object_settings = replace(hsm_settings, pkcs11_session_keys=False)
        variants = (
            ("file", file_settings, FILE_SECRET),
            ("pkcs11", hsm_settings, PIN),
            ("pkcs11 (token object)", token_object_settings, PIN),
        )

        best: dict[tuple[str, int], Row] = {}
        for _ in range(args.repeat):  # interleaved rounds, best of each: a busy machine only slows
            for processes in counts:
                for name, settings, secret in variants:
                    row = measure(name, settings, secret, processes, args)
                    key = (row.backend, processes)
                    if key not in best or row.signs_per_second > best[key].signs_per_second:
                        best[key] = row
        rows = list(best.values())

    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
        return
    rounds = f"best of {args.repeat} x {args.seconds:g} s"
    print(f"ECDSA P-256 over {args.payload} bytes, {rounds}, {os.cpu_count()} CPUs")
    print(f"{'processes':>9} {'threads':>7}  {'backend':<22} {'signatures/s':>12} {'vs file':>7}")
    for processes in counts:
        by_backend = {row.backend: row for row in rows if row.processes == processes}
        file_rate = by_backend["file"].signs_per_second
        for name, _, _ in variants:
            rate = by_backend[name].signs_per_second
            print(f"{processes:>9} {args.threads:>7}  {name:<22} {rate:>12.0f} {rate / file_rate:>7.2f}")


if __name__ == "__main__":
    main()
