"""Operating a live ``smki serve`` (issue 12): access log, request ids, the admin listener, metrics.

The server runs as a subprocess with two workers and ``--admin 127.0.0.1:0``, as an operator
would run it; its stderr is the log (JSON lines, since it is not a terminal).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client.parser import text_string_to_metric_families

from smki.ca.devcsr import make_device_csr
from smki.domain import Route, Usage
from smki.errors import SmkiError
from smki.services.context import Home
from tests.api.conftest import ARO, PARTY, SECRET, ClientFiles, LiveListeners
from tests.api.serve_process import ServeProcess, write_api_config

DEVICE = bytes.fromhex("00db1234567890a1")


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = frozenset((k, v) for k, v in sample.labels.items() if k != "pid")
            out[(sample.name, labels)] = out.get((sample.name, labels), 0.0) + sample.value
    return out


def _ready(admin: str, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{admin}/readyz", timeout=30)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def _malformed_request(url: str, who: ClientFiles) -> bytes:
    """Send a request line uvicorn cannot parse, over TLS with a client certificate; its answer."""
    import socket

    host, port = url.removeprefix("https://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as raw, \
            who.context().wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(b"GARBAGE\r\n\r\n")
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
    return answer


def test_access_log_request_ids_health_and_metrics(home: Home, aro: ClientFiles) -> None:
    write_api_config(home.settings.home)
    server = ServeProcess(home.settings.home, SECRET, "--workers", "2", "--batch-workers", "0",
                          "--admin", "127.0.0.1:0")
    try:
        assert server.process.stdout is not None
        admin_line = server.process.stdout.readline()
        assert admin_line.startswith("smki: admin http://127.0.0.1:"), admin_line
        admin = admin_line.split()[-1]
        assert httpx.get(f"{admin}/healthz").json() == {"status": "alive"}
        ready = _ready(admin)
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert {name: c["ok"] for name, c in checks.items()} == {
            "database": True, "schema": True, "csr_signature_check": True, "ca_keys": True, "batch_runner": True}
        assert checks["batch_runner"]["detail"] == "2 running"
        assert checks["csr_signature_check"]["detail"] in ("libcrypto", "cryptography")

        ids = []
        with httpx.Client(base_url=server.url(Route.GATEWAY), verify=aro.context(), timeout=60) as client:
            for _ in range(5):
                response = client.get("/api/v1/whoami")
                assert response.status_code == 200
                ids.append(response.headers["x-request-id"])
            missing = client.get("/api/v1/certificates/00FF", params={"apikey": "s3cret-query-value"})
            assert missing.status_code == 404
            assert missing.json()["error"]["request_id"] == missing.headers["x-request-id"]
            csr = x509.load_der_x509_csr(make_device_csr(DEVICE, Usage.DS)).public_bytes(Encoding.PEM).decode()
            issued = client.post("/api/v1/device-certificates", json={"csr": csr})
            assert issued.status_code == 201, issued.text
            refused = client.post("/api/v1/device-certificates", json={"csr": csr[:60] + csr[80:]})
            assert refused.status_code == 422
            refused_code = refused.json()["error"]["code"]
            good = make_device_csr(bytes.fromhex("00db1234567890a2"), Usage.KA)
            batch = client.post("/api/v1/device-batches", json={"csrs": [
                {"id": "good", "csr": x509.load_der_x509_csr(good).public_bytes(Encoding.PEM).decode()},
                {"id": "bad", "csr": "bm90IGEgY3Ny"}]})
            assert batch.status_code == 202, batch.text
            deadline = time.monotonic() + 60
            batch_url = f"/api/v1/device-batches/{batch.json()['batch_id']}"
            while (state := client.get(batch_url).json())["status"] != "completed":
                assert time.monotonic() < deadline, state
                time.sleep(0.1)
            bad_code = client.get(f"{batch_url}/results").json()
        assert len(set(ids)) == 5
        malformed = _malformed_request(server.url(Route.GATEWAY), aro)
        assert malformed.startswith(b"HTTP/1.1 400")
        malformed_id = next(line.split(b":", 1)[1].strip().decode() for line in malformed.split(b"\r\n")
                            if line.lower().startswith(b"x-request-id:"))

        metrics = httpx.get(f"{admin}/metrics")
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        values = _samples(metrics.text)
        whoami = frozenset({("listener", "gateway"), ("route", "/api/v1/whoami"), ("status", "200")})
        assert values[("smki_http_requests_total", whoami)] == 5  # summed over both workers
        assert values[("smki_http_request_duration_seconds_count",
                       frozenset({("listener", "gateway"), ("route", "/api/v1/whoami")}))] == 5
        assert values[("smki_certificates_issued_total", frozenset({("kind", "device")}))] == 2
        assert values[("smki_csrs_total", frozenset({("outcome", "accepted"), ("code", "")}))] == 2
        batch_code = next(r["error"]["code"] for r in bad_code["results"] if r["id"] == "bad")
        refusals = {code: 0 for code in (refused_code, batch_code)}
        refusals[refused_code] += 1  # the single CSR the JSON API refused
        refusals[batch_code] += 1  # the batch item the runner refused
        for code, count in refusals.items():
            assert values[("smki_csrs_total", frozenset({("outcome", "refused"), ("code", code)}))] == count
        assert values[("smki_audit_records_total", frozenset({("action", "device-certificates.issued")}))] == 2
        assert values[("smki_batch_queue_depth", frozenset())] == 0
        assert ("smki_capacity_bucket_level", frozenset({("party", PARTY), ("limit", "adhoc-service")})) in values \
            or not any(name == "smki_capacity_bucket_level" for name, _ in values)  # capacity is off here
        assert values[("smki_database_up", frozenset())] == 1
    finally:
        server.stop()
    assert server.process.stderr is not None
    # Every line is JSON, uvicorn's own too (a request too malformed to reach the app is one), but the
    # supervisor's own words to the operator as it stops ("smki: stopping: …", "smki: stopped").
    raw_lines = server.process.stderr.read().splitlines()
    assert all(line.startswith("smki: stop") for line in raw_lines if not line.startswith("{")), raw_lines
    lines = [json.loads(line) for line in raw_lines if line.startswith("{")]
    assert any(line["logger"] == "uvicorn.error" and line["message"] == "Invalid HTTP request received."
               for line in lines), [line for line in lines if line["logger"] != "smki.access"]
    access = [line for line in lines if line["logger"] == "smki.access"]
    by_id = {line["request_id"]: line for line in access}
    for rid in ids:
        line = by_id[rid]
        assert line["listener"] == "gateway" and line["method"] == "GET" and line["path"] == "/api/v1/whoami"
        assert line["status"] == 200 and line["bytes"] > 0 and line["duration_ms"] >= 0
        assert line["subject"] == f"aro:{ARO}@{PARTY}"
        assert line["time"].endswith("Z")
    probes = [(line["path"], line["status"]) for line in access if line["listener"] == "admin"]
    assert ("/healthz", 200) in probes and ("/readyz", 200) in probes and ("/metrics", 200) in probes
    # A request too malformed to reach the app has its line and id too (it had uvicorn's warning only).
    assert {k: by_id[malformed_id][k] for k in ("listener", "method", "path", "status", "subject")} == {
        "listener": "gateway", "method": "-", "path": "-", "status": 400, "subject": "-"}
    missing_line = by_id[missing.headers["x-request-id"]]
    assert missing_line["status"] == 404
    assert missing_line["path"] == "/api/v1/certificates/00FF?apikey=[redacted]"
    text = "\n".join(json.dumps(line) for line in lines)
    assert "s3cret-query-value" not in text and SECRET.decode() not in text


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _group(pgid: int) -> list[int]:
    """Live processes of a process group (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _whoami(server: ServeProcess, aro: ClientFiles, times: int) -> None:
    for _ in range(times):  # a fresh connection each: whichever worker accepts it answers
        with httpx.Client(base_url=server.url(Route.GATEWAY), verify=aro.context(), timeout=30) as client:
            assert client.get("/api/v1/whoami").status_code == 200


def test_the_admin_listener_is_a_supervised_process_and_the_parent_forks_with_one_thread(
        home: Home, aro: ClientFiles) -> None:
    """``--workers 2 --admin``: the admin listener is a child of the supervisor like the workers (the
    supervisor itself has one thread, so every fork is safe); a killed worker or admin process is
    replaced while /healthz, /readyz and /metrics keep answering and summing; SIGTERM leaves nothing."""
    from tests.api.test_supervision import _children, _wait

    write_api_config(home.settings.home)
    server = ServeProcess(home.settings.home, SECRET, "--workers", "2", "--batch-workers", "0",
                          "--admin", "127.0.0.1:0")
    parent = server.process.pid
    try:
        assert server.process.stdout is not None
        admin = server.process.stdout.readline().split()[-1]
        assert _ready(admin).status_code == 200
        children = _children(parent)
        assert len(children) == 3
        admin_pid = next(pid for pid in children if _comm(pid) == "smki-admin")
        workers = [pid for pid in children if pid != admin_pid]
        assert len(list(Path(f"/proc/{parent}/task").iterdir())) == 1  # the supervisor runs no thread
        _whoami(server, aro, 4)

        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        answered = []

        def replaced() -> bool:
            answered.append(httpx.get(f"{admin}/healthz", timeout=10).status_code)
            now = _children(parent)
            return victim not in now and len(now) == 3
        _wait("a replacement worker", replaced)
        assert set(answered) == {200}

        def both_runners() -> bool:  # the replacement's runner reports once it has started (later under load)
            ready = _ready(admin)
            return ready.status_code == 200 and ready.json()["checks"]["batch_runner"]["detail"] == "2 running"
        _wait("/readyz to count the replacement's batch runner", both_runners)
        _whoami(server, aro, 4)
        whoami = frozenset({("listener", "gateway"), ("route", "/api/v1/whoami"), ("status", "200")})
        assert _samples(httpx.get(f"{admin}/metrics").text)[("smki_http_requests_total", whoami)] == 8

        os.kill(admin_pid, signal.SIGKILL)
        _wait("a new admin process", lambda: any(_comm(pid) == "smki-admin" and pid != admin_pid
                                                  for pid in _children(parent)))
        assert _ready(admin).status_code == 200  # the same port: the parent holds the socket
        assert _samples(httpx.get(f"{admin}/metrics").text)[("smki_http_requests_total", whoami)] == 8
        assert len(list(Path(f"/proc/{parent}/task").iterdir())) == 1

        os.kill(parent, signal.SIGTERM)  # the parent only, as systemd's KillMode=mixed does first
        server.process.wait(30)
        _wait("every process of the group to exit", lambda: not _group(parent), timeout=10)
    finally:
        server.stop()
    errors = server.process.stderr.read() if server.process.stderr else ""
    assert f"(pid {victim}) exited with code -9" in errors and f"admin listener (pid {admin_pid}) exited" in errors
    assert "stopping: draining 2 server process(es) and the admin listener" in errors
    assert errors.rstrip().endswith("smki: stopped")


def test_admin_listener_is_off_unless_configured(home: Home, tmp_path: Path) -> None:
    write_api_config(home.settings.home)
    server = ServeProcess(home.settings.home, SECRET, "--batch-workers", "0")
    try:
        time.sleep(0.5)
        assert server.process.stdout is not None
        import select

        readable, _, _ = select.select([server.process.stdout], [], [], 0.5)
        assert not readable  # no "smki: admin" line
    finally:
        server.stop()


def test_readyz_is_503_naming_what_is_not_ready(home: Home) -> None:
    """A wrong key secret and no batch runner: not ready, each failing check named; healthz still 200."""
    from dataclasses import replace

    from starlette.testclient import TestClient

    from smki.interfaces.admin.app import create_admin_app
    from smki.observability import metrics

    metrics.runner_heartbeat()
    metrics._m().heartbeat.set(0)  # other tests' in-process batch runners beat in this process too
    wrong = replace(home, secret=b"not-the-passphrase", _backend=None)
    with TestClient(create_admin_app(lambda: wrong, runners=1)) as client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["ready"] is False
        assert body["checks"]["database"]["ok"] and body["checks"]["schema"]["ok"]
        assert not body["checks"]["ca_keys"]["ok"] and body["checks"]["ca_keys"]["detail"].startswith("key.")
        assert body["checks"]["batch_runner"] == {"ok": False, "detail": "0 of 1 batch runners have reported"}
        metrics = _samples(client.get("/metrics").text)
        assert any(name == "smki_key_backend_errors_total" and value >= 1 for (name, _), value in metrics.items())
    with TestClient(create_admin_app(lambda: home, runners=0)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text


def test_readyz_is_503_when_the_database_is_away_as_the_admin_process_opens_its_home(home: Home) -> None:
    """The admin process opens its home at the first probe: with the database away then (a restart
    during an outage), /readyz was a 500 and a traceback, not a 503 a load balancer understands."""
    from starlette.testclient import TestClient

    from smki.interfaces.admin.app import create_admin_app

    def away() -> Home:
        raise SmkiError("store.unavailable", 'cannot reach the database: database "smki" is not currently '
                        "accepting connections")

    with TestClient(create_admin_app(away, runners=0), raise_server_exceptions=False) as client:
        response = client.get("/readyz")
        assert response.status_code == 503, response.text
        checks = response.json()["checks"]
        assert checks["database"] == {"ok": False, "detail": 'store.unavailable: cannot reach the database: '
                                      'database "smki" is not currently accepting connections'}
        assert not checks["schema"]["ok"] and not checks["ca_keys"]["ok"] and checks["batch_runner"]["ok"]
        assert "smki_database_up 0.0" in client.get("/metrics").text


def test_dcc_xml_refusals_are_counted_by_code(live: LiveListeners, home: Home, aro: ClientFiles) -> None:
    """An Ad Hoc Device CSR refused on the XML service counts in smki_csrs_total as the JSON API's do."""
    from prometheus_client import REGISTRY

    from tests.api.test_xml_services import _adhoc

    def refused(code: str) -> float:
        return REGISTRY.get_sample_value("smki_csrs_total", {"outcome": "refused", "code": code}) or 0.0

    before = refused("ra.refused")
    result = _adhoc(live.client(aro, Route.SPOTI), make_device_csr(DEVICE, Usage.DS), "R-metrics")
    assert result.error is not None and result.error.code == "WF:RA1"
    assert refused("ra.refused") == before + 1


def test_a_whole_batch_refused_up_front_counts_each_of_its_csrs(live: LiveListeners, home: Home,
                                                                aro: ClientFiles) -> None:
    """A SubmitCSRBatch the RA refuses before it is accepted (here: over SPOTI) counts every CSR."""
    from prometheus_client import REGISTRY

    from smki.interfaces.dcc import codec as dx
    from tests.api.test_xml_services import _submit

    def refused() -> float:
        return REGISTRY.get_sample_value("smki_csrs_total", {"outcome": "refused", "code": "ra.refused"}) or 0.0

    before = refused()
    csrs = tuple(dx.DeviceCSR(f"c{n}", make_device_csr((0x00DB000000000300 + n).to_bytes(8, "big"), Usage.DS))
                 for n in range(3))
    status = _submit(live.client(aro, Route.SPOTI), dx.SubmitCSRBatch("b-metrics", csrs))
    assert status.status is dx.SubmitStatus.WORKFLOW_ERROR and status.error is not None
    assert status.error.code == "WF:RA1"
    assert refused() == before + 3


def test_the_batch_queue_gauges_count_every_batch_not_yet_done(home: Home) -> None:
    """Queue depth and age count batches awaiting approval (PENDING) and approved but not yet run
    (QUEUED), as well as running ones: each is work the operator is waiting on."""
    from smki.services.health import gauges
    from tests.api.test_batch_lifecycle import _status, _submit, _with

    policy_home = _with(home, **{"auto-approve-max": 2})
    queued = _submit(policy_home, 2, 0x00DB0E0000000000)
    pending = _submit(policy_home, 3, 0x00DB0E0000000100)
    assert (_status(home, queued), _status(home, pending)) == ("QUEUED", "PENDING")
    values = {gauge.name: gauge.samples for gauge in gauges(home)}
    assert values["smki_batch_queue_jobs"] == [((), 2.0)]
    assert values["smki_batch_queue_depth"] == [((), 5.0)]
    assert values["smki_batch_queue_oldest_age_seconds"][0][1] >= 0
