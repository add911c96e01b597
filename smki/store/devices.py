"""The device register in the store: Devices by ID with their SMI status and responsible Parties, and
every dated change (issue 13). Request-time look-ups are by primary key, one query per 500 Device
IDs; bulk imports are streamed in chunks, each one transaction (PostgreSQL: binary ``COPY`` into a
temporary table, then one upsert and one insert; SQLite, and small sets on PostgreSQL: two
``executemany``). Bulk rows come as plain tuples (:data:`DeviceRecord`), not a record object each."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, Engine

from smki.store.driver import pg_fixed_width_any, placeholder, use_c_bytea_dumper
from smki.store.reads import read_connection
from smki.store.store import Store
from smki.store.transaction import Transaction

_PART = 500
#: From this many rows a PostgreSQL write takes the ``COPY`` path (below it the row-by-row upsert is cheaper).
COPY_FROM = 200
#: A register row as a bulk import hands it to the store: Device ID, device type, SMI status, Import
#: Supplier, Gas Supplier, Network Operator, and the date it takes effect (DeviceRow's field order).
DeviceRecord = tuple[bytes, str, str, str | None, str | None, str | None, date]
_COPY_TYPES = ["int4", "bytea", "text", "text", "text", "text", "text", "date"]
_HISTORY_TYPES = ["bytea", "varchar", "varchar", "varchar", "varchar", "varchar", "date", "varchar"]
_FIELDS = ("device_id", "device_type", "smi_status", "import_supplier", "gas_supplier", "network_operator")


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A Device's register state from ``effective`` on."""

    device_id: bytes
    device_type: str
    smi_status: str
    import_supplier: str | None
    gas_supplier: str | None
    network_operator: str | None
    effective: date


@dataclass(frozen=True, slots=True)
class DeviceChangeRecord:
    row: DeviceRow
    recorded_by: str


def _row(values: Sequence[Any]) -> DeviceRow:
    device_id, device_type, status, import_supplier, gas_supplier, network_operator, changed = values
    if isinstance(changed, str):  # SQLite's driver hands dates back as text
        changed = date.fromisoformat(changed)
    return DeviceRow(bytes(device_id), str(device_type), str(status), import_supplier, gas_supplier,
                     network_operator, changed)


def _entries(conn: Connection, device_ids: Collection[bytes]) -> dict[bytes, DeviceRow]:
    wanted = sorted(set(device_ids))
    found: dict[bytes, DeviceRow] = {}
    if conn.dialect.name == "postgresql":  # one query, the IDs as one array parameter
        rows = conn.exec_driver_sql(
            f"SELECT {', '.join(_FIELDS)}, changed_on FROM devices WHERE device_id = ANY(%s)", (wanted,))
        for values in rows:
            entry = _row(tuple(values))
            found[entry.device_id] = entry
        return found
    mark = placeholder(conn)
    for start in range(0, len(wanted), _PART):
        part = wanted[start:start + _PART]
        rows = conn.exec_driver_sql(
            f"SELECT {', '.join(_FIELDS)}, changed_on FROM devices WHERE device_id IN "
            f"({', '.join([mark] * len(part))})", tuple(part))
        for values in rows:
            entry = _row(tuple(values))
            found[entry.device_id] = entry
    return found


def _in_force(conn: Connection, device_ids: Collection[bytes], on: date) -> dict[bytes, DeviceRow]:
    """The state in force on ``on``: the snapshot when it already took effect (it is each Device's
    latest-dated change, so no other change can be in force instead), else, for those few Devices
    whose latest change is still to come, their latest change dated ``on`` or before, from the history."""
    found = _entries(conn, device_ids)
    later = sorted(d for d, entry in found.items() if entry.effective > on)
    if not later:
        return found
    mark = placeholder(conn)
    for device_id in later:
        del found[device_id]
    for start in range(0, len(later), _PART):
        part = later[start:start + _PART]
        rows = conn.exec_driver_sql(
            f"SELECT {', '.join(_FIELDS)}, effective FROM device_changes WHERE device_id IN "
            f"({', '.join([mark] * len(part))}) AND effective <= {mark} ORDER BY effective, id", (*part, on))
        for values in rows:  # in date then record order: the last one per Device is the one in force
            entry = _row(tuple(values))
            found[entry.device_id] = entry
    return found


class DeviceReads:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def entries(self, device_ids: Collection[bytes]) -> dict[bytes, DeviceRow]:
        """The register entries of these Device IDs as last dated (absent: unknown to the register);
        an entry's ``effective`` may still be to come (see :meth:`entries_on`)."""
        if not device_ids:
            return {}
        with read_connection(self._engine) as conn:
            return _entries(conn, device_ids)

    def entries_on(self, device_ids: Collection[bytes], on: date) -> dict[bytes, DeviceRow]:
        """The entries in force on ``on``: a change dated later does not apply yet, and a Device
        whose first change is dated later is absent (unknown to the register on that date).
        One primary-key query, plus one history query only for Devices with a change still to come."""
        if not device_ids:
            return {}
        with read_connection(self._engine) as conn:
            return _in_force(conn, device_ids, on)

    def facts_on(self, device_ids: Collection[bytes], on: date,
                 ) -> dict[bytes, tuple[str, str | None, str | None, str | None]]:
        """(SMI status, import supplier, gas supplier, network operator) in force on ``on`` (as
        :meth:`entries_on`), as the driver's tuples: what the eligibility screen reads per chunk of
        a batch, without making a record per Device. One primary-key query; Devices with a change
        still to come (rare) are read again through the history."""
        if not device_ids:
            return {}
        columns = "device_id, smi_status, import_supplier, gas_supplier, network_operator, changed_on"
        found: dict[bytes, tuple[str, str | None, str | None, str | None]] = {}
        later: list[bytes] = []
        on_text = on.isoformat()  # SQLite's driver hands dates back as text
        with read_connection(self._engine) as conn:
            wanted = list(device_ids)
            parts: list[tuple[str, tuple[object, ...]]]
            if conn.dialect.name == "postgresql":  # one query, the IDs as one parameter
                packed = pg_fixed_width_any(wanted, 8)
                any_of, values = packed if packed is not None else ("ANY(%s)", (wanted,))
                parts = [(f"SELECT {columns} FROM devices WHERE device_id = {any_of}", values)]
            else:
                mark = placeholder(conn)
                parts = [(f"SELECT {columns} FROM devices WHERE device_id IN ({', '.join([mark] * len(part))})",
                          tuple(part)) for part in (wanted[at:at + _PART] for at in range(0, len(wanted), _PART))]
            for sql, params in parts:
                rows = conn.exec_driver_sql(sql, params)
                for device_id, status, import_supplier, gas_supplier, network_operator, changed in rows:
                    if (changed > on_text) if isinstance(changed, str) else (changed > on):
                        later.append(bytes(device_id))
                        continue
                    found[bytes(device_id)] = (status, import_supplier, gas_supplier, network_operator)
            if later:
                for device_id, row in _in_force(conn, later, on).items():
                    found[device_id] = (row.smi_status, row.import_supplier, row.gas_supplier, row.network_operator)
        return found

    def history(self, device_id: bytes) -> list[DeviceChangeRecord]:
        """Every recorded change of one Device, oldest first."""
        with read_connection(self._engine) as conn:
            mark = placeholder(conn)
            rows = conn.exec_driver_sql(
                f"SELECT {', '.join(_FIELDS)}, effective, recorded_by FROM device_changes WHERE device_id = {mark} "
                "ORDER BY id", (device_id,))
            return [DeviceChangeRecord(_row(tuple(values)[:7]), values[7]) for values in rows]

    def page(self, after: bytes | None, limit: int, status: str | None = None) -> list[DeviceRow]:
        """Entries in Device ID order after ``after`` (keyset pagination), optionally of one status."""
        with read_connection(self._engine) as conn:
            mark = placeholder(conn)
            where: list[str] = []
            params: list[object] = []
            if after is not None:
                where.append(f"device_id > {mark}")
                params.append(after)
            if status is not None:
                where.append(f"smi_status = {mark}")
                params.append(status)
            clause = f"WHERE {' AND '.join(where)} " if where else ""
            rows = conn.exec_driver_sql(
                f"SELECT {', '.join(_FIELDS)}, changed_on FROM devices {clause}ORDER BY device_id LIMIT {int(limit)}",
                tuple(params))
            return [_row(tuple(values)) for values in rows]

    def count(self) -> int:
        with read_connection(self._engine) as conn:
            return int(conn.exec_driver_sql("SELECT COUNT(*) FROM devices").scalar_one())


class DeviceWrites:
    """Inside ``store.transaction()``: register entries and their dated changes, many at once."""

    def __init__(self, tx: Transaction) -> None:
        self._conn = tx._conn  # same package: the transaction's connection

    def entries(self, device_ids: Collection[bytes]) -> dict[bytes, DeviceRow]:
        return _entries(self._conn, device_ids) if device_ids else {}

    def put(self, rows: Sequence[DeviceRow], recorded_by: str) -> None:
        """Add one change row each, and keep each Device's entry (the snapshot) at its latest-dated
        change: a row replaces it when dated the same day or later (so the last row wins for a
        repeated Device ID and date), never when back-dated. A change dated in the future is thus in
        the snapshot before it takes effect; readers ask for the state on a date (:meth:`DeviceReads.entries_on`)."""
        self.put_records([(r.device_id, r.device_type, r.smi_status, r.import_supplier, r.gas_supplier,
                           r.network_operator, r.effective) for r in rows], recorded_by)

    def put_records(self, records: Sequence[DeviceRecord], recorded_by: str) -> None:
        """:meth:`put` for rows already as plain tuples in :data:`DeviceRecord` order: what a bulk import
        hands over, without a record object per row.

        Small sets (under :data:`COPY_FROM` rows, and every set on SQLite) take the general path: one
        row-by-row upsert and one insert (``executemany``). On PostgreSQL larger sets are copied
        (binary ``COPY``) into a temporary table, then moved by two set statements; both paths leave
        the same register (tests/store/test_device_bulk.py)."""
        if not records:
            return
        if self._conn.dialect.name == "postgresql" and len(records) >= COPY_FROM:
            self._put_copy(records, recorded_by)
            return
        mark = placeholder(self._conn)
        marks = ", ".join([mark] * 7)
        updates = ", ".join(f"{f} = excluded.{f}" for f in (*_FIELDS[1:], "changed_on"))
        self._conn.exec_driver_sql(
            f"INSERT INTO devices ({', '.join(_FIELDS)}, changed_on) VALUES ({marks}) "
            f"ON CONFLICT (device_id) DO UPDATE SET {updates} WHERE excluded.changed_on >= devices.changed_on",
            list(records))
        self._conn.exec_driver_sql(
            f"INSERT INTO device_changes ({', '.join(_FIELDS)}, effective, recorded_by) VALUES ({marks}, {mark})",
            [(*r, recorded_by) for r in records])

    def _put_copy(self, records: Sequence[DeviceRecord], recorded_by: str) -> None:
        """The PostgreSQL bulk path: binary ``COPY`` of the rows (numbered, so that the last of a
        repeated Device ID and date wins as it does row by row) into a temporary table, then the
        snapshot upsert from it in one statement (each Device's latest-dated row, only over an entry
        dated the same day or earlier); and a second ``COPY`` of the rows straight into the history."""
        import psycopg

        raw = self._conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        columns = ", ".join((*_FIELDS, "changed_on"))
        with raw.cursor() as cursor:
            use_c_bytea_dumper(cursor)
            cursor.execute(
                "CREATE TEMPORARY TABLE IF NOT EXISTS devices_in (n int4, device_id bytea, device_type text, "
                "smi_status text, import_supplier text, gas_supplier text, network_operator text, changed_on date) "
                "ON COMMIT DELETE ROWS")
            with cursor.copy(f"COPY devices_in (n, {columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_COPY_TYPES)
                write_row = copy.write_row
                for n, record in enumerate(records):
                    write_row((n, *record))
            updates = ", ".join(f"{f} = excluded.{f}" for f in (*_FIELDS[1:], "changed_on"))
            cursor.execute(
                f"INSERT INTO devices ({columns}) SELECT DISTINCT ON (device_id) {columns} FROM devices_in "
                f"ORDER BY device_id, changed_on DESC, n DESC ON CONFLICT (device_id) DO UPDATE SET {updates} "
                "WHERE excluded.changed_on >= devices.changed_on")
            # The history straight from the client, in the rows' order (COPY assigns ids row by row):
            # cheaper for the server than an INSERT … SELECT from the temporary table with its sort.
            with cursor.copy(f"COPY device_changes ({', '.join(_FIELDS)}, effective, recorded_by) "
                             "FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_HISTORY_TYPES)
                write_row = copy.write_row
                for record in records:
                    write_row((*record, recorded_by))


def device_reads(store: Store) -> DeviceReads:
    return DeviceReads(store.engine)


def device_writes(tx: Transaction) -> DeviceWrites:
    return DeviceWrites(tx)
