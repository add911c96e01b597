"""``smki audit verify`` catches every kind of tampering with the stored audit log, naming the record."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, text

from tests.cli.helpers import smki


def _edit(conn: Connection) -> None:
    conn.execute(text("UPDATE audit_log SET subject = 'forged' WHERE seq = 2"))


def _delete(conn: Connection) -> None:
    conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))


def _reorder(conn: Connection) -> None:
    rows = {r.seq: r for r in conn.execute(text("SELECT * FROM audit_log WHERE seq IN (2, 3)"))}
    for target, source in ((2, rows[3]), (3, rows[2])):
        conn.execute(
            text("UPDATE audit_log SET at=:at, actor=:actor, action=:action, subject=:subject, details=:details, "
                 "prev_hash=:prev_hash, hash=:hash WHERE seq=:seq"),
            {**source._mapping, "seq": target},
        )


def _insert(conn: Connection) -> None:
    conn.execute(text("UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 2"))
    conn.execute(text("UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1002"))
    row = conn.execute(text("SELECT * FROM audit_log WHERE seq = 1")).one()
    conn.execute(
        text("INSERT INTO audit_log (seq, at, actor, action, subject, details, prev_hash, hash) "
             "VALUES (2, :at, 'mallory', 'certificate.issued', 'x', '{}', :prev_hash, :hash)"),
        {"at": row.at, "prev_hash": row.hash, "hash": row.hash},
    )


@pytest.mark.parametrize(("tamper", "first_bad"), [(_edit, 2), (_delete, 2), (_reorder, 2), (_insert, 2)])
def test_verify_names_the_first_bad_record(ca_home: Path, env: dict[str, str], database_url: str,
                                           tamper: Callable[[Connection], None], first_bad: int) -> None:
    ok = smki(["audit", "verify", "--home", str(ca_home)], env)
    assert ok.code == 0 and "5 records" in ok.out, ok.out + ok.err  # 3 CA certificates, CRL #1, ARL #1
    engine = create_engine(database_url)
    with engine.begin() as conn:
        tamper(conn)
    engine.dispose()
    broken = smki(["audit", "verify", "--home", str(ca_home)], env)
    assert broken.code == 1
    assert f"at record {first_bad}" in broken.err
    assert "Traceback" not in broken.err
