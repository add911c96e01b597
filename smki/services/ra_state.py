"""From register records to the RA engine's snapshots (``smki.ra.state``).

The store keeps plain strings and JSON; the pure engine wants enums and frozen mappings. The
conversion lives here, once, so the services and every interface hand the engine the same facts.
A stored value this version does not recognise (a role number, a standing) is refused with a
coded error rather than guessed at: a wrong guess here would be a wrong RA decision.
"""

from __future__ import annotations

from datetime import date
from enum import Enum
from typing import TypeVar

from smki.domain import MAX_ROW_ID, CertificatePolicy, RemotePartyRole
from smki.errors import NotFound, SmkiError
from smki.ra import (
    Application,
    AroState,
    AroStatus,
    Evidence,
    EvidenceBasis,
    PartyCategory,
    PartyState,
    SubscriberStanding,
)
from smki.services.context import Home
from smki.store.registry import GATEWAY_CONNECTION, REGISTERED_ROLE, ApplicationRecord, AroRecord, PartyRecord


def _corrupt(what: str) -> SmkiError:
    return SmkiError("ra.register-invalid", f"the register holds {what}, which this version cannot read")


E = TypeVar("E", bound=Enum)


def _enum(kind: type[E], value: object, what: str) -> E:
    try:
        return kind(value)
    except ValueError:
        raise _corrupt(f"{what} {value!r}") from None


def party_state(record: PartyRecord, on: date) -> PartyState:
    """The engine's view of a Party record on the decision date ``on``: the DCC Gateway Connections
    and Registered User roles are those in force on that date (a what-if or replay for a past date
    does not count one added since, and does count one removed since)."""
    roles: dict[bytes, frozenset[RemotePartyRole]] = {}
    for entity, numbers in record.entities.items():
        roles[entity] = frozenset(_enum(RemotePartyRole, n, "Remote Party Role") for n in numbers)
    subscriber = {
        _enum(CertificatePolicy, policy, "Certificate Policy"): _enum(SubscriberStanding, standing, "standing")
        for policy, standing in record.subscriptions.items()
    }
    return PartyState(
        party_id=record.party_id,
        name=record.name,
        category=_enum(PartyCategory, record.category, "Party category"),
        entity_roles=roles,
        srept_passed=record.srept_passed,
        uept_completed=record.uept_completed,
        registered_user_roles=frozenset(record.in_force(REGISTERED_ROLE, on)),
        gateway_connections=record.in_force(GATEWAY_CONNECTION, on),
        subscriber=subscriber,
    )


def aro_state(record: AroRecord) -> AroState:
    """The engine's view of an ARO record."""
    return AroState(
        aro_id=record.aro_id,
        party_id=record.party_id,
        status=_enum(AroStatus, record.status, "ARO status"),
        identity_verified=record.identity_verified,
        screened=record.screened,
    )


def application_state(record: ApplicationRecord) -> Application:
    """The engine's view of an application with its evidence."""
    return Application(
        application_id=str(record.application_id),
        party_id=record.party_id,
        policy=_enum(CertificatePolicy, record.policy, "Certificate Policy"),
        evidence=tuple(
            Evidence(kind=e.kind, reference=e.reference, recorded_by=e.recorded_by, recorded_on=e.recorded_on)
            for e in record.evidence
        ),
    )


def load_party(home: Home, party_id: str) -> PartyRecord:
    """The Party record, or ``ra.party-not-found``."""
    return home.store.registry.require_party(party_id)


def load_aro(home: Home, aro_id: str) -> AroRecord:
    """The ARO record, or ``ra.aro-not-found``."""
    record = home.store.registry.aro(aro_id)
    if record is None:
        raise NotFound("ra.aro-not-found", f"no ARO {aro_id!r}")
    return record


def load_application(home: Home, application_id: int | str) -> ApplicationRecord:
    """The application record, or ``ra.application-not-found`` (ids are whole numbers)."""
    try:
        number = int(str(application_id).strip())
    except ValueError:
        raise NotFound("ra.application-not-found", f"no application {str(application_id)[:40]!r}") from None
    if not 0 < number <= MAX_ROW_ID:  # beyond the column's range: the driver would overflow, not answer None
        raise NotFound("ra.application-not-found", f"no application {str(number)[:40]}")
    record = home.store.registry.application(number)
    if record is None:
        raise NotFound("ra.application-not-found", f"no application {number}")
    return record


def evidence_basis(home: Home) -> EvidenceBasis:
    """The configured evidence basis (``evidence-basis`` in smki.toml), validated."""
    return EvidenceBasis.parse(home.settings.evidence_basis)


def today() -> date:
    """The decision date when none is given: today in UTC (the SEC's dates are calendar days)."""
    from datetime import UTC, datetime

    return datetime.now(UTC).date()
