"""Batch jobs without HTTP: restart recovery from the audit, claiming, limits, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.ca import csr as csr_module
from smki.ca.der import der_tlv
from smki.ca.devcsr import make_device_csr
from smki.domain import Route, Usage
from smki.errors import SmkiError
from smki.ra import DEVICE_LIMIT
from smki.services import batch_jobs as bj
from smki.services.batch_sources import BatchItem
from smki.services.capacity import CapacitySettings
from smki.services.context import Home
from smki.services.device_issuance import issue_device_batch
from smki.services.device_limit import DEVICE_LIMIT_CODE
from smki.services.requests import Requester
from smki.store.batches import batch_progress, batch_reads
from tests.api.conftest import ARO, OTHER_PARTY, PARTY
from tests.ca.test_csr_checks import EXTENSION_REQUEST, attribute, cri, ext, sign
from tests.ca.test_csr_plain import (
    KU_OID,
    SAN_OID,
    csr_with_extensions,
    extension_lists,
    hwmn,
    key_usage_value,
)

OFF = CapacitySettings(enabled=False)
ME = Requester(PARTY, ARO, Route.GATEWAY)


def _items(n: int, first: int = 0x00DB770000000000) -> list[tuple[str, bytes]]:
    return [(f"c{i}", make_device_csr((first + i).to_bytes(8, "big"), Usage.DS)) for i in range(n)]


def test_a_crash_between_commit_and_bookkeeping_loses_nothing_and_issues_nothing_twice(home: Home) -> None:
    items = _items(8)
    job = bj.submit_batch(home, ME, items, interface="json", client_ref="r", capacity=OFF)
    # A first run committed items 0-4 (certificates + audit) and died before recording them on the job.
    issue_device_batch(home, [BatchItem(i, f"c{i}", der) for i, (_n, der) in enumerate(items[:5])],
                       actor=ME.actor, batch_ref=job.ref, workers=0)
    committed = {c.serial for c in home.store.iter_certificates(_query(job.ref))}
    assert len(committed) == 5 and batch_reads(home.store).job(job.id).processed == 0  # type: ignore[union-attr]
    runner = bj.BatchRunner(home, workers=0)
    assert runner.run_once() == 1
    done = batch_reads(home.store).job(job.id)
    assert done is not None and done.status == "COMPLETED" and done.issued == 8 and done.processed == 8
    stored = list(home.store.iter_certificates(_query(job.ref)))
    assert len(stored) == 8  # the five from the first run were reported, not issued again
    reported = {item.serial for item, _der in bj.iter_results(home, done)}
    assert committed <= reported and len(reported) == 8


def test_item_outcomes_commit_with_their_certificates_or_not_at_all(home: Home,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from smki.store.batches import BatchWrites

    items = _items(6)
    job = bj.submit_batch(home, ME, items, interface="json", client_ref="r", capacity=OFF)
    original = BatchWrites.record_outcomes
    calls: list[int] = []

    def record_then_fail(self: BatchWrites, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        calls.append(1)
        raise RuntimeError("the database went away before the commit")

    monkeypatch.setattr(BatchWrites, "record_outcomes", record_then_fail)
    with pytest.raises(RuntimeError):
        bj.BatchRunner(home, workers=0).run_once()
    assert calls
    # The failed commit took the certificates and the items' outcomes with it: neither is half there.
    assert list(home.store.iter_certificates(_query(job.ref))) == []
    assert len(list(batch_reads(home.store).iter_items(job.id, unprocessed=True))) == 6
    assert batch_reads(home.store).job(job.id).processed == 0  # type: ignore[union-attr]
    monkeypatch.setattr(BatchWrites, "record_outcomes", original)
    assert bj.BatchRunner(home, workers=0, lease=timedelta(0)).run_once() == 1  # takes the job over
    done = batch_reads(home.store).job(job.id)
    assert done is not None and done.status == "COMPLETED" and done.issued == 6 and done.processed == 6
    stored = {c.serial for c in home.store.iter_certificates(_query(job.ref))}
    assert stored == {item.serial for item, _der in bj.iter_results(home, done)} and len(stored) == 6


def _query(ref: str) -> object:
    from smki.store import CertificateQuery

    return CertificateQuery(batch_id=ref, limit=1000)


def test_only_one_runner_claims_a_job_and_a_dead_owners_job_is_taken_over(home: Home) -> None:
    job = bj.submit_batch(home, ME, _items(1), interface="xml", client_ref="r", capacity=OFF)
    first, second = bj.BatchRunner(home, workers=0), bj.BatchRunner(home, workers=0)
    claimed = first.claim_next()
    assert claimed is not None and claimed.id == job.id and claimed.owner == first.owner
    assert second.claim_next() is None  # owner alive, heartbeat fresh
    # The owner dies (its pid no longer exists on this host): the job is taken over at once.
    progress = batch_progress(home.store)
    dead = f"{first.host}:999999999:dead"
    progress.claim_from(job.id, dead, first.owner, datetime.now(UTC), "PROCESSING")
    taken = second.claim_next()
    assert taken is not None and taken.owner == second.owner
    # A live owner elsewhere whose heartbeat went stale is taken over after the lease.
    progress.claim_from(job.id, "other-host:1:x", second.owner, datetime.now(UTC) - timedelta(minutes=5), "PROCESSING")
    assert progress.heartbeat(job.id, "other-host:1:x", datetime.now(UTC) - timedelta(minutes=5))
    assert bj.BatchRunner(home, workers=0).claim_next() is not None


def test_a_party_sees_only_its_own_batches_and_results_expire(home: Home) -> None:
    job = bj.submit_batch(home, ME, _items(1), interface="xml", client_ref="r", capacity=OFF)
    assert bj.job_for_party(home, job.id, PARTY).id == job.id
    with pytest.raises(SmkiError) as caught:
        bj.job_for_party(home, job.id, OTHER_PARTY)
    assert caught.value.code == "batch.not-found"
    bj.BatchRunner(home, workers=0).run_once()
    progress = batch_progress(home.store)
    assert progress.purge_expired(datetime.now(UTC) + timedelta(days=29)) == 0
    assert progress.purge_expired(datetime.now(UTC) + timedelta(days=31)) == 1
    assert batch_reads(home.store).job(job.id) is None and batch_reads(home.store).items(job.id) == []


def test_a_party_refused_after_submission_gets_ineligible_per_csr(home: Home) -> None:
    from smki.ra import AroStatus
    from smki.services import registry as reg

    job = bj.submit_batch(home, ME, _items(3), interface="xml", client_ref="r", capacity=OFF)
    reg.set_aro_status(home, ARO, AroStatus.SUSPENDED, staff_id="op1", reason="test")
    bj.BatchRunner(home, workers=0).run_once()
    done = batch_reads(home.store).job(job.id)
    assert done is not None and done.status == "COMPLETED" and done.rejected == 3
    assert bj.job_rules(done) == ["aro.active"]
    assert {item.error_code for item, _ in bj.iter_results(home, done)} == {"ra.refused"}


def test_submission_limits(home: Home) -> None:
    with pytest.raises(SmkiError) as caught:
        bj.submit_batch(home, ME, [], interface="json", client_ref="", capacity=OFF)
    assert caught.value.code == "batch.empty"
    with pytest.raises(SmkiError) as caught:
        bj.submit_batch(home, ME, [("x", b"")] * (bj.MAX_CSRS + 1), interface="json", client_ref="", capacity=OFF)
    assert caught.value.code == "batch.too-many"


def test_peek_device_id_reads_the_csr_without_trusting_it() -> None:
    device = bytes.fromhex("00db0102030405ff")
    assert bj.peek_device_id(make_device_csr(device, Usage.KA)) == device
    assert bj.peek_device_id(b"\x30\x00") is None
    assert bj.peek_device_id(b"") is None
    versioned = make_device_csr(device, Usage.DS).replace(b"\x02\x01\x00", b"\x02\x01\x01", 1)  # version 2
    assert bj.peek_device_id(versioned) is None  # cryptography's InvalidVersion, not a crash of the runner


def _both_peeks(der: bytes) -> tuple[bytes | None, bytes | None]:
    return bj.peek_device_id(der), csr_module._general_device_id(der)


def test_plain_device_csrs_are_peeked_directly() -> None:
    for usage in Usage:
        device = bytes.fromhex("00db0102030405ff")
        der = make_device_csr(device, usage)
        assert csr_module._plain_device_id(der) == device == csr_module._general_device_id(der)


PEEK_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def plain_extension_lists(draw: st.DrawFn) -> bytes:
    """Exactly the shape the shortcut reads: keyUsage DS or KA and one hardwareModuleName."""
    usage = ext(KU_OID, key_usage_value(draw(st.sampled_from([0x001, 0x010]))), critical=draw(st.booleans()))
    name = hwmn(draw(st.sampled_from([bytes.fromhex("2a863a0001848fb90f01020201"), b"\x2b\x06\x01", b""])),
                draw(st.binary(min_size=8, max_size=8)))
    names = ext(SAN_OID, der_tlv(0x30, name), critical=draw(st.booleans()))
    return der_tlv(0x30, b"".join(draw(st.permutations([usage, names]))))


#: Half the examples of the exact shape the shortcut reads, half anything near it.
near_plain = st.one_of(plain_extension_lists(), extension_lists())


@PEEK_SETTINGS
@given(near_plain, st.sampled_from(["plain", "two-attributes", "challenge-first", "ms-request"]))
def test_peek_shortcut_agrees_with_the_general_path(extensions_value: bytes, layout: str) -> None:
    request = attribute(EXTENSION_REQUEST, extensions_value)
    other = attribute("1.2.840.113549.1.9.7", der_tlv(0x0C, b"secret"))  # challengePassword
    attributes = {"plain": (request,), "two-attributes": (request, request), "challenge-first": (other, request),
                  "ms-request": (attribute("1.3.6.1.4.1.311.2.1.14", extensions_value),)}[layout]
    fast, general = _both_peeks(sign(cri(attributes=attributes)))
    assert fast == general


@PEEK_SETTINGS
@given(near_plain, st.data())
def test_peek_shortcut_agrees_on_mutated_csrs(extensions_value: bytes, data: st.DataObject) -> None:
    der = csr_with_extensions(extensions_value)
    for _ in range(data.draw(st.integers(1, 3))):
        # ECDSA signatures vary in length: draw a share of the CSR, not an offset into it.
        position = data.draw(st.integers(min_value=0, max_value=9999)) * len(der) // 10000
        action = data.draw(st.sampled_from(["drop", "replace", "insert"]))
        byte = bytes([data.draw(st.integers(min_value=0, max_value=255))])
        tail = der[position + 1:] if action != "insert" else der[position:]
        der = der[:position] + (b"" if action == "drop" else byte) + tail
    fast, general = _both_peeks(der)
    assert fast == general


def test_a_dead_signing_process_is_retried_without_issuing_twice(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    import itertools

    from smki.errors import SmkiError as Err

    real = bj.request_device_batch
    calls = []

    def flaky(home_: Home, requester: Requester, items: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:  # the first run commits three CSRs, then a worker dies
            real(home_, requester, itertools.islice(items, 3), **kwargs)  # type: ignore[call-overload]
            raise Err("batch.worker-failed", "a worker process died")
        return real(home_, requester, items, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bj, "request_device_batch", flaky)
    job = bj.submit_batch(home, ME, _items(7, 0x00DB990000000000), interface="xml", client_ref="r", capacity=OFF)
    bj.BatchRunner(home, workers=0).run_once()
    done = batch_reads(home.store).job(job.id)
    assert len(calls) == 2 and done is not None and done.issued == 7 and done.status == "COMPLETED"
    assert len(list(home.store.iter_certificates(_query(job.ref)))) == 7


def test_a_results_page_is_one_query_whatever_its_size_and_matches_the_certificates(home: Home) -> None:
    from sqlalchemy import event

    items = [*_items(7), ("bad", b"not a CSR")]
    job = bj.submit_batch(home, ME, items, interface="json", client_ref="r", capacity=OFF)
    bj.BatchRunner(home, workers=0).run_once()
    done = batch_reads(home.store).job(job.id)
    assert done is not None and done.issued == 7
    statements: list[str] = []

    def count(*args: object) -> None:
        if str(args[2]).lstrip().upper().startswith("SELECT"):
            statements.append(str(args[2]))

    for limit in (1, 3, 8):
        statements.clear()
        event.listen(home.store.engine, "before_cursor_execute", count)
        try:
            page = bj.result_items(home, done, after=0, limit=limit)
        finally:
            event.remove(home.store.engine, "before_cursor_execute", count)
        assert len(statements) == 1, statements
        assert [item.idx for item, _der in page] == list(range(1, 1 + min(limit, 7)))
        for item, der in page:  # each DER is that item's own certificate, as a look-up by serial gives it
            if item.serial is None:
                assert der is None and item.error_code == "csr.malformed"
            else:
                record = home.store.certificate_by_serial(item.serial)
                assert record is not None and der == record.der


@pytest.mark.parametrize("workers", [0, 1])
def test_the_per_device_limit_refuses_before_signing_counting_the_store_and_the_batch(home: Home,
                                                                                     workers: int) -> None:
    """100 Device Certificates per Device ID (``csr.device-limit``, DCC CR:CL1): the writer's screen
    counts the store's certificates and the batch's earlier CSRs, after the workers' checks read
    the Device ID; a malformed CSR naming a full Device keeps its own refusal and uses no slot."""
    full, other = bytes.fromhex("00db7a0000000001"), bytes.fromhex("00db7a0000000002")
    earlier = [BatchItem(i, f"e{i}", make_device_csr(full, Usage.DS)) for i in range(DEVICE_LIMIT - 2)]
    issue_device_batch(home, earlier, actor=ME.actor, batch_ref="earlier", workers=0)
    broken = bytearray(make_device_csr(full, Usage.KA))
    broken[-3] ^= 0xFF  # its signature no longer verifies
    items = [("a", make_device_csr(full, Usage.KA)), ("bad", bytes(broken)), ("b", make_device_csr(full, Usage.DS)),
             ("c", make_device_csr(full, Usage.KA)), ("d", make_device_csr(other, Usage.DS))]
    job = bj.submit_batch(home, ME, items, interface="json", client_ref="limit", capacity=OFF)
    runner = bj.BatchRunner(home, workers=workers)
    try:
        assert runner.run_once() == 1
    finally:
        runner.stop()
    done = batch_reads(home.store).job(job.id)
    assert done is not None and done.status == "COMPLETED" and (done.issued, done.rejected) == (3, 2)
    outcomes = {item.item_id: (item.outcome, item.error_code) for item in batch_reads(home.store).iter_items(job.id)}
    assert outcomes["a"] == outcomes["b"] == outcomes["d"] == ("ok", None)
    assert outcomes["bad"][1] is not None and outcomes["bad"][1].startswith("csr.")
    assert outcomes["bad"][1] != DEVICE_LIMIT_CODE
    assert outcomes["c"] == ("error", DEVICE_LIMIT_CODE)
    assert home.store.count_device_certificates(full) == DEVICE_LIMIT  # the refused CSR was never signed


def _outage_after(committed: int, error: Exception) -> object:
    """``request_device_batch`` whose first run commits ``committed`` CSRs, then loses the database."""
    import itertools

    real = bj.request_device_batch
    calls: list[int] = []

    def flaky(home_: Home, requester: Requester, items: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            real(home_, requester, itertools.islice(items, committed), **kwargs)  # type: ignore[call-overload]
            raise error
        return real(home_, requester, items, **kwargs)  # type: ignore[arg-type]

    return flaky


def test_a_database_outage_mid_batch_refuses_nothing_and_the_batch_resumes(home: Home,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # The database going away is no CSR's outcome: the rest of the batch used to be reported as
    # refused with store.unavailable the moment a connection was terminated.
    monkeypatch.setattr(bj, "request_device_batch", _outage_after(
        3, SmkiError("store.unavailable", "the database refused the write: terminating connection")))
    job = bj.submit_batch(home, ME, _items(7, 0x00DB980000000000), interface="json", client_ref="r", capacity=OFF)
    runner = bj.BatchRunner(home, workers=0)
    with pytest.raises(Exception, match=r"store\.unavailable"):
        runner.run_once()
    cut = batch_reads(home.store).job(job.id)
    assert cut is not None and (cut.status, cut.processed, cut.rejected, cut.owner) == ("PROCESSING", 3, 0, None)
    assert runner.run_once() == 1
    done = batch_reads(home.store).job(job.id)
    assert done is not None and (done.status, done.issued, done.rejected) == ("COMPLETED", 7, 0)
    assert len(list(home.store.iter_certificates(_query(job.ref)))) == 7


def test_a_runner_takes_up_its_own_batch_it_could_not_hand_back(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    # Still away when the runner tried to hand the batch back: it stays the runner's own. With one
    # server process nobody else would ever take it over, so the runner takes it up itself.
    from sqlalchemy.exc import OperationalError

    from smki.store.batches import BatchProgress

    lost = OperationalError("SELECT 1", {}, Exception('database "smki" is not currently accepting connections'))
    monkeypatch.setattr(bj, "request_device_batch", _outage_after(2, lost))
    original = BatchProgress.release

    def release_fails(self: BatchProgress, *args: object, **kwargs: object) -> bool:
        raise SmkiError("store.unavailable", "the database refused the write")

    monkeypatch.setattr(BatchProgress, "release", release_fails)
    job = bj.submit_batch(home, ME, _items(5, 0x00DB970000000000), interface="json", client_ref="r", capacity=OFF)
    runner = bj.BatchRunner(home, workers=0)
    with pytest.raises(Exception, match="not currently accepting connections"):
        runner.run_once()
    cut = batch_reads(home.store).job(job.id)
    assert cut is not None and cut.owner == runner.owner and cut.rejected == 0
    monkeypatch.setattr(BatchProgress, "release", original)
    assert runner.run_once() == 1
    done = batch_reads(home.store).job(job.id)
    assert done is not None and (done.status, done.issued, done.rejected) == ("COMPLETED", 5, 0)


def test_the_runner_logs_a_database_outage_once_without_a_traceback(home: Home, monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    import time

    runner = bj.BatchRunner(home, workers=0, poll=0.01)
    outage = {"on": True}

    def run_once() -> int:
        if outage["on"]:
            raise SmkiError("store.unavailable", "cannot read from the database: connection refused")
        return 0

    monkeypatch.setattr(runner, "run_once", run_once)
    with caplog.at_level("INFO", logger="smki.batch"):
        runner.start()
        time.sleep(0.3)
        outage["on"] = False
        time.sleep(0.1)
        runner.stop()
    lines = [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records if r.name == "smki.batch"]
    assert lines == [
        ("WARNING", "batch runner: the database is unavailable (store.unavailable: cannot read from the database: "
                    "connection refused); retrying every 0.01 s", None),
        ("WARNING", "batch runner: the database answers again", None)]
