"""Two nodes behind HAProxy on one PostgreSQL database (issue 11, point 4; docs/deployment.md).

Two ``smki serve`` nodes, each with its own home directory (copies of the encrypted CA key files,
the same ``smki.toml`` and so the same database), started at the same moment, behind HAProxy in
TCP mode on loopback. Batches and Portal forms go through HAProxy; one node is killed with
``kill -9`` while it runs a batch. Then: every CSR was issued exactly once, no serial twice, one CRL
and one ARL (not one per node), ``smki audit verify`` passes, and the surviving node answered
throughout (directly on every probe; through HAProxy but for requests in flight on the killed node).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from smki.bench.cluster import HAPROXY, HAProxy, Node, add_node_home
from smki.interfaces.dcc import codec as dx
from smki.services.context import Home
from smki.store.batches import batch_reads
from tests.api.conftest import SECRET, ClientFiles
from tests.api.serve_process import write_api_config
from tests.api.test_serve import RESULT, SUBMIT, _batch, _check_results
from tests.conftest import made_before_the_ceremony_published_lists

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
BATCHES, SIZE = 4, 1500


@pytest.fixture(autouse=True)
def _postgresql_and_haproxy(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("nodes share one PostgreSQL database: run in the PostgreSQL lane (SMKI_TEST_DATABASE_URL)")
    if HAPROXY is None:
        pytest.skip("haproxy is not installed (Debian package haproxy; scripts/system-deps.sh installs it)")


class Probe(threading.Thread):
    """Asks ``url`` who it is every 50 ms on a fresh connection, counting answers and failures."""

    def __init__(self, url: str, who: ClientFiles) -> None:
        super().__init__(daemon=True)
        self.url, self.who = url, who
        self.ok, self.failed = 0, 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.05):
            try:
                with httpx.Client(base_url=self.url, verify=self.who.context(), timeout=10) as client:
                    good = client.get("/api/v1/whoami").status_code == 200
            except httpx.HTTPError:
                good = False
            if good:
                self.ok += 1
            else:
                self.failed += 1


def _start_together(homes: list[Path]) -> list[Node]:
    """Both nodes at once: their CRL/ARL schedulers tick together, the race the lock must settle."""
    nodes: list[Node | BaseException] = [RuntimeError("not started")] * len(homes)

    def start(n: int) -> None:
        try:
            nodes[n] = Node.start(homes[n], SECRET.decode(), "--workers", "1", "--batch-workers", "0")
        except BaseException as exc:  # reported below
            nodes[n] = exc

    threads = [threading.Thread(target=start, args=(n,)) for n in range(len(homes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    started = [n for n in nodes if isinstance(n, Node)]
    if len(started) != len(homes):
        for node in started:
            node.stop()
        raise next(n for n in nodes if isinstance(n, BaseException))
    return started


def _portal_forms_cross_nodes(url: str, who: ClientFiles, rounds: int) -> list[int]:
    """Render a form on one connection, post it on another (roundrobin: the other node)."""
    statuses = []
    for _ in range(rounds):
        with httpx.Client(base_url=url, verify=who.context(), timeout=30) as first:
            match = CSRF.search(first.get("/portal/aro").text)
            assert match
        with httpx.Client(base_url=url, verify=who.context(), timeout=30) as second:
            response = second.post("/portal/aro/apply", data={"csrf": match.group(1), "policy": "no-such-policy"})
        assert "form-expired" not in response.text
        statuses.append(response.status_code)
    return statuses


def test_two_nodes_behind_haproxy_survive_a_killed_node(home: Home, aro: ClientFiles, tmp_path: Path) -> None:
    write_api_config(home.settings.home)
    made_before_the_ceremony_published_lists(home)  # both schedulers find both lists due at once
    homes = [home.settings.home, add_node_home(home.settings.home, tmp_path / "node-b")]
    node_a, node_b = _start_together(homes)
    proxy = HAProxy.start(tmp_path, [node_a.port, node_b.port])
    through_proxy, direct_b = Probe(proxy.url, aro), Probe(node_b.url, aro)
    bodies = [_batch(SIZE, 0x00DBA00000000000 + n * 0x100000) for n in range(BATCHES)]
    try:
        through_proxy.start()
        direct_b.start()
        assert set(_portal_forms_cross_nodes(proxy.url, aro, 10)) == {400}  # the RA refusal, never form-expired

        ids = []
        for body, _csrs in bodies:
            with httpx.Client(base_url=proxy.url, verify=aro.context(), timeout=120) as client:
                status = dx.parse_submit_csr_batch_status(client.post(SUBMIT, content=body).content)
            assert status.batch_id is not None
            ids.append(status.batch_id)
        reads = batch_reads(home.store)

        def owned_by_a() -> bool:
            return any(j is not None and j.owner is not None and j.owner.split(":")[1] == str(node_a.process.pid)
                       and 0 < j.processed < j.total for j in map(reads.job, ids))

        deadline = time.monotonic() + 120
        while not owned_by_a():
            assert time.monotonic() < deadline, "node A never ran a batch"
            time.sleep(0.01)
        node_a.kill()  # kill -9, mid-batch
        killed_at = through_proxy.ok + through_proxy.failed

        results = []
        with httpx.Client(base_url=proxy.url, verify=aro.context(), timeout=120) as client:
            for batch_id in ids:
                deadline = time.monotonic() + 240
                while True:
                    result = dx.parse_csr_batch_result(client.get(RESULT, params={"BatchId": batch_id}).content)
                    if result.status is dx.BatchStatus.COMPLETED:
                        break
                    assert time.monotonic() < deadline, f"batch {batch_id} did not complete"
                    time.sleep(0.1)
                results.append(result)
        assert set(_portal_forms_cross_nodes(proxy.url, aro, 4)) == {400}  # B alone now serves the forms
    finally:
        through_proxy.stopping.set()
        direct_b.stopping.set()
        through_proxy.join(15)
        direct_b.join(15)
        proxy.stop()
        node_a.kill()
        node_b.stop()

    for result, (_body, csrs) in zip(results, bodies, strict=True):
        _check_results(home, result, csrs)  # one SUCCESS per CSR, for that CSR's key
    with home.store.engine.connect() as conn:
        per_batch = dict(conn.execute(text(
            "SELECT batch_id, count(*) FROM certificates WHERE kind = 'device' GROUP BY batch_id")).all())
        serials = conn.execute(text("SELECT count(*), count(DISTINCT serial) FROM certificates")).one()
        lists = Counter(conn.execute(text("SELECT kind FROM revocation_lists")).scalars())
    jobs = [reads.job(i) for i in ids]
    assert {j.ref: SIZE for j in jobs if j is not None} == {ref: per_batch[ref] for ref in per_batch}
    assert serials[0] == serials[1]
    assert lists == {"CRL": 1, "ARL": 1}  # both nodes' schedulers started together: one of each

    verify = subprocess.run([sys.executable, "-c", "from smki.interfaces.cli.main import run; run()", "audit",
                             "verify", "--home", str(homes[1])], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "SMKI_KEY_PASSPHRASE": SECRET.decode()})
    assert verify.returncode == 0, verify.stdout + verify.stderr

    assert direct_b.failed == 0 and direct_b.ok > 20  # the surviving node answered throughout
    assert through_proxy.ok > killed_at  # and HAProxy kept answering after the kill, through node B
    assert through_proxy.failed <= 2, through_proxy.failed  # at most what was in flight on node A
