"""The key register's insert paths leave the same register (issue 15).

On PostgreSQL the batch writer's (fingerprint, serial) rows go in as one ``INSERT … SELECT`` of two
packed ``bytea`` parameters; rows that do not fit that form (another fingerprint width, a serial not
in its stored form) and ``packed=False`` take the general path, a binary ``COPY``; SQLite always
takes an ``executemany``. Hypothesis draws sets of rows, and every path must store the same rows,
refuse a key already present as ``store.duplicate-key`` and leave nothing of that transaction.
Runs on both stores (``scripts/with-postgres.sh`` for PostgreSQL's paths).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.errors import SmkiError
from smki.store import Store
from smki.store.certified_keys import CertifiedKeyWrites, certified_key_reads, certified_key_writes

_runs = itertools.count()
_serial = st.text("0123456789abcdef", min_size=32, max_size=32)
_fingerprint = st.binary(min_size=16, max_size=16)
_odd_serial = st.sampled_from(["ABCDEF0123456789ABCDEF0123456789", "1f", "0011223344556677 8899aabbccddeef"])


def _register(store: Store, fingerprints: list[bytes]) -> dict[bytes, str]:
    return certified_key_reads(store).serials(fingerprints)


def _record(store: Store, pairs: list[tuple[bytes, str]], packed: bool | None) -> None:
    with store.transaction() as tx:
        certified_key_writes(tx).record(list(pairs), packed=packed)


def _forget(store: Store, fingerprints: list[bytes]) -> None:
    with store.engine.begin() as conn:
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        conn.exec_driver_sql(f"DELETE FROM certified_keys WHERE fingerprint = {mark}", [(f,) for f in fingerprints])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_fingerprint, _serial), min_size=1, max_size=40, unique_by=lambda row: row[0]),
       odd=st.lists(st.one_of(st.tuples(st.binary(max_size=20).filter(lambda b: len(b) != 10), _serial),
                              st.tuples(_fingerprint, _odd_serial)), max_size=2))
def test_the_packed_insert_and_the_general_path_give_the_same_register(
        store: Store, monkeypatch: pytest.MonkeyPatch, rows: list[tuple[bytes, str]],
        odd: list[tuple[bytes, str]]) -> None:
    store.migrate()
    copies: list[bool | None] = []  # which calls took the general path (COPY)
    copy = CertifiedKeyWrites._copy
    monkeypatch.setattr(CertifiedKeyWrites, "_copy", lambda self, pairs: (copies.append(packed), copy(self, pairs)))
    run = next(_runs).to_bytes(4, "big")
    # every fingerprint unique within and across examples (the register outlives them); odd ones not 16 octets
    pairs = [(run + bytes([i]) + fingerprint[5:], serial) for i, (fingerprint, serial) in enumerate(rows)]
    pairs += [(run + b"\xff" + bytes([i]) + fingerprint, serial) for i, (fingerprint, serial) in enumerate(odd)]
    fingerprints = [fingerprint for fingerprint, _ in pairs]
    registers = []
    for packed in (None, False):
        _record(store, pairs, packed)
        if store.dialect == "postgresql":  # the fast path unless a row does not fit or it is refused
            assert copies == ([packed] if odd or packed is False else [])
        copies.clear()
        registers.append(_register(store, fingerprints))
        with pytest.raises(SmkiError) as refused:  # one key again, among new ones: nothing of it stays
            _record(store, [(run + b"\xfe" + bytes(11), "0" * 32), pairs[0]], packed)
        assert refused.value.code == "store.duplicate-key"
        assert _register(store, [run + b"\xfe" + bytes(11)]) == {}
        _forget(store, fingerprints)
    assert registers[0] == registers[1] == dict(pairs)
