"""The store's guarantees, on whichever engine the suite runs (SQLite, or PostgreSQL via
SMKI_TEST_DATABASE_URL): atomic audited writes, one in-use Device Certificate per usage, a
tamper-evident audit chain, and paginated reads."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from smki.audit import AuditEvent
from smki.domain import CertKind, CertStatus, Usage
from smki.errors import SmkiError
from smki.store import CertificateQuery, NewCertificate, Store, normalise_serial
from smki.store.models import metadata

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DEVICE = bytes.fromhex("00db123456789001")


def device_cert(serial: int, *, device: bytes = DEVICE, usage: Usage = Usage.DS,
                status: CertStatus = CertStatus.IN_USE, batch: str | None = None) -> NewCertificate:
    return NewCertificate(
        serial=normalise_serial(serial), kind=CertKind.DEVICE, issuer_key_id="40" * 8, status=status,
        not_before=NOW, not_after=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), der=b"\x30\x00" + bytes(8),
        issued_at=NOW, usage=usage, device_id=device, batch_id=batch,
    )


def issue(store: Store, *rows: NewCertificate) -> None:
    with store.transaction() as tx:
        tx.add_certificates(list(rows))
        tx.append_audit([AuditEvent("test", "certificate.issued", r.serial) for r in rows])


def test_schema_from_migrations_matches_the_models(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrate_twice_is_a_no_op(store: Store) -> None:
    store.migrate()
    store.migrate()
    assert store.audit_head() == (0, bytes(32))


def test_written_certificates_read_back_exactly(store: Store) -> None:
    issue(store, device_cert(1), device_cert(2, usage=Usage.KA))
    record = store.certificate_by_serial("0x1")
    assert record is not None
    assert record.serial == "0" * 31 + "1"
    assert (record.kind, record.usage, record.device_id, record.status) == (
        CertKind.DEVICE, Usage.DS, DEVICE, CertStatus.IN_USE)
    assert record.not_before == NOW and record.not_after.year == 9999
    assert [r.usage for r in store.certificates_for_device(DEVICE)] == [Usage.DS, Usage.KA]
    assert store.count_device_certificates(DEVICE) == 2
    assert store.certificate_by_serial(99) is None


def test_a_change_without_an_audit_record_is_refused_and_rolled_back(store: Store) -> None:
    with pytest.raises(SmkiError) as info, store.transaction() as tx:
        tx.add_certificates([device_cert(1)])
    assert info.value.code == "store.unaudited-change"
    assert store.certificate_by_serial(1) is None


def test_an_exception_rolls_back_certificates_and_audit_together(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.add_certificates([device_cert(1)])
        tx.append_audit([AuditEvent("test", "certificate.issued", "1")])
        raise RuntimeError("crash between write and commit")
    assert store.certificate_by_serial(1) is None
    assert store.audit_head()[0] == 0
    assert store.verify_audit().ok


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.sampled_from([1, 2, 3, 199, 200, 201, 450]), min_size=1, max_size=4))
def test_a_transaction_s_audit_records_are_the_chain_however_many(store: Store, sizes: list[int]) -> None:
    """PostgreSQL sends a transaction's audit records with the head's update, in one statement (in
    slices beyond ``_AUDIT_ROWS_PER_STATEMENT``): every record arrives, in order, and the chain
    verifies from the head; SQLite writes them as they come. The same records either way."""
    first = store.audit_head()[0]
    expected: list[tuple[int, str]] = []
    for n, size in enumerate(sizes):
        with store.transaction() as tx:
            seqs = tx.append_audit([AuditEvent("test", "test.many", f"{n}-{i}", {"i": i}) for i in range(size)])
        expected += [(seq, f"{n}-{i}") for i, seq in enumerate(seqs)]
    assert [seq for seq, _ in expected] == list(range(first + 1, first + 1 + sum(sizes)))
    assert [(r.seq, r.subject) for r in store.audit_rows(first + 1)] == expected
    assert store.audit_head()[0] == first + sum(sizes)
    report = store.verify_audit()
    assert report.ok and report.checked == first + sum(sizes)


def test_duplicate_serial_is_a_coded_error(store: Store) -> None:
    issue(store, device_cert(7))
    with pytest.raises(SmkiError) as info:
        issue(store, device_cert(7, usage=Usage.KA))
    assert info.value.code == "store.duplicate-serial"


def test_one_in_use_certificate_per_device_and_usage(store: Store) -> None:
    issue(store, device_cert(1))
    with pytest.raises(SmkiError) as info:
        issue(store, device_cert(2))
    assert info.value.code == "store.duplicate-in-use"
    with store.transaction() as tx:
        assert tx.retire_in_use_device_certificates([(DEVICE, Usage.DS)]) == 1
        tx.add_certificates([device_cert(2)])
        tx.append_audit([AuditEvent("test", "certificate.issued", "2")])
    statuses = {r.serial[-1]: r.status for r in store.certificates_for_device(DEVICE)}
    assert statuses == {"1": CertStatus.NOT_IN_USE, "2": CertStatus.IN_USE}


def test_revocation_records_time_and_reason(store: Store) -> None:
    issue(store, device_cert(5))
    with store.transaction() as tx:
        tx.set_certificate_status(5, CertStatus.REVOKED, reason=1, at=NOW)
        tx.append_audit([AuditEvent("test", "certificate.revoked", "5")])
    record = store.certificate_by_serial(5)
    assert record is not None and record.status is CertStatus.REVOKED
    assert (record.revoked_at, record.revocation_reason) == (NOW, 1)
    with pytest.raises(SmkiError) as info, store.transaction() as tx:
        tx.set_certificate_status(6, CertStatus.REVOKED)
    assert info.value.code == "store.certificate-not-found"


@pytest.mark.parametrize("bad", ["", "xyz", "-1", "0", "1" * 33, "0x"])
def test_bad_serials_are_refused(bad: str) -> None:
    with pytest.raises(SmkiError) as info:
        normalise_serial(bad)
    assert info.value.code == "store.bad-serial"


def test_search_pages_with_a_keyset_cursor(store: Store) -> None:
    rows = [device_cert(i, device=i.to_bytes(8, "big"), batch="b1" if i % 2 else None) for i in range(1, 26)]
    issue(store, *rows)
    seen: list[str] = []
    after = 0
    while page := store.find_certificates(CertificateQuery(kind=CertKind.DEVICE, after_id=after, limit=10)):
        seen += [r.serial for r in page]
        after = page[-1].id
    assert seen == [r.serial for r in rows]
    odd = store.find_certificates(CertificateQuery(batch_id="b1", limit=100))
    assert len(odd) == 13
    later = store.find_certificates(CertificateQuery(issued_from=NOW + timedelta(seconds=1)))
    assert later == []
    assert len(list(store.iter_certificates(CertificateQuery(usage=Usage.DS)))) == 25
    with pytest.raises(SmkiError):
        store.find_certificates(CertificateQuery(limit=0))


def test_audit_chain_detects_an_edited_record(store: Store) -> None:
    for i in range(1, 6):
        issue(store, device_cert(i, device=i.to_bytes(8, "big")))
    assert store.verify_audit().ok and store.verify_audit().checked == 5
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"))
    report = store.verify_audit()
    assert not report.ok and report.first_bad_seq == 3


def test_audit_chain_detects_deleted_newest_records(store: Store) -> None:
    for i in range(1, 4):
        issue(store, device_cert(i, device=i.to_bytes(8, "big")))
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    report = store.verify_audit()
    assert not report.ok and report.first_bad_seq == 3


def _append_many(url: str, worker: int, count: int) -> None:
    store = Store.open(url)
    try:
        for i in range(count):
            with store.transaction() as tx:
                tx.append_audit([AuditEvent(f"w{worker}", "test.append", str(i))])
    finally:
        store.close()


def test_concurrent_writers_keep_one_unbroken_chain(database_url: str, store: Store) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_append_many, args=(database_url, w, 40)) for w in range(3)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(120)
        assert p.exitcode == 0
    report = store.verify_audit()
    assert report.ok, report.reason
    assert report.checked == 120


def test_dropping_the_batch_items_key_keeps_every_item(tmp_path: Path) -> None:
    """Migration 0010 rebuilds SQLite's ``batch_items`` without its foreign key: the rows survive."""
    from smki.store.migrate import upgrade

    store = Store.open(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        upgrade(store.engine, "0009")
        with store.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO batch_jobs (id, ref, party_id, aro_id, route, interface, client_ref, status, total, "
                "processed, issued, rejected, created_at, expires_at) VALUES (7, 'r', 'P', 'A', 'gateway', 'json', "
                "'c', 'QUEUED', 2, 1, 1, 0, '2026-12-06 00:00:00.000000', '2027-01-05 00:00:00.000000')"))
            conn.execute(text("INSERT INTO batch_items (batch_id, idx, item_id, csr, outcome, serial) VALUES "
                              "(7, 0, 'a', x'3001', 'ok', 'ab'), (7, 1, 'b', x'3002', NULL, NULL)"))
        store.migrate()
        with store.engine.connect() as conn:
            rows = conn.execute(text("SELECT batch_id, idx, item_id, csr, outcome, serial FROM batch_items "
                                     "ORDER BY idx")).all()
            keys = conn.execute(text("PRAGMA foreign_key_list(batch_items)")).all()
        assert [tuple(r) for r in rows] == [(7, 0, "a", b"\x30\x01", "ok", "ab"), (7, 1, "b", b"\x30\x02", None, None)]
        assert keys == []
    finally:
        store.close()


_retire_runs = iter(range(1, 10**6))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(held=st.lists(st.tuples(st.integers(0, 2), st.sampled_from([Usage.DS, Usage.KA]),
                               st.sampled_from([CertStatus.IN_USE, CertStatus.NOT_IN_USE])), max_size=6,
                     unique_by=lambda row: row[:2]),
       device=st.integers(0, 2), usage=st.sampled_from([Usage.DS, Usage.KA]))
def test_retiring_one_pair_matches_the_general_path(store: Store, held: list[tuple[int, Usage, CertStatus]],
                                                    device: int, usage: Usage) -> None:
    """One (Device, usage) — a single CSR — is retired by a lone UPDATE; a set of pairs by a look-up
    first. Given the same certificates, both change the same ones and report the same count (the
    general path is forced by a second pair naming a Device with no certificate)."""
    outcomes = []
    for single in (True, False):
        run = next(_retire_runs)
        devices = [bytes.fromhex(f"00ee{run:08x}{d:04x}") for d in range(4)]
        rows = [device_cert(run * 100 + n, device=devices[d], usage=u, status=s)
                for n, (d, u, s) in enumerate(held)]
        if rows:
            issue(store, *rows)
        pairs = [(devices[device], usage)] + ([] if single else [(devices[3], Usage.DS)])
        with store.transaction() as tx:
            changed = tx.retire_in_use_device_certificates(pairs)
            tx.append_audit([AuditEvent("test", "certificate.retired", "x")])
        after = sorted((devices.index(r.device_id), r.usage.value, r.status.value)  # type: ignore[arg-type, union-attr]
                       for d in devices for r in store.certificates_for_device(d))
        outcomes.append((changed, after))
    assert outcomes[0] == outcomes[1]


def _one_certificate(store: Store, serial: int, device: bytes, key: bytes, *, pipelined: bool,
                     retire: bool = True) -> int:
    """One certificate's commit as a single CSR makes it: retire the Device's in-use one, add the
    new one and its key, audit; inside ``pipelined()`` or not. Returns the retirement's count."""
    from contextlib import nullcontext

    from smki.store.certified_keys import certified_key_writes

    with store.transaction() as tx, tx.pipelined() if pipelined else nullcontext():
        retired = tx.retire_in_use_device_certificates([(device, Usage.DS)]) if retire else 0
        tx.copy_certificates([(normalise_serial(serial), "device", "DS", "40" * 8, device, None, None, "I", NOW,
                               NOW + timedelta(days=1), b"\x30\x00", NOW, "b", NOW)], count=1)
        certified_key_writes(tx).record([(key, normalise_serial(serial))])
        tx.append_audit([AuditEvent("test", "certificate.issued", normalise_serial(serial))])
    return retired


def _device_state(store: Store, device: bytes) -> list[tuple[str, str]]:
    return sorted((r.serial, r.status.value) for r in store.certificates_for_device(device))


def test_one_certificate_s_commit_pipelined_leaves_what_it_leaves_unpipelined(store: Store) -> None:
    """``Transaction.pipelined()`` (PostgreSQL: one round trip for the writes and the audit head's
    read) commits the same rows and audit chain as the same writes one by one, and refuses what
    they refuse with the same codes, committing nothing (on SQLite it changes nothing)."""
    pipelined, plain = bytes.fromhex("00db00000000e001"), bytes.fromhex("00db00000000e002")
    for device, flag, base in ((pipelined, True, 0x100), (plain, False, 0x200)):
        _one_certificate(store, base + 1, device, bytes([base >> 8]) * 15 + b"\x01", pipelined=flag)
        retired = _one_certificate(store, base + 2, device, bytes([base >> 8]) * 15 + b"\x02", pipelined=flag)
        assert retired == (0 if flag and store.dialect == "postgresql" else 1)  # pipelined: not waited for
    assert [status for _, status in _device_state(store, pipelined)] == ["N", "I"]
    assert [status for _, status in _device_state(store, plain)] == ["N", "I"]
    assert store.verify_audit().ok
    head = store.audit_head()
    refusals = [  # (serial, device, key, retire) → the code, the same whether pipelined or not
        ((0x101, bytes.fromhex("00db00000000e003"), b"\x03" * 16, True), "store.duplicate-serial"),
        ((0x301, pipelined, b"\x04" * 16, False), "store.duplicate-in-use"),
        ((0x302, bytes.fromhex("00db00000000e004"), b"\x01" * 15 + b"\x01", True), "store.duplicate-key"),
    ]
    for (serial, device, key, retire), code in refusals:
        for flag in (True, False):
            with pytest.raises(SmkiError) as refused:
                _one_certificate(store, serial, device, key, pipelined=flag, retire=retire)
            assert refused.value.code == code, (flag, refused.value)
    assert store.audit_head() == head and store.verify_audit().ok
    assert [status for _, status in _device_state(store, pipelined)] == ["N", "I"]
    assert store.certificate_by_serial(0x302) is None and store.certificate_by_serial(0x301) is None


def test_a_pipelined_commit_waits_once_and_leaves_its_connection_as_it_found_it(store: Store) -> None:
    """PostgreSQL: the transaction's ``BEGIN`` travels in the pipeline with the writes, so they and
    the audit head's read take one wait for answers (psycopg's own ``BEGIN`` would wait for its
    answer first); the connection then goes back to the pool out of autocommit, after a commit or
    a refusal, and the next transactions on it are transactions (a rollback undoes their writes)."""
    if store.dialect != "postgresql":
        pytest.skip("pipelines are PostgreSQL's")
    from psycopg._pipeline_base import BasePipeline

    syncs: list[object] = []
    real = BasePipeline._sync_gen

    def counted(self: BasePipeline) -> object:
        syncs.append(self)
        return real(self)

    device = bytes.fromhex("00db00000000e101")
    BasePipeline._sync_gen = counted  # type: ignore[method-assign]
    try:
        _one_certificate(store, 0x501, device, b"\x05" * 16, pipelined=True)
    finally:
        BasePipeline._sync_gen = real  # type: ignore[method-assign]
    assert len(syncs) == 1
    with pytest.raises(SmkiError):
        _one_certificate(store, 0x501, device, b"\x06" * 16, pipelined=True)  # a repeated serial
    for _ in range(3):  # whichever pooled connection comes: in a transaction, not autocommit
        with store.engine.connect() as conn:
            assert conn.connection.driver_connection.autocommit is False  # type: ignore[union-attr]
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.add_certificates([device_cert(0x502, device=bytes.fromhex("00db00000000e102"))])
        tx.append_audit([AuditEvent("test", "certificate.issued", "x")])
        raise RuntimeError("rolled back")
    assert store.certificate_by_serial(0x502) is None
    assert [status for _, status in _device_state(store, device)] == ["I"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(certificates=st.integers(0, 3), key_known=st.booleans(), with_ca=st.booleans(), probe=st.integers(0, 2))
def test_a_single_csr_s_reads_together_are_the_three_reads(store: Store, certificates: int, key_known: bool,
                                                           with_ca: bool, probe: int) -> None:
    """``single_device_reads`` (PostgreSQL: one round trip) answers what ``count_device_certificates``,
    ``ca_certificate(DEVICE_CA)`` and the key register's look-up answer, whatever the store holds:
    a Device with or without certificates, a key certified or new, a Device CA or none yet."""
    import uuid

    from smki.store.certified_keys import certified_key_reads, certified_key_writes

    tag = uuid.uuid4().int
    device = (0x00DE_0000_0000_0000 + tag % 2**40).to_bytes(8, "big")
    key = tag.to_bytes(16, "big")
    serial = tag % 2**100
    with store.transaction() as tx:
        rows = [device_cert(serial + n, device=device, usage=Usage.DS if n % 2 else Usage.KA,
                            status=CertStatus.NOT_IN_USE) for n in range(certificates)]
        if with_ca and store.ca_certificate(CertKind.DEVICE_CA) is None:
            rows.append(NewCertificate(serial=normalise_serial(serial + 99), kind=CertKind.DEVICE_CA,
                                       issuer_key_id="41" * 8, status=CertStatus.IN_USE, not_before=NOW,
                                       not_after=NOW + timedelta(days=1), der=b"\x30\x01" + key, issued_at=NOW))
        if rows:
            tx.add_certificates(rows)
        if key_known:
            certified_key_writes(tx).record([(key, normalise_serial(serial + 98))])
        tx.append_audit([AuditEvent("test", "certificate.issued", str(tag))])
    asked_device = [device, bytes(8), DEVICE][probe]
    asked_key = [key, bytes(16), key[::-1]][probe]
    together = store.single_device_reads(asked_device, asked_key)
    ca = store.ca_certificate(CertKind.DEVICE_CA)
    assert together.device_certificates == store.count_device_certificates(asked_device)
    assert together.device_ca_der == (None if ca is None else ca.der)
    assert together.key_certified_as == certified_key_reads(store).serials([asked_key]).get(asked_key)
    with store.held_reads():  # a request's held connection: the same answers
        assert store.single_device_reads(asked_device, asked_key) == together


def test_a_commit_whose_audit_records_are_refused_commits_nothing(store: Store) -> None:
    """The audit records go to the database last (on PostgreSQL with the ``COMMIT`` itself): when
    they are refused — here a record planted behind the head's back holds the next number — the
    transaction's certificate is not committed either, and the error is a coded one."""
    planted = store.audit_head()[0] + 1
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash) "
            f"VALUES ({planted}, 'x', 'x', 'x', 'x', '{{}}', {_blob(store)}, {_blob(store)})")
    try:
        with pytest.raises(SmkiError) as refused:
            issue(store, device_cert(0x601, device=bytes.fromhex("00db00000000e201")))
        assert refused.value.code == "store.audit-conflict"
        assert store.certificate_by_serial(0x601) is None
    finally:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(f"DELETE FROM audit_log WHERE seq = {planted}")
    issue(store, device_cert(0x601, device=bytes.fromhex("00db00000000e201")))  # the same, once it can be
    assert store.certificate_by_serial(0x601) is not None and store.verify_audit().ok


def _blob(store: Store) -> str:
    return "'\\x00'::bytea" if store.dialect == "postgresql" else "x'00'"
