"""Concurrent re-issue for one Device and usage (issue 11, point 5).

Two requests for the same Device and usage arriving at once, on different server processes, both
succeed in turn: the one committed later holds the in-use slot, the other is ``N``. Nothing ends
as ``WORKFLOW_ERROR`` / ``store.duplicate-in-use``, and every ``batch.started`` in the audit log is
followed by its ``batch.completed`` or ``batch.failed``.

The race needs two writers that really run at once: PostgreSQL and ``smki serve --workers 2``
(SQLite serialises every write, so there it is only the sequential case).
"""

from __future__ import annotations

import json
import threading
from collections import Counter

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import text

from smki.ca.devcsr import make_device_csr
from smki.domain import Route, Usage
from smki.services.context import Home
from tests.api.conftest import SECRET, ClientFiles
from tests.api.serve_process import ServeProcess, write_api_config

PAIRS = 24


def _pem(der: bytes) -> str:
    from cryptography import x509

    return x509.load_der_x509_csr(der).public_bytes(Encoding.PEM).decode()


def test_two_requests_for_one_device_and_usage_both_succeed(home: Home, aro: ClientFiles) -> None:
    if home.store.engine.dialect.name != "postgresql":
        pytest.skip("the race needs two concurrent writers: run in the PostgreSQL lane (SMKI_TEST_DATABASE_URL)")
    write_api_config(home.settings.home)
    server = ServeProcess(home.settings.home, SECRET, "--workers", "2", "--batch-workers", "0")
    statuses: Counter[int] = Counter()
    bodies: list[dict[str, object]] = []
    lock = threading.Lock()
    try:
        def send(csr: str, barrier: threading.Barrier) -> None:
            # A fresh connection each: the kernel spreads them over both worker processes.
            with httpx.Client(base_url=server.url(Route.GATEWAY), verify=aro.context(), timeout=60) as client:
                barrier.wait()
                response = client.post("/api/v1/device-certificates", json={"csr": csr})
            with lock:
                statuses[response.status_code] += 1
                bodies.append(response.json())

        for pair in range(PAIRS):
            device = (0x00DB770000000000 + pair).to_bytes(8, "big")
            csrs = [_pem(make_device_csr(device, Usage.DS)) for _ in range(2)]
            barrier = threading.Barrier(2)
            threads = [threading.Thread(target=send, args=(csr, barrier)) for csr in csrs]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
    finally:
        server.stop()
    assert statuses == {201: 2 * PAIRS}, [b for b in bodies if "error" in b][:3]

    with home.store.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT device_id, usage, status FROM certificates WHERE kind = 'device' ORDER BY device_id")).all()
        started = conn.execute(text(
            "SELECT subject FROM audit_log WHERE action = 'batch.started'")).scalars().all()
        ended = conn.execute(text(
            "SELECT subject FROM audit_log WHERE action IN ('batch.completed', 'batch.failed')")).scalars().all()
    per_device: dict[bytes, list[str]] = {}
    for device_id, _usage, status in rows:
        per_device.setdefault(bytes(device_id), []).append(status)
    assert len(per_device) == PAIRS
    assert all(sorted(statuses_) == ["I", "N"] for statuses_ in per_device.values()), per_device
    assert Counter(started) == Counter(ended)  # every started batch ended, each once
    assert all(json.dumps(b).find("duplicate-in-use") < 0 for b in bodies)


def test_a_failing_batch_is_audited_with_its_code(home: Home) -> None:
    """The audit log never stops at ``batch.started``: a batch that fails says so, with the code."""
    from smki.services.device_issuance import issue_device_batch

    bad_secret_home = Home(home.settings, home.store, b"not-the-passphrase")
    items = [(0, "one", make_device_csr(bytes.fromhex("00db770000009999"), Usage.DS))]
    from smki.services.batch_sources import BatchItem

    with pytest.raises(Exception) as raised:
        issue_device_batch(bad_secret_home, [BatchItem(*items[0])], actor="test", batch_ref="failing-1", workers=0)
    assert getattr(raised.value, "code", None) == "key.locked"
    rows = home.store.audit_rows_for("failing-1", "batch.failed")
    assert len(rows) == 1
    assert rows[0].details_dict["code"] == "key.locked"
    assert SECRET  # the good secret was never needed to see the failure recorded
