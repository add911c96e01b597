"""Two ``smki serve`` nodes behind HAProxy on one PostgreSQL database (docs/deployment.md).

``smki bench cluster --database-url postgresql+psycopg://…`` measures, in one run, the same
workload sent to one node directly and then through HAProxy (TCP mode, so the client's TLS — and
its SMKI credential — reaches smki) to two nodes: small authenticated requests per second over
fresh connections (direct and proxied rounds alternated), and Device CSRs per second for several
batches submitted at once (one node alone, then two; node A's own rate is the baseline). Both nodes
run on this machine, so the figures show what the balancer costs and how work spreads, not what
two machines would add.

The same pieces (:class:`Node`, :class:`HAProxy`, :func:`add_node_home`) start the topology for
``tests/api/test_cluster.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smki.bench._serve_env import passphrase_file_env

ANNOUNCE = re.compile(r"smki: listening (.*) workers=(\d+) pid=(\d+)")
#: Request-rate rounds of each kind, alternated.
ROUNDS = 3
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_accepting(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing accepts on 127.0.0.1:{port}") from None
            time.sleep(0.05)


def add_node_home(first: Path, home: Path) -> Path:
    """Another node's home made from the first: the same ``smki.toml`` (so the same database) and
    copies of the encrypted CA key files; its own ``api/`` listener credential, issued (from the
    shared credentials CA) when it first starts. With an HSM the key files are not copied: every
    node's ``smki.toml`` names the same token."""
    home.mkdir(parents=True)
    shutil.copy2(first / "smki.toml", home / "smki.toml")
    if (first / "keys").is_dir():
        shutil.copytree(first / "keys", home / "keys")
    return home


@dataclass
class Node:
    """One ``smki serve`` process (its own process group) with a Gateway listener on a free port."""

    home: Path
    process: subprocess.Popen[str]
    port: int

    @classmethod
    def start(cls, home: Path, secret: str, *args: str) -> Node:
        port = free_port()
        env = passphrase_file_env(home, secret)
        process = subprocess.Popen(
            [sys.executable, "-m", "smki.interfaces.cli.serve_cmd", "--home", str(home), "--gateway",
             f"127.0.0.1:{port}", "--no-spoti", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, start_new_session=True)
        assert process.stdout is not None
        line = process.stdout.readline()
        if not ANNOUNCE.search(line):
            process.kill()
            raise RuntimeError(f"smki serve did not start: {line!r} {process.stderr.read() if process.stderr else ''}")
        wait_accepting(port)
        return cls(home, process, port)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """``kill -9`` of the node's whole process group: a crash, no clean shutdown."""
        kill_group(self.process)

    def stop(self) -> None:
        stop_group(self.process, 30)


def kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGKILL a process started in its own session and its whole group: a crash, no clean shutdown."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def stop_group(process: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM the group (``smki serve`` drains), then SIGKILL it if it has not exited in ``grace`` s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            kill_group(process)


HAPROXY_CONFIG = """\
global
    maxconn 4096

defaults
    mode tcp
    timeout connect 1s
    timeout client 300s
    timeout server 300s
    retries 3
    option redispatch

frontend smki_gateway
    bind 127.0.0.1:{port}
    default_backend smki_nodes

backend smki_nodes
    balance roundrobin
{servers}
"""


@dataclass
class HAProxy:
    """HAProxy in TCP mode in front of the nodes' Gateway listeners (health-checked every 200 ms)."""

    process: subprocess.Popen[bytes]
    port: int
    config: Path

    @classmethod
    def start(cls, directory: Path, backends: list[int]) -> HAProxy:
        if HAPROXY is None:
            raise RuntimeError("haproxy is not installed (Debian package haproxy)")
        port = free_port()
        servers = "\n".join(f"    server node{n} 127.0.0.1:{p} check inter 200ms fall 2 rise 2"
                            for n, p in enumerate(backends))
        config = directory / "haproxy.cfg"
        config.write_text(HAPROXY_CONFIG.format(port=port, servers=servers))
        process = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)
        wait_accepting(port)
        return cls(process, port, config)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def client_context(creds: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(creds / "ca.pem"))
    context.load_cert_chain(str(creds / "cert.pem"), str(creds / "key.pem"))
    return context


# -- the benchmark -----------------------------------------------------------------------------------


def request_rate(url: str, context: ssl.SSLContext, *, seconds: float, clients: int = 4) -> float:
    """Authenticated ``GET /api/v1/whoami`` per second, each on a fresh TLS connection (so a load
    balancer spreads them), from ``clients`` threads for ``seconds``."""
    import httpx

    counts = [0] * clients
    stop_at = time.monotonic() + seconds

    def work(slot: int) -> None:
        while time.monotonic() < stop_at:
            with httpx.Client(base_url=url, verify=context, timeout=30) as client:
                if client.get("/api/v1/whoami").status_code == 200:
                    counts[slot] += 1

    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - started)


def batch_rate(url: str, context: ssl.SSLContext, *, batches: int, size: int, first: int) -> float:
    """Device CSRs per second for ``batches`` batches submitted at once, until all are complete."""
    import httpx

    from smki.bench.http import _body, wait_completed
    from smki.interfaces.dcc import codec as dx

    bodies = [_body(size, first + n * 0x1000000) for n in range(batches)]
    started = time.perf_counter()
    ids = []
    for body in bodies:
        with httpx.Client(base_url=url, verify=context, timeout=600) as client:  # fresh: spread by the balancer
            status = dx.parse_submit_csr_batch_status(client.post("/1.0/PortalCSRBatch/SubmitCSRBatch",
                                                                  content=body).content)
        if status.batch_id is None:
            raise RuntimeError(f"batch refused: {status}")
        ids.append(status.batch_id)
    with httpx.Client(base_url=url, verify=context, timeout=600) as client:
        for batch_id in ids:
            wait_completed(client, batch_id)
    return batches * size / (time.perf_counter() - started)


def run(database_url: str, *, batches: int, size: int, seconds: float, batch_workers: int) -> dict[str, object]:
    from smki.bench.http import PASSPHRASE, _subscriber

    if not database_url.startswith("postgresql"):
        raise SystemExit("smki bench cluster needs --database-url postgresql+psycopg://… (nodes share one database)")
    args = ("--workers", "1", "--batch-workers", str(batch_workers))
    with tempfile.TemporaryDirectory(prefix="smki-cluster-bench-") as tmp:
        first = Path(tmp) / "node-a"
        creds = _subscriber(first, database_url)
        with (first / "smki.toml").open("a", encoding="utf-8") as config:
            config.write("\n[api]\nbatch-poll = 0.02\n\n[capacity]\nenabled = false\n")
        context = client_context(creds)
        node_a = Node.start(first, PASSPHRASE, *args)
        nodes = [node_a]
        proxy: HAProxy | None = None
        try:
            request_rate(node_a.url, context, seconds=2)  # warm-up: connections, caches, signing pool
            direct_csrs = batch_rate(node_a.url, context, batches=batches, size=size, first=0x00DC000000000000)
            nodes.append(Node.start(add_node_home(first, Path(tmp) / "node-b"), PASSPHRASE, *args))
            proxy = HAProxy.start(Path(tmp), [n.port for n in nodes])
            request_rate(proxy.url, context, seconds=2)
            time.sleep(2)  # node B's signing pool is warm before anything is timed
            proxied_csrs = batch_rate(proxy.url, context, batches=batches, size=size, first=0x00DD000000000000)
            # Request rates alternate (direct, through HAProxy, …) so drift on a shared machine hits both.
            direct_runs, proxied_runs = [], []
            for _ in range(ROUNDS):
                direct_runs.append(request_rate(node_a.url, context, seconds=seconds))
                proxied_runs.append(request_rate(proxy.url, context, seconds=seconds))
            direct_requests = sum(direct_runs) / ROUNDS
            proxied_requests = sum(proxied_runs) / ROUNDS
        finally:
            if proxy is not None:
                proxy.stop()
            for node in nodes:
                node.stop()
    return {
        "cores": os.cpu_count(), "nodes_behind_haproxy": 2, "batch_workers_per_node": batch_workers,
        "requests_per_s": {"rounds_direct": [round(r, 1) for r in direct_runs],
                           "rounds_haproxy": [round(r, 1) for r in proxied_runs],
                           "one_node_direct": round(direct_requests, 1),
                           "haproxy_two_nodes": round(proxied_requests, 1),
                           "ratio": round(proxied_requests / direct_requests, 3)},
        "batch_csrs_per_s": {"batches": batches, "csrs_each": size, "one_node_direct": round(direct_csrs, 1),
                             "haproxy_two_nodes": round(proxied_csrs, 1),
                             "ratio": round(proxied_csrs / direct_csrs, 3)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="postgresql+psycopg://… (an empty database)")
    parser.add_argument("--batches", type=int, default=4, help="batches submitted at once")
    parser.add_argument("--csrs", type=int, default=2000, help="CSRs per batch")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each request-rate run")
    parser.add_argument("--batch-workers", type=int, default=1, help="signing processes per node")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.database_url, batches=args.batches, size=args.csrs, seconds=args.seconds,
                         batch_workers=args.batch_workers), indent=2))


if __name__ == "__main__":
    main()
