"""Secrets shared by every server process and node, kept in the database (``service_secrets``).

A node's home directory is its own; the database is what all nodes share, so a secret that any
process must be able to check (the Portal's form-token key: a form rendered by one node is posted
to another behind the load balancer) lives here. Made on first use by whichever process gets there
first (a conditional insert: the others read the winner's); rotated in an audited transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from smki.store.driver import write_connection
from smki.store.models import service_secrets
from smki.store.reads import read_connection
from smki.store.transaction import Transaction

_s = service_secrets.c


class SharedSecret(NamedTuple):
    value: bytes
    previous: bytes | None
    rotated_at: datetime


class SecretReader:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def secret(self, name: str) -> SharedSecret | None:
        with read_connection(self._engine) as conn:
            row = conn.execute(select(_s.value, _s.previous, _s.rotated_at).where(_s.name == name)).one_or_none()
        return None if row is None else SharedSecret(bytes(row.value), None if row.previous is None
                                                     else bytes(row.previous), row.rotated_at)

    def secret_or_new(self, name: str, value: bytes, now: datetime) -> SharedSecret:
        """The stored secret, storing ``value`` first if there is none (the first process wins)."""
        found = self.secret(name)
        if found is not None:
            return found
        try:
            with write_connection(self._engine) as conn, conn.begin():
                conn.execute(insert(service_secrets).values(name=name, value=value, previous=None, rotated_at=now))
        except IntegrityError:  # another process made it first: use theirs
            pass
        found = self.secret(name)
        assert found is not None
        return found


def rotate_secret(tx: Transaction, name: str, value: bytes, now: datetime) -> None:
    """Replace a secret in ``tx`` (the caller audits it), keeping the old value as ``previous``."""
    conn = tx._conn  # same package: the transaction's connection
    changed = conn.execute(update(service_secrets).where(_s.name == name)
                           .values(previous=_s.value, value=value, rotated_at=now)).rowcount
    if changed != 1:
        conn.execute(insert(service_secrets).values(name=name, value=value, previous=None, rotated_at=now))


def secrets_reader(engine: Engine) -> SecretReader:
    return SecretReader(engine)
