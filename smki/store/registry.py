"""The Registration Authority's register in the database: Parties, their Entity Identifiers and
subscriptions, RA staff, AROs, applications and evidence.

Reads return frozen records; writes go through ``RegistryWriter``, which only exists inside a
``Store.transaction()`` (``tx.registry``), so every register change is committed with its audit
record or not at all. The records carry facts only; the RA's pure policy engine (``smki.ra``)
decides what they mean.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Connection,
    Date,
    Engine,
    String,
    bindparam,
    cast,
    insert,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError

from smki.errors import NotFound, SmkiError
from smki.store.models import (
    applications,
    aros,
    dual_control,
    evidence,
    parties,
    party_entities,
    party_periods,
    staff,
    subscriptions,
)
from smki.store.reads import read_connection

#: The reads every request makes (the caller's ARO, its Party), built once: SQLAlchemy builds a
#: statement's expression and cache key afresh each time one is constructed, which cost about as
#: much as running it on SQLite (measured: ~90 µs a fresh ``select`` against ~43 µs a prebuilt one).
_PARTY_ENTITIES = select(party_entities).where(party_entities.c.party_id == bindparam("party_id"))
_PARTY_SUBSCRIPTIONS = select(subscriptions).where(subscriptions.c.party_id == bindparam("party_id"))
_pp = party_periods.c
_PERIOD_COLUMNS = (_pp.kind, _pp.value, _pp.valid_from, _pp.valid_until)
_PARTY_PERIODS = select(*_PERIOD_COLUMNS).where(_pp.party_id == bindparam("party_id"))
_PARTY_HISTORY = (select(party_periods).where(_pp.party_id == bindparam("party_id"))
                  .order_by(_pp.kind, _pp.value, _pp.valid_from, _pp.id))

GATEWAY_CONNECTION = "gateway-connection"
REGISTERED_ROLE = "registered-role"


def whole_party(where: Any, *, columns: Sequence[Any] = (parties,), joined: Any = parties) -> CompoundSelect[Any]:
    """A Party with its entities, its subscriptions and its dated Gateway Connections and Registered
    User roles in one statement (one round trip, not four): a row per entity (or one with no
    entity), then a row per subscription, then a row per period, ``columns`` on each (the Party's,
    or those of ``joined``, a join that holds ``parties``). ``party_from_rows`` reads it.

    The nulls of the date columns are cast: PostgreSQL types a UNION's columns from its first
    branches, where an untyped NULL would become text and then clash with the periods' dates."""
    no_date = cast(null(), Date)
    no_text = cast(null(), String)
    return union_all(
        select(*columns, party_entities.c.entity_id, party_entities.c.roles,
               null().label("policy"), null().label("standing"), no_text.label("period_kind"),
               no_text.label("period_value"), no_date.label("valid_from"), no_date.label("valid_until"))
        .select_from(joined.outerjoin(party_entities, party_entities.c.party_id == parties.c.party_id))
        .where(where),
        select(*columns, null(), null(), subscriptions.c.policy, subscriptions.c.standing,
               no_text, no_text, no_date, no_date)
        .select_from(joined.join(subscriptions, subscriptions.c.party_id == parties.c.party_id))
        .where(where),
        select(*columns, null(), null(), null(), null(), _pp.kind.label("period_kind"),
               _pp.value.label("period_value"), _pp.valid_from, _pp.valid_until)
        .select_from(joined.join(party_periods, _pp.party_id == parties.c.party_id))
        .where(where),
    )


_PARTY_WHOLE = whole_party(parties.c.party_id == bindparam("party_id"))
_ARO = select(aros).where(aros.c.aro_id == bindparam("aro_id"))
_STAFF = select(staff).where(staff.c.staff_id == bindparam("staff_id"))


@dataclass(frozen=True)
class PartyPeriod:
    """A Gateway Connection or Registered User role (``kind``) and when it is in force: from
    ``valid_from`` until the day before ``valid_until`` (None: still in force)."""

    kind: str
    value: str
    valid_from: date
    valid_until: date | None

    def in_force_on(self, on: date) -> bool:
        return self.valid_from <= on and (self.valid_until is None or on < self.valid_until)


@dataclass(frozen=True)
class PartyPeriodRecord(PartyPeriod):
    """A period with who recorded each end and why (``registry.party_history``)."""

    added_by: str = ""
    added_reason: str | None = None
    removed_by: str | None = None
    removed_reason: str | None = None


@dataclass(frozen=True)
class PartyRecord:
    party_id: str
    name: str
    category: str
    srept_passed: date | None
    uept_completed: date | None
    created_at: datetime
    entities: Mapping[bytes, tuple[int, ...]] = field(default_factory=dict)
    subscriptions: Mapping[str, str] = field(default_factory=dict)
    #: Every period of the Party's Gateway Connections and Registered User roles, past and present.
    periods: tuple[PartyPeriod, ...] = ()

    def in_force(self, kind: str, on: date) -> tuple[str, ...]:
        """The connections or roles (``kind``) in force on ``on``, sorted."""
        return tuple(sorted({p.value for p in self.periods if p.kind == kind and p.in_force_on(on)}))

    def _held(self, kind: str) -> tuple[str, ...]:
        return tuple(sorted({p.value for p in self.periods if p.kind == kind and p.valid_until is None}))

    @property
    def gateway_connections(self) -> tuple[str, ...]:
        """The DCC Gateway Connections held now (their periods are open: no date is ever in the future)."""
        return self._held(GATEWAY_CONNECTION)

    @property
    def registered_user_roles(self) -> tuple[str, ...]:
        """The Registered User roles held now."""
        return self._held(REGISTERED_ROLE)


@dataclass(frozen=True)
class StaffRecord:
    staff_id: str
    name: str
    roles: tuple[str, ...]
    active: bool


@dataclass(frozen=True)
class AroRecord:
    aro_id: str
    party_id: str
    name: str
    nominated_by: str
    status: str
    identity_verified: date | None
    identity_check: str | None
    verified_by: str | None
    screened: date | None
    screening_standard: str | None
    created_at: datetime


@dataclass(frozen=True)
class EvidenceRecord:
    evidence_id: int
    application_id: int
    kind: str
    reference: str
    recorded_by: str
    recorded_on: date


@dataclass(frozen=True)
class ApplicationRecord:
    application_id: int
    party_id: str
    policy: str
    status: str
    created_at: datetime
    proposed_by: str | None
    proposed_at: datetime | None
    proposal: dict[str, Any] | None
    decided_by: str | None
    decided_at: datetime | None
    decision: dict[str, Any] | None
    evidence: tuple[EvidenceRecord, ...] = ()


@dataclass(frozen=True)
class DualControlRecord:
    id: int
    action: str
    subject: str
    payload: dict[str, Any]
    status: str  # pending / approved / refused
    proposed_by: str
    proposed_at: datetime
    decided_by: str | None
    decided_at: datetime | None


def _json_list(text: str) -> tuple[Any, ...]:
    return tuple(json.loads(text))


def _json_or_none(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(json.loads(text))


def _party_record(row: Any, entities: list[tuple[Any, str]], subscriptions: list[tuple[str, str]],
                  periods: list[PartyPeriod]) -> PartyRecord:
    """A Party from its ``parties`` row, its entities' ``(entity_id, roles)``, its subscriptions'
    ``(policy, standing)`` and its periods."""
    return PartyRecord(
        party_id=row.party_id,
        name=row.name,
        category=row.category,
        srept_passed=row.srept_passed,
        uept_completed=row.uept_completed,
        created_at=row.created_at,
        entities={bytes(entity): tuple(int(r) for r in json.loads(roles)) for entity, roles in entities},
        subscriptions=dict(subscriptions),
        periods=tuple(sorted(periods, key=lambda p: (p.kind, p.value, p.valid_from))),
    )


def party_from_rows(party_row: Any, rows: Sequence[Any]) -> PartyRecord:
    """The Party a ``whole_party`` statement read: its columns from ``party_row``, its entities,
    subscriptions and periods from ``rows``."""
    return _party_record(party_row, [(r.entity_id, r.roles) for r in rows if r.entity_id is not None],
                        [(r.policy, r.standing) for r in rows if r.policy is not None],
                        [PartyPeriod(r.period_kind, r.period_value, r.valid_from, r.valid_until)
                         for r in rows if r.period_kind is not None])


class RegistryReader:
    """Reads of the register (``store.registry``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def party(self, party_id: str) -> PartyRecord | None:
        with read_connection(self._engine) as conn:
            rows = conn.execute(_PARTY_WHOLE, {"party_id": party_id}).all()
        return party_from_rows(rows[0], rows) if rows else None

    def require_party(self, party_id: str) -> PartyRecord:
        record = self.party(party_id)
        if record is None:
            raise NotFound("ra.party-not-found", f"no Party {party_id!r}")
        return record

    def parties(self) -> list[PartyRecord]:
        with read_connection(self._engine) as conn:
            rows = conn.execute(select(parties).order_by(parties.c.party_id)).all()
            return [self._party(conn, row) for row in rows]

    def party_for_entity(self, entity_id: bytes) -> str | None:
        with read_connection(self._engine) as conn:
            value = conn.execute(
                select(party_entities.c.party_id).where(party_entities.c.entity_id == entity_id)
            ).scalar_one_or_none()
            return None if value is None else str(value)

    def _party(self, conn: Connection, row: Any) -> PartyRecord:
        entity_rows = conn.execute(_PARTY_ENTITIES, {"party_id": row.party_id}).all()
        sub_rows = conn.execute(_PARTY_SUBSCRIPTIONS, {"party_id": row.party_id}).all()
        period_rows = conn.execute(_PARTY_PERIODS, {"party_id": row.party_id}).all()
        return _party_record(row, [(e.entity_id, e.roles) for e in entity_rows],
                             [(s.policy, s.standing) for s in sub_rows],
                             [PartyPeriod(p.kind, p.value, p.valid_from, p.valid_until) for p in period_rows])

    def party_history(self, party_id: str) -> list[PartyPeriodRecord]:
        """Every period of a Party's Gateway Connections and Registered User roles, with who recorded
        each end and why, by kind, value and start."""
        with read_connection(self._engine) as conn:
            return [_period_record(r) for r in conn.execute(_PARTY_HISTORY, {"party_id": party_id})]

    def staff(self, staff_id: str) -> StaffRecord | None:
        with read_connection(self._engine) as conn:
            row = conn.execute(_STAFF, {"staff_id": staff_id}).one_or_none()
        if row is None:
            return None
        return StaffRecord(row.staff_id, row.name, _json_list(row.roles), bool(row.active))

    def staff_members(self) -> list[StaffRecord]:
        with read_connection(self._engine) as conn:
            rows = conn.execute(select(staff).order_by(staff.c.staff_id)).all()
        return [StaffRecord(r.staff_id, r.name, _json_list(r.roles), bool(r.active)) for r in rows]

    def aro(self, aro_id: str) -> AroRecord | None:
        with read_connection(self._engine) as conn:
            row = conn.execute(_ARO, {"aro_id": aro_id}).one_or_none()
        return None if row is None else AroRecord(**row._mapping)

    def aros(self, party_id: str | None = None) -> list[AroRecord]:
        stmt = select(aros).order_by(aros.c.aro_id)
        if party_id is not None:
            stmt = stmt.where(aros.c.party_id == party_id)
        with read_connection(self._engine) as conn:
            return [AroRecord(**row._mapping) for row in conn.execute(stmt)]

    def application(self, application_id: int) -> ApplicationRecord | None:
        with read_connection(self._engine) as conn:
            row = conn.execute(
                select(applications).where(applications.c.application_id == application_id)
            ).one_or_none()
            if row is None:
                return None
            return self._application(conn, row)

    def applications(self, *, party_id: str | None = None, status: str | None = None) -> list[ApplicationRecord]:
        stmt = select(applications).order_by(applications.c.application_id)
        if party_id is not None:
            stmt = stmt.where(applications.c.party_id == party_id)
        if status is not None:
            stmt = stmt.where(applications.c.status == status)
        with read_connection(self._engine) as conn:
            return [self._application(conn, row) for row in conn.execute(stmt).all()]

    def dual_control(self, item_id: int) -> DualControlRecord | None:
        with read_connection(self._engine) as conn:
            row = conn.execute(select(dual_control).where(dual_control.c.id == item_id)).one_or_none()
        return None if row is None else _dual(row)

    def dual_control_items(self, status: str | None = None) -> list[DualControlRecord]:
        stmt = select(dual_control).order_by(dual_control.c.id)
        if status is not None:
            stmt = stmt.where(dual_control.c.status == status)
        with read_connection(self._engine) as conn:
            return [_dual(row) for row in conn.execute(stmt)]

    def _application(self, conn: Connection, row: Any) -> ApplicationRecord:
        ev = conn.execute(
            select(evidence).where(evidence.c.application_id == row.application_id).order_by(evidence.c.evidence_id)
        ).all()
        return ApplicationRecord(
            application_id=int(row.application_id),
            party_id=row.party_id,
            policy=row.policy,
            status=row.status,
            created_at=row.created_at,
            proposed_by=row.proposed_by,
            proposed_at=row.proposed_at,
            proposal=_json_or_none(row.proposal),
            decided_by=row.decided_by,
            decided_at=row.decided_at,
            decision=_json_or_none(row.decision),
            evidence=tuple(EvidenceRecord(**e._mapping) for e in ev),
        )


def _period_record(row: Any) -> PartyPeriodRecord:
    return PartyPeriodRecord(row.kind, row.value, row.valid_from, row.valid_until, row.added_by, row.added_reason,
                             row.removed_by, row.removed_reason)


def _dual(row: Any) -> DualControlRecord:
    m = dict(row._mapping)
    m["payload"] = json.loads(m["payload"])
    return DualControlRecord(**m)


class RegistryWriter:
    """Register changes within one transaction (``tx.registry``); each counts as an audited change."""

    def __init__(self, conn: Connection, on_change: Any) -> None:
        self._conn = conn
        self._on_change = on_change

    def _execute(self, stmt: Any, params: Any = None, *, missing: str | None = None) -> Any:
        try:
            result = self._conn.execute(stmt, params) if params is not None else self._conn.execute(stmt)
        except IntegrityError as exc:
            raise SmkiError("ra.conflict", "that record already exists or refers to a missing one") from exc
        if missing is not None and result.rowcount == 0:
            raise NotFound("ra.not-found", missing)
        self._on_change()
        return result

    def add_party(self, party_id: str, name: str, category: str) -> None:
        self._execute(insert(parties).values(
            party_id=party_id, name=name, category=category, created_at=datetime.now(UTC),
        ))

    def update_party(self, party_id: str, *, srept_passed: date | bool | None = False,
                     uept_completed: date | bool | None = False) -> None:
        """Change a Party's dated evidence. ``False`` (the default) leaves a date unchanged; ``None`` clears it."""
        values: dict[str, Any] = {}
        if srept_passed is not False:
            values["srept_passed"] = srept_passed
        if uept_completed is not False:
            values["uept_completed"] = uept_completed
        if values:
            self._execute(update(parties).where(parties.c.party_id == party_id).values(**values),
                          missing=f"no Party {party_id!r}")

    def start_period(self, party_id: str, kind: str, value: str, *, on: date, by: str,
                     reason: str | None = None) -> None:
        """A Gateway Connection or Registered User role (``kind``) in force from ``on``. One already
        in force is a conflict (``ra.conflict``: the store allows one open period per value)."""
        self._execute(insert(party_periods).values(
            party_id=party_id, kind=kind, value=value, valid_from=on, added_by=by, added_reason=reason))

    def end_period(self, party_id: str, kind: str, value: str, *, on: date, by: str,
                   reason: str | None = None) -> None:
        """End the open period of ``value``: from ``on`` it is no longer in force (kept, not deleted)."""
        self._execute(update(party_periods).where(
            _pp.party_id == party_id, _pp.kind == kind, _pp.value == value, _pp.valid_until.is_(None),
        ).values(valid_until=on, removed_by=by, removed_reason=reason),
            missing=f"Party {party_id!r} holds no {kind} {value!r}")

    def restate_period(self, party_id: str, kind: str, value: str, *, on: date, by: str,
                       reason: str | None = None) -> None:
        """Move the start of ``value``'s open period to ``on`` (a correction: who made it, and why,
        replace the period's ``added_by`` and ``added_reason``; the audit record keeps the old start)."""
        self._execute(update(party_periods).where(
            _pp.party_id == party_id, _pp.kind == kind, _pp.value == value, _pp.valid_until.is_(None),
        ).values(valid_from=on, added_by=by, added_reason=reason),
            missing=f"Party {party_id!r} holds no {kind} {value!r}")

    def held_periods(self, party_id: str) -> list[PartyPeriodRecord]:
        """The Party's periods, read inside this transaction (the service checks a change against them)."""
        return [_period_record(r) for r in self._conn.execute(_PARTY_HISTORY, {"party_id": party_id})]

    def set_entity(self, party_id: str, entity_id: bytes, roles: Sequence[int]) -> None:
        """Give a Party an Entity Identifier with the Remote Party Roles it may hold under it."""
        existing = self._conn.execute(
            select(party_entities.c.party_id).where(party_entities.c.entity_id == entity_id)
        ).scalar_one_or_none()
        if existing is not None and existing != party_id:
            raise SmkiError("ra.entity-taken", f"Entity Identifier {entity_id.hex()} belongs to another Party")
        roles_json = json.dumps(sorted({int(r) for r in roles}))
        if existing is None:
            self._execute(insert(party_entities).values(entity_id=entity_id, party_id=party_id, roles=roles_json))
        else:
            self._execute(update(party_entities).where(party_entities.c.entity_id == entity_id)
                          .values(roles=roles_json))

    def set_subscription(self, party_id: str, policy: str, standing: str) -> None:
        now = datetime.now(UTC)
        result = self._conn.execute(
            update(subscriptions)
            .where(subscriptions.c.party_id == party_id, subscriptions.c.policy == policy)
            .values(standing=standing, updated_at=now)
        )
        if result.rowcount == 0:
            self._execute(insert(subscriptions).values(party_id=party_id, policy=policy, standing=standing,
                                                       updated_at=now))
        else:
            self._on_change()

    def change_subscription(self, party_id: str, policy: str, from_standing: str, to_standing: str) -> bool:
        """``from_standing`` → ``to_standing``, checked by the UPDATE itself: False (nothing changed) if the
        standing is no longer ``from_standing`` (a change another transaction committed meanwhile stands)."""
        result = self._conn.execute(
            update(subscriptions)
            .where(subscriptions.c.party_id == party_id, subscriptions.c.policy == policy,
                   subscriptions.c.standing == from_standing)
            .values(standing=to_standing, updated_at=datetime.now(UTC))
        )
        if result.rowcount == 0:
            return False
        self._on_change()
        return True

    def change_aro_status(self, aro_id: str, from_status: str, to_status: str) -> bool:
        """An ARO's ``from_status`` → ``to_status``, checked by the UPDATE itself (as ``change_subscription``)."""
        result = self._conn.execute(update(aros).where(aros.c.aro_id == aro_id, aros.c.status == from_status)
                                    .values(status=to_status))
        if result.rowcount == 0:
            return False
        self._on_change()
        return True

    def add_staff(self, staff_id: str, name: str, roles: Sequence[str]) -> None:
        self._execute(insert(staff).values(staff_id=staff_id, name=name, roles=json.dumps(sorted(set(roles))),
                                           active=True))

    def change_staff(self, staff_id: str, *, active: bool | None = None, roles: Sequence[str] | None = None) -> bool:
        """Set a staff member's ``active`` flag and/or roles; False if there is no such staff member."""
        values: dict[str, object] = {}
        if active is not None:
            values["active"] = active
        if roles is not None:
            values["roles"] = json.dumps(sorted(set(roles)))
        result = self._conn.execute(update(staff).where(staff.c.staff_id == staff_id).values(**values))
        if result.rowcount == 0:
            return False
        self._on_change()
        return True

    def add_aro(self, aro_id: str, party_id: str, name: str, nominated_by: str) -> None:
        self._execute(insert(aros).values(
            aro_id=aro_id, party_id=party_id, name=name, nominated_by=nominated_by, status="active",
            created_at=datetime.now(UTC),
        ))

    def update_aro(self, aro_id: str, **values: Any) -> None:
        allowed = {"status", "identity_verified", "identity_check", "verified_by", "screened", "screening_standard"}
        unknown = set(values) - allowed
        if unknown:
            raise SmkiError("ra.bad-field", f"cannot change {sorted(unknown)} of an ARO")
        self._execute(update(aros).where(aros.c.aro_id == aro_id).values(**values), missing=f"no ARO {aro_id!r}")

    def add_application(self, party_id: str, policy: str) -> int:
        result = self._execute(insert(applications).values(
            party_id=party_id, policy=policy, status="open", created_at=datetime.now(UTC),
        ))
        return int(result.inserted_primary_key[0])

    def add_evidence(self, application_id: int, kind: str, reference: str, recorded_by: str, recorded_on: date) -> int:
        result = self._execute(insert(evidence).values(
            application_id=application_id, kind=kind, reference=reference, recorded_by=recorded_by,
            recorded_on=recorded_on,
        ))
        return int(result.inserted_primary_key[0])

    def update_application(self, application_id: int, *, expect_status: str | None = None, **values: Any) -> None:
        """Change an application; with ``expect_status`` only if it is still in that status (no lost race)."""
        for key in ("proposal", "decision"):
            if key in values and values[key] is not None:
                values[key] = json.dumps(values[key], sort_keys=True)
        stmt = update(applications).where(applications.c.application_id == application_id)
        if expect_status is not None:
            stmt = stmt.where(applications.c.status == expect_status)
        if self._execute(stmt.values(**values)).rowcount == 0:
            self._lost_race(applications.c.application_id, application_id,
                            f"application {application_id} is no longer {expect_status}: it was decided meanwhile",
                            f"no application {application_id}")

    def _lost_race(self, key: Any, value: object, decided: str, missing: str) -> None:
        """A conditional update that changed nothing: the row was changed meanwhile by a concurrent
        decision (``ra.already-decided``, as when it was decided before the request began), or it
        is not there (``ra.not-found``). The loser of two simultaneous approvals got the latter."""
        if self._conn.execute(select(key).where(key == value)).first() is not None:
            raise SmkiError("ra.already-decided", decided)
        raise NotFound("ra.not-found", missing)

    def propose_dual_control(self, action: str, subject: str, payload: dict[str, Any], proposed_by: str) -> int:
        result = self._execute(insert(dual_control).values(
            action=action, subject=subject, payload=json.dumps(payload, sort_keys=True), status="pending",
            proposed_by=proposed_by, proposed_at=datetime.now(UTC),
        ))
        return int(result.inserted_primary_key[0])

    def decide_dual_control(self, item_id: int, status: str, decided_by: str) -> None:
        """Approve or refuse a pending item; only one decision can ever be made on it."""
        result = self._execute(
            update(dual_control).where(dual_control.c.id == item_id, dual_control.c.status == "pending")
            .values(status=status, decided_by=decided_by, decided_at=datetime.now(UTC)))
        if result.rowcount == 0:
            self._lost_race(dual_control.c.id, item_id, f"proposal {item_id} was decided meanwhile",
                            f"no proposal {item_id}")
