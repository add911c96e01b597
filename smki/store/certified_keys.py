"""The register of certified keys: every public key smki has put in a certificate, by fingerprint.

Why a table of its own rather than a column of ``certificates``: the look-up is by key alone, across
every kind of certificate, and the row is small; the batch writer adds one row per certificate in
the transaction that adds the certificate, and its primary key makes a race between two batches
certifying the same key fail that commit rather than certify the key twice.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import Connection, Engine

from smki.store.driver import pg_fixed_width_any, placeholder
from smki.store.store import Store
from smki.store.transaction import Transaction

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

    def serials(self, fingerprints: Collection[bytes]) -> dict[bytes, str]:
        """The latest certificate serial of each fingerprint that is certified (one look-up per 500)."""
        if not fingerprints:
            return {}
        with self._engine.connect() as conn:
            return _serials(conn, fingerprints)


class CertifiedKeyWrites:
    """Inside ``store.transaction()``, with the certificates they are for."""

    def __init__(self, tx: Transaction) -> None:
        self._conn = tx._conn  # same package: the transaction's connection

    def serials(self, fingerprints: Collection[bytes]) -> dict[bytes, str]:
        return _serials(self._conn, fingerprints) if fingerprints else {}

    def record(self, pairs: Sequence[tuple[bytes, str]]) -> None:
        """Add (fingerprint, serial) rows; a key already present fails the transaction (store.duplicate-key)."""
        if not pairs:
            return
        from sqlalchemy.exc import IntegrityError

        from smki.errors import SmkiError

        mark = placeholder(self._conn)
        try:
            if self._conn.dialect.name == "postgresql":
                self._copy(pairs)
            else:
                self._conn.exec_driver_sql(
                    f"INSERT INTO certified_keys (fingerprint, serial) VALUES ({mark}, {mark})", list(pairs))
        except IntegrityError as exc:
            raise SmkiError("store.duplicate-key", "a key was certified twice at the same moment; "
                            "nothing of this commit was recorded") from exc

    def _copy(self, pairs: Sequence[tuple[bytes, str]]) -> None:
        """PostgreSQL: ``COPY`` (binary), several times faster than an ``executemany`` of inserts."""
        import psycopg

        raw = self._conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        try:
            with raw.cursor() as cursor, cursor.copy(
                    "COPY certified_keys (fingerprint, serial) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["bytea", "varchar"])
                for pair in pairs:
                    copy.write_row(pair)
        except psycopg.errors.UniqueViolation as exc:
            from smki.errors import SmkiError

            raise SmkiError("store.duplicate-key", "a key was certified twice at the same moment; "
                            "nothing of this commit was recorded") from exc

    def move(self, fingerprint: bytes, serial: str) -> None:
        """Point a certified key at its newest certificate (an Organisation re-issue, spec §7.6)."""
        mark = placeholder(self._conn)
        self._conn.exec_driver_sql(
            f"UPDATE certified_keys SET serial = {mark} WHERE fingerprint = {mark}", (serial, fingerprint))


def certified_key_reads(store: Store) -> CertifiedKeyReads:
    return CertifiedKeyReads(store.engine)


def certified_key_writes(tx: Transaction) -> CertifiedKeyWrites:
    return CertifiedKeyWrites(tx)
