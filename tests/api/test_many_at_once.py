"""More concurrent requests than the store has pooled connections (found by an exploratory run).

A request's reads share one held connection (``store.held_reads``) and its write takes another, so
once every pooled connection was held by a request waiting for a second one, none could get it:
17 single Device CSRs at once (the pool holds 15) all failed with 500 after the pool's 30-second
timeout, and every other caller — other Parties, SPOTI — got 503 meanwhile. The listeners now run
no more request threads at once than the pool can serve whatever each needs
(``smki.interfaces.api.server.request_threads``); the rest wait their turn.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.ca.devcsr import make_device_csr
from smki.domain import Route, Usage
from tests.api.conftest import ClientFiles, LiveListeners

AT_ONCE = 40


def test_forty_single_device_csrs_at_once_are_all_issued_and_others_are_served_meanwhile(
        live: LiveListeners, aro: ClientFiles, other_aro: ClientFiles) -> None:
    csrs = [x509.load_der_x509_csr(make_device_csr((0x00DB660000000000 + n).to_bytes(8, "big"), Usage.DS))
            .public_bytes(Encoding.PEM).decode() for n in range(AT_ONCE)]
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(AT_ONCE + 1)

    def send(csr: str) -> None:
        with httpx.Client(base_url=live.url(Route.GATEWAY), verify=aro.context(), timeout=120) as client:
            client.get("/api/v1/whoami")  # connected and identified before the barrier: all post at once
            barrier.wait()
            response = client.post("/api/v1/device-certificates", json={"csr": csr})
        with lock:
            statuses[response.status_code] += 1

    threads = [threading.Thread(target=send, args=(csr,)) for csr in csrs]
    for thread in threads:
        thread.start()
    other = live.client(other_aro)
    other.get("/api/v1/whoami")
    started = time.monotonic()
    barrier.wait()
    meanwhile = other.get("/api/v1/whoami")
    waited = time.monotonic() - started
    for thread in threads:
        thread.join(120)
    took = time.monotonic() - started
    assert statuses == {201: AT_ONCE}, statuses
    assert meanwhile.status_code == 200 and waited < 20, (meanwhile.status_code, waited)
    assert took < 25, took  # the pool's timeout is 30 s: nothing waited for it


def test_the_readme_states_the_bound_the_server_uses() -> None:
    from pathlib import Path

    from smki.store.engine import CONNECTIONS_PER_REQUEST, POOL_OVERFLOW, POOL_SIZE, request_threads

    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert f"at most {request_threads()} requests at once" in readme
    assert f"up to three of the process's {POOL_SIZE + POOL_OVERFLOW} pooled database connections" in readme
    assert CONNECTIONS_PER_REQUEST == 3
