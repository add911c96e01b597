"""SMKI credentials (the client certificates of AROs, RA staff and Authorised Systems) in the store.

Reads through :class:`CredentialReads` (``credential_reads(store)``); issuing and revoking through
:class:`CredentialWrites` (``credential_writes(tx)``) inside ``store.transaction()``, so a
credential issued or revoked is committed with its audit record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, NamedTuple

from sqlalchemy import Engine, and_, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from smki.errors import NotFound, SmkiError
from smki.store.models import aros, credentials_table, parties
from smki.store.reads import read_connection
from smki.store.registry import AroRecord, PartyRecord, party_from_rows, whole_party
from smki.store.store import Store
from smki.store.transaction import Transaction

_cr = credentials_table.c
#: Every request's authentication: built once (a fresh ``select`` costs as much to build as to run).
_BY_SERIAL = select(credentials_table).where(_cr.serial == bindparam("serial"))
#: The ARO's and the Party's columns beside the credential's, named apart (all three tables have
#: ``name``, two ``status``, two ``party_id``…).
_ARO_PREFIX = "aro__"
_PARTY_PREFIX = "party__"
_ACTS_AS = and_(_cr.kind != "staff", aros.c.aro_id == func.coalesce(func.nullif(_cr.aro_id, ""), _cr.name))
_HEAD_COLUMNS: tuple[Any, ...] = (credentials_table, *(c.label(_ARO_PREFIX + c.name) for c in aros.c),
                 *(c.label(_PARTY_PREFIX + c.name) for c in parties.c))
_HEAD = credentials_table.outerjoin(aros, _ACTS_AS).outerjoin(parties, parties.c.party_id == _cr.party_id)
#: A credential, the ARO it acts as (``aro_id``, or for an ARO's own credential its ``name``) and its
#: Party with the Party's entities and subscriptions, in one statement: every authenticated request
#: reads the first two, every certificate request the Party too, and on PostgreSQL each read is a
#: round trip. The shape of ``registry.party``'s read: one row per entity (or one with none), then
#: one per subscription, each carrying the credential's, the ARO's and the Party's columns.
_WITH_ARO_AND_PARTY = whole_party(_cr.serial == bindparam("serial"), columns=_HEAD_COLUMNS, joined=_HEAD)


@dataclass(frozen=True)
class CredentialRecord:
    serial: str
    kind: str
    name: str
    party_id: str | None
    aro_id: str | None
    status: str
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    revoked_at: datetime | None
    der: bytes


class CredentialContext(NamedTuple):
    """A credential and what a request needs of the register beside it (``credential_aro_and_party``)."""

    credential: CredentialRecord | None
    aro: AroRecord | None
    party: PartyRecord | None


def _credential(row: Any) -> CredentialRecord:
    m = row._mapping
    return CredentialRecord(m["serial"], m["kind"], m["name"], m["party_id"], m["aro_id"], m["status"],
                            m["not_before"], m["not_after"], m["issued_at"], m["revoked_at"], bytes(m["der"]))


class CredentialReads:
    """Look-ups of credentials: by serial (every request's authentication), or all of a kind."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def credential(self, serial: str) -> CredentialRecord | None:
        with read_connection(self._engine) as conn:
            row = conn.execute(_BY_SERIAL, {"serial": serial}).one_or_none()
        return None if row is None else _credential(row)

    def credential_aro_and_party(self, serial: str) -> CredentialContext:
        """The credential ``serial``; unless it is an RA staff member's, the ARO it acts as (its
        ``aro_id``, else its ``name``), if that ARO exists; and the credential's Party, if it has
        one: what ``credential(serial)``, ``registry.aro(…)`` and ``registry.party(…)`` return, read
        in one statement."""
        with read_connection(self._engine) as conn:
            rows = conn.execute(_WITH_ARO_AND_PARTY, {"serial": serial}).all()
        if not rows:
            return CredentialContext(None, None, None)
        m = rows[0]._mapping
        aro = None if m[_ARO_PREFIX + "aro_id"] is None else AroRecord(
            **{c.name: m[_ARO_PREFIX + c.name] for c in aros.c})
        party = None if m[_PARTY_PREFIX + "party_id"] is None else party_from_rows(
            SimpleNamespace(**{c.name: m[_PARTY_PREFIX + c.name] for c in parties.c}), rows)
        return CredentialContext(_credential(rows[0]), aro, party)

    def credentials(self, kind: str | None = None, *, status: str | None = None) -> list[CredentialRecord]:
        stmt = select(credentials_table)
        if kind is not None:
            stmt = stmt.where(_cr.kind == kind)
        if status is not None:
            stmt = stmt.where(_cr.status == status)
        with read_connection(self._engine) as conn:
            return [_credential(r) for r in conn.execute(stmt.order_by(_cr.issued_at, _cr.serial))]


class CredentialWrites:
    """Audited writes (inside ``store.transaction()``): a credential issued, a credential revoked."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self._conn = tx._conn  # same package: the transaction's connection

    def add_credential(self, record: CredentialRecord) -> None:
        try:
            self._conn.execute(insert(credentials_table).values(
                serial=record.serial, kind=record.kind, name=record.name, party_id=record.party_id,
                aro_id=record.aro_id, status=record.status, not_before=record.not_before,
                not_after=record.not_after, issued_at=record.issued_at, revoked_at=record.revoked_at,
                der=record.der,
            ))
        except IntegrityError as exc:
            raise SmkiError("credential.duplicate", "a credential with this serial already exists") from exc
        self._tx._count_change()

    def revoke_credential(self, serial: str, at: datetime) -> None:
        result = self._conn.execute(update(credentials_table)
                                    .where(_cr.serial == serial, _cr.status == "active")
                                    .values(status="revoked", revoked_at=at))
        if result.rowcount != 1:
            raise NotFound("credential.not-found", f"no active credential with serial {serial}")
        self._tx._count_change()


def credential_reads(store: Store) -> CredentialReads:
    return CredentialReads(store.engine)


def credential_writes(tx: Transaction) -> CredentialWrites:
    return CredentialWrites(tx)
