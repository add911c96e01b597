"""The register of certified keys: every public key smki has put in a certificate, by fingerprint.

Why a table of its own rather than a column of ``certificates``: the look-up is by key alone, across
every kind of certificate, and the row is small; the batch writer adds one row per certificate in
the transaction that adds the certificate, and its primary key makes a race between two batches
certifying the same key fail that commit rather than certify the key twice.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from smki.store.driver import pg_fixed_width_any, pg_packed_rows, placeholder, use_c_bytea_dumper
from smki.store.reads import holding, read_connection
from smki.store.store import Store
from smki.store.transaction import Transaction, duplicate_key, integrity_error

#: Keys per look-up on SQLite (well under its 32,766 parameters): a commit's keys in one or two queries.
_PART = 4000


def _serials(conn: Connection, fingerprints: Collection[bytes]) -> dict[bytes, str]:
    wanted = sorted(set(fingerprints))
    found: dict[bytes, str] = {}
    if conn.dialect.name == "postgresql":  # one query, the keys as one parameter
        packed = pg_fixed_width_any(wanted, 16)
        any_of, params = packed if packed is not None else ("ANY(%s)", (wanted,))
        rows = conn.exec_driver_sql(f"SELECT fingerprint, serial FROM certified_keys WHERE fingerprint = {any_of}",
                                    params)
        found.update((bytes(fingerprint), serial) for fingerprint, serial in rows)
        return found
    mark = placeholder(conn)
    for start in range(0, len(wanted), _PART):
        part = wanted[start:start + _PART]
        rows = conn.exec_driver_sql(
            f"SELECT fingerprint, serial FROM certified_keys WHERE fingerprint IN ({', '.join([mark] * len(part))})",
            tuple(part),
        )
        found.update((bytes(fingerprint), serial) for fingerprint, serial in rows)
    return found


class CertifiedKeyReads:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._held: Connection | None = None

    def serials(self, fingerprints: Collection[bytes]) -> dict[bytes, str]:
        """The latest certificate serial of each fingerprint that is certified (one look-up per 500)."""
        if not fingerprints:
            return {}
        if self._held is not None:
            return _serials(self._held, fingerprints)
        with read_connection(self._engine) as conn:
            return _serials(conn, fingerprints)

    @contextmanager
    def held(self) -> Iterator[None]:
        """For a run of look-ups (a batch's screen: one per chunk), on PostgreSQL one connection in
        autocommit for all of them: each look-up still sees every key committed before it (no
        transaction, so no snapshot, stays open between them), without a pool checkout and its
        reset (a round trip) per chunk — measured ~0.25 µs of the writer's CPU and 2 to 4 µs of its
        time per key at chunks of 500. SQLite keeps a checkout per look-up (no network, and
        no autocommit mode to trust with its write lock)."""
        if self._engine.dialect.name != "postgresql" or self._held is not None or holding(self._engine):
            yield
            return
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            self._held = conn
            try:
                yield
            finally:
                self._held = None


class CertifiedKeyWrites:
    """Inside ``store.transaction()``, with the certificates they are for."""

    def __init__(self, tx: Transaction) -> None:
        self._conn = tx._conn  # same package: the transaction's connection

    def serials(self, fingerprints: Collection[bytes]) -> dict[bytes, str]:
        return _serials(self._conn, fingerprints) if fingerprints else {}

    def record(self, pairs: Sequence[tuple[bytes, str]], *, packed: bool | None = None) -> None:
        """Add (fingerprint, serial) rows; a key already present fails the transaction (store.duplicate-key).

        PostgreSQL: one ``INSERT … SELECT`` of the rows packed into two ``bytea`` parameters (the
        batch writer's rows: 16-octet fingerprints, serials of 32 lower-case hex digits), else a
        binary ``COPY`` (the general path; ``packed=False`` forces it, for the test comparing them).
        SQLite: one ``executemany``.
        """
        if not pairs:
            return
        try:
            if self._conn.dialect.name != "postgresql":
                mark = placeholder(self._conn)
                self._conn.exec_driver_sql(
                    f"INSERT INTO certified_keys (fingerprint, serial) VALUES ({mark}, {mark})", list(pairs))
            elif packed is False or not self._insert_packed(pairs):
                self._copy(pairs)
        except IntegrityError as exc:  # named from the error, not assumed: inside ``Transaction.pipelined``
            raise integrity_error(exc) from exc  # an earlier statement's error can surface at this one

    def _insert_packed(self, pairs: Sequence[tuple[bytes, str]]) -> bool:
        """The rows as two ``bytea`` the server cuts up (:func:`pg_packed_rows`): a third of the
        writer's CPU of a binary ``COPY`` (which encodes row by row). False, having written nothing,
        when a row does not fit (another fingerprint width, a serial not in its stored form)."""
        serials = "".join([serial for _, serial in pairs])
        if len(serials) != 32 * len(pairs) or not serials.isascii() or serials != serials.lower():
            return False
        try:
            serial_octets = bytes.fromhex(serials)
        except ValueError:
            return False
        if len(serial_octets) != 16 * len(pairs):  # fromhex skips spaces: not a serial's stored form
            return False
        fingerprints = [fingerprint for fingerprint, _ in pairs]
        if any(len(fingerprint) != 16 for fingerprint in fingerprints):
            return False
        if len(pairs) == 1:  # a single CSR's key: a plain row costs the server less than the packed form
            self._conn.exec_driver_sql("INSERT INTO certified_keys (fingerprint, serial) VALUES (%s, %s)",
                                       (fingerprints[0], serials))
            return True
        rows = pg_packed_rows(len(pairs), [(b"".join(fingerprints), 16), (serial_octets, 16)])
        if rows is None:
            return False
        select, params = rows
        self._conn.exec_driver_sql(
            f"INSERT INTO certified_keys (fingerprint, serial) SELECT f, encode(s, 'hex') FROM ({select}) AS r(f, s)",
            params)
        return True

    def _copy(self, pairs: Sequence[tuple[bytes, str]]) -> None:
        """PostgreSQL's general path: ``COPY`` (binary), several times faster than an ``executemany``."""
        import psycopg

        raw = self._conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        if raw.info.pipeline_status != psycopg.pq.PipelineStatus.OFF:  # ``Transaction.pipelined``: no COPY
            self._conn.exec_driver_sql("INSERT INTO certified_keys (fingerprint, serial) VALUES (%s, %s)",
                                       list(pairs))
            return
        try:
            with raw.cursor() as cursor:
                use_c_bytea_dumper(cursor)
                with cursor.copy("COPY certified_keys (fingerprint, serial) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(["bytea", "varchar"])
                    for pair in pairs:
                        copy.write_row(pair)
        except psycopg.errors.UniqueViolation as exc:  # raw driver: SQLAlchemy does not wrap these
            raise duplicate_key() from exc

    def move(self, fingerprint: bytes, serial: str) -> None:
        """Point a certified key at its newest certificate (an Organisation re-issue, spec §7.6)."""
        mark = placeholder(self._conn)
        self._conn.exec_driver_sql(
            f"UPDATE certified_keys SET serial = {mark} WHERE fingerprint = {mark}", (serial, fingerprint))


def certified_key_reads(store: Store) -> CertifiedKeyReads:
    return CertifiedKeyReads(store.engine)


def certified_key_writes(tx: Transaction) -> CertifiedKeyWrites:
    return CertifiedKeyWrites(tx)
