"""The reads every issuance makes are index reads, never a scan of the certificates table (issue 15).

A scan costs in proportion to the store: single-CSR issuance read the newest in-use CA certificate
by walking the table backwards from its newest row, and slowed from ~9 ms to ~37 ms between 2,000
and 100,000 certificates. Here every statement a read really sends (captured from the engine) is
put through the engine's own planner: SQLite's ``EXPLAIN QUERY PLAN`` must not say ``SCAN
certificates``; PostgreSQL's ``EXPLAIN``, with sequential scans made as costly as they can be (on a
table this small the planner would otherwise rightly prefer them), must not say ``Seq Scan on
certificates``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import event

from smki.audit import AuditEvent
from smki.domain import CertKind, CertStatus, Usage
from smki.store import Store
from smki.store.records import NewCertificate

NOW = datetime(2026, 12, 6, tzinfo=UTC)
DEVICE = bytes.fromhex("00db000000000001")


def _fill(store: Store) -> None:
    rows = [NewCertificate(serial=f"{i:032x}", kind=kind, usage=None, issuer_key_id="00" * 20, device_id=None,
                           entity_id=None, role=None, status=CertStatus.IN_USE, not_before=NOW, not_after=NOW,
                           der=b"\x30\x00", issued_at=NOW)
            for i, kind in enumerate((CertKind.ROOT, CertKind.ORGANISATION_CA, CertKind.DEVICE_CA), start=1)]
    rows += [NewCertificate(serial=f"{i:032x}", kind=CertKind.DEVICE, usage=Usage.DS, issuer_key_id="00" * 20,
                            device_id=(0x00DB000000000000 + i).to_bytes(8, "big"), entity_id=None, role=None,
                            status=CertStatus.IN_USE, not_before=NOW, not_after=NOW, der=b"\x30\x00", issued_at=NOW)
             for i in range(10, 60)]
    with store.transaction() as tx:
        tx.add_certificates(rows)
        tx.append_audit([AuditEvent("test", "test.fill", "certificates")])


@contextmanager
def _statements(store: Store) -> Iterator[list[tuple[str, object]]]:
    seen: list[tuple[str, object]] = []

    def capture(conn: object, cursor: object, statement: str, parameters: object, context: object,
                executemany: bool) -> None:
        if "certificates" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)


def _plan(store: Store, statement: str, parameters: object) -> str:
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)  # type: ignore[arg-type]
            return "\n".join(str(row[-1]) for row in rows)
        conn.exec_driver_sql("SET enable_seqscan = off")
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters)  # type: ignore[arg-type]
        return "\n".join(str(row[0]) for row in rows)


def _retire(store: Store) -> None:
    with store.transaction() as tx:
        tx.retire_in_use_device_certificates([(DEVICE, Usage.DS), (bytes.fromhex("00db00000000000a"), Usage.KA)])


READS: dict[str, Callable[[Store], object]] = {
    "device CA": lambda s: s.ca_certificate(CertKind.DEVICE_CA),
    "organisation CA": lambda s: s.ca_certificate(CertKind.ORGANISATION_CA),
    "root": lambda s: s.ca_certificate(CertKind.ROOT),
    "by serial": lambda s: s.certificate_by_serial(f"{20:032x}"),
    "a device's certificates": lambda s: s.certificates_for_device(DEVICE),
    "per-Device count": lambda s: s.count_device_certificates(DEVICE),
    "per-Device counts, many": lambda s: s.device_certificate_counts([DEVICE, bytes.fromhex("00db00000000000a")]),
    "in-use look-up before re-issue": _retire,
}


@pytest.mark.parametrize("name", sorted(READS))
def test_issuance_reads_use_an_index(store: Store, name: str) -> None:
    _fill(store)
    with _statements(store) as seen:
        READS[name](store)
    assert seen, "the read sent no statement on certificates"
    for statement, parameters in seen:
        plan = _plan(store, statement, parameters)
        assert "SCAN certificates" not in plan and "Seq Scan on certificates" not in plan, (statement, plan)


def test_the_ca_read_finds_the_newest_in_use_ca_certificate(store: Store) -> None:
    _fill(store)
    found = store.ca_certificate(CertKind.DEVICE_CA)
    assert found is not None and found.kind is CertKind.DEVICE_CA and found.serial == f"{3:032x}"
    with store.transaction() as tx:
        tx.set_certificate_status(f"{3:032x}", CertStatus.NOT_IN_USE)
        tx.append_audit([AuditEvent("test", "test.retire", "device-ca")])
    assert store.ca_certificate(CertKind.DEVICE_CA) is None
    with pytest.raises(Exception, match="not a CA certificate kind"):
        store.ca_certificate(CertKind.DEVICE)


def test_a_party_with_its_dated_periods_is_one_statement_on_the_indexes(store: Store) -> None:
    """Every certificate request reads its Party; the Gateway Connections and Registered User roles
    (dated rows since migration 0013) come in the same statement, through ``party_periods``' index."""
    from datetime import date

    with store.transaction() as tx:
        for n in range(40):
            tx.registry.add_party(f"P{n}", "Party", "large-supplier")
            tx.registry.start_period(f"P{n}", "gateway-connection", f"GW-{n}", on=date(2020, 1, 1), by="t")
            tx.registry.end_period(f"P{n}", "gateway-connection", f"GW-{n}", on=date(2021, 1, 1), by="t")
            tx.registry.start_period(f"P{n}", "registered-role", "import-supplier", on=date(2020, 1, 1), by="t")
        tx.append_audit([AuditEvent("test", "test.fill", "parties")])
    seen: list[tuple[str, object]] = []

    def capture(conn: object, cursor: object, statement: str, parameters: object, context: object,
                executemany: bool) -> None:
        seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        party = store.registry.party("P7")
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    assert party is not None and party.in_force("gateway-connection", date(2020, 6, 1)) == ("GW-7",)
    queries = [(s, p) for s, p in seen if s.lstrip().upper().startswith("SELECT")]
    assert len(queries) == 1
    plan = _plan(store, *queries[0])
    assert "SCAN party_periods" not in plan and "Seq Scan on party_periods" not in plan, plan
