"""How a batch with its own signing pool starts: this process issues the first chunk while the
worker processes start, a one-chunk batch never starts them, and chunks commit in batch order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from smki.ca.devcsr import device_csr_stream
from smki.domain import CertKind
from smki.services import device_issuance
from smki.services.batch_sources import BatchItem
from smki.services.context import Home
from smki.services.device_issuance import BATCH_ISSUED_ACTION, issue_device_batch
from smki.store import CertificateQuery
from tests.conftest import ca_home

SECRET = b"batch-start-test-passphrase"


@pytest.fixture
def home(tmp_path: Path, database_url: str) -> Iterator[Home]:
    with ca_home(tmp_path, database_url, SECRET) as opened:
        yield opened


def _items(count: int) -> list[BatchItem]:
    return [BatchItem(i, f"c{i}", der) for i, (_d, _u, der) in
            enumerate(device_csr_stream(count, first_device=0x00DB990000000000))]


def _issued_indexes_per_commit(home: Home, ref: str) -> list[list[int]]:
    return [[int(entry[3]) for entry in row.details_dict["issued"]]
            for row in home.store.audit_rows_for(ref, BATCH_ISSUED_ACTION)]


def _verify_all(home: Home, ref: str, expected: int) -> None:
    records = list(home.store.iter_certificates(CertificateQuery(batch_id=ref, limit=expected + 1)))
    assert len(records) == expected
    device_ca = home.ca_certificate(CertKind.DEVICE_CA).public_key()
    assert isinstance(device_ca, ec.EllipticCurvePublicKey)
    for record in records:
        cert = x509.load_der_x509_certificate(record.der)
        device_ca.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))


def test_a_one_chunk_batch_never_starts_the_worker_processes(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_workers(*_args: object) -> None:
        raise AssertionError("a worker process was asked to issue a one-chunk batch")

    monkeypatch.setattr(device_issuance.SigningPool, "check", no_workers)
    monkeypatch.setattr(device_issuance.SigningPool, "sign", no_workers)
    summary = issue_device_batch(home, _items(30), actor="test", batch_ref="one-chunk", workers=2, chunk_size=50)
    assert (summary.issued, summary.rejected) == (30, 0)
    assert _issued_indexes_per_commit(home, "one-chunk") == [list(range(30))]
    _verify_all(home, "one-chunk", 30)


def test_the_first_chunk_is_issued_here_and_chunks_commit_in_batch_order(home: Home) -> None:
    summary = issue_device_batch(home, _items(230), actor="test", batch_ref="ordered", workers=2, chunk_size=20)
    assert (summary.issued, summary.rejected) == (230, 0)
    commits = _issued_indexes_per_commit(home, "ordered")
    assert commits[0] == list(range(20))  # this process's chunk, committed on its own, first
    assert [index for commit in commits for index in commit] == list(range(230))  # then in order, whole
    assert all(len(commit) >= device_issuance.MIN_CHUNKS_PER_COMMIT * 20 for commit in commits[1:-1])
    _verify_all(home, "ordered", 230)


def test_every_chunk_is_issued_when_all_in_flight_finish_at_once(home: Home) -> None:
    """Refusals take no time: a warm pool can finish every chunk in flight before the writer looks,
    and the writer must still fetch the chunks beyond them (found by the screening hypothesis test)."""
    items = [BatchItem(i, f"c{i}", b"junk") for i in range(40)] + _items(3)
    items[-3:] = [BatchItem(40 + n, f"c{40 + n}", item.data) for n, item in enumerate(items[-3:])]
    with device_issuance.SigningPool.for_home(home, workers=1) as pool:
        pool.warm()
        outcomes: list[device_issuance.DeviceOutcome] = []
        summary = issue_device_batch(home, items, actor="test", batch_ref="burst", pool=pool, chunk_size=1,
                                     on_chunk=outcomes.extend)
    assert (summary.issued, summary.rejected) == (3, 40)
    assert sorted(o.index for o in outcomes) == list(range(43))


def test_workers_that_cannot_open_the_key_fail_the_batch_with_a_code(home: Home) -> None:
    from smki.errors import SmkiError

    issuer = device_issuance.SigningPool.issuer_der_of(home)
    with device_issuance.SigningPool(home.settings, b"not-the-passphrase", issuer, workers=2) as pool:
        with pytest.raises(device_issuance.WorkerKeyUnavailable):
            pool.warm()  # a coded refusal from the worker, not a traceback and a broken pool
        with pytest.raises(SmkiError) as caught:
            issue_device_batch(home, _items(30), actor="test", batch_ref="no-key", chunk_size=10, pool=pool)
    assert caught.value.code == "batch.worker-failed" and "key." in caught.value.message
    assert pool.broken
    assert _issued_indexes_per_commit(home, "no-key") == []


def test_signing_workers_start_without_loading_the_store(home: Home) -> None:
    """A signing worker checks and signs; it never touches the database, so it must not pay for
    importing SQLAlchemy or a driver (two thirds of a worker's start-up before, ~0.17 s each: a
    batch from the CLI starts its pool for that batch). ``eval`` of a builtin expression is what the
    worker runs here because a builtin pickles by name without importing any module of ours."""
    with device_issuance.SigningPool.for_home(home, workers=1) as pool:
        pool.warm()
        loaded = pool._executor.submit(
            eval, "sorted({m.split('.')[0] for m in __import__('sys').modules} & {'sqlalchemy', 'alembic', 'psycopg'})"
        ).result()
    assert loaded == []
