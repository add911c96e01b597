"""The facts the RA rules read: Parties, AROs, applications, evidence and what a request asks for.

These are plain, immutable snapshots. The store builds them from its rows and hands them to the
engine; the engine never fetches anything itself. Keeping the rules' inputs this small and explicit
is what makes a decision reproducible: the same snapshot and date always give the same decision,
and a stored decision can be re-explained without the database.

Dates are *facts with a date*: a fact dated after the decision date was not yet true on that date,
so every rule compares them with the decision date rather than just testing for presence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from types import MappingProxyType

from smki.domain import CertificatePolicy, RemotePartyRole, Route
from smki.errors import SmkiError


class PartyCategory(StrEnum):
    """SEC Party categories (spec §1, seed §4). Recorded for the register; no rule reads it yet."""

    LARGE_SUPPLIER = "large-supplier"
    SMALL_SUPPLIER = "small-supplier"
    ELECTRICITY_NETWORK_OPERATOR = "electricity-network-operator"
    GAS_NETWORK_OPERATOR = "gas-network-operator"
    OTHER_SEC_PARTY = "other-sec-party"
    DCC = "dcc"


class RegisteredUserRole(StrEnum):
    """The SEC User Roles a Party may be a Registered User in (SEC Section H1, the User Entry Process).

    The Ad Hoc web service reads them (only Import Supplier, Gas Supplier or the DCC may use it), so a
    misspelt role must be refused when it is recorded, not discovered when the service refuses.
    """

    IMPORT_SUPPLIER = "import-supplier"
    EXPORT_SUPPLIER = "export-supplier"
    GAS_SUPPLIER = "gas-supplier"
    ELECTRICITY_DISTRIBUTOR = "electricity-distributor"
    GAS_TRANSPORTER = "gas-transporter"
    REGISTERED_SUPPLIER_AGENT = "registered-supplier-agent"
    OTHER_USER = "other-user"

    @classmethod
    def parse(cls, value: str) -> RegisteredUserRole:
        """The role named by ``value`` (case and spaces forgiven), or ``ra.bad-registered-role``."""
        name = "-".join(value.strip().lower().replace("_", " ").split())
        try:
            return cls(name)
        except ValueError:
            known = ", ".join(r.value for r in cls)
            raise SmkiError("ra.bad-registered-role",
                            f"{value[:40]!r} is not a Registered User role (one of: {known})") from None


class SubscriberStanding(StrEnum):
    """A Party's Authorised Subscriber standing for one Certificate Policy."""

    NONE = "none"  # never applied
    APPLIED = "applied"  # application open, not yet decided
    APPROVED = "approved"
    SUSPENDED = "suspended"
    WITHDRAWN = "withdrawn"
    REFUSED = "refused"


class AroStatus(StrEnum):
    """Status of an Authorised Responsible Officer. Only ``active`` may act for its Party."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


class StaffRole(StrEnum):
    """Roles of RA staff (issue 3 item 1). A person may hold several; the auditor only reads."""

    RA_OPERATOR = "ra-operator"
    RA_APPROVER = "ra-approver"
    AUDITOR = "auditor"


class EvidenceBasis(StrEnum):
    """What counts as evidence of need for Device Certificates (spec §2.1, a named policy option).

    ``installation-need`` is the SMKI PMA/SSC Agreed Interpretation that MP074 wrote into the SEC:
    an RA operator records evidence that the applicant's business will, or is likely to, lead to the
    installation of Devices. ``registered-user`` follows the DCC's comment in the MP074 report: any
    Registered User on the DCC Gateway may have Device Certificates.
    """

    INSTALLATION_NEED = "installation-need"
    REGISTERED_USER = "registered-user"

    @classmethod
    def parse(cls, value: str | EvidenceBasis) -> EvidenceBasis:
        """The basis named by ``value``, or a ``ra.evidence-basis-unknown`` refusal."""
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(b.value for b in cls)
            raise SmkiError(
                "ra.evidence-basis-unknown", f"unknown evidence basis {value!r} (known: {known})"
            ) from None


INSTALLATION_NEED_EVIDENCE = "installation-need"
"""Evidence kind an RA operator records for RAPP §5.5 (installation of Devices in premises)."""


def _check_entity_id(value: bytes) -> bytes:
    if not isinstance(value, bytes) or len(value) != 8:
        raise SmkiError("ra.entity-id-invalid", "an Entity Identifier is 8 octets (an EUI-64)")
    return value


@dataclass(frozen=True)
class PartyState:
    """A Party as the rules see it on the decision date.

    ``entity_roles`` maps each of the Party's Entity Identifiers (8 octets) to the Remote Party
    Roles the RA has recorded that it may hold. ``subscriber`` holds the Party's standing per
    Certificate Policy; a policy that is absent is ``NONE``.
    """

    party_id: str
    name: str
    category: PartyCategory
    entity_roles: Mapping[bytes, frozenset[RemotePartyRole]] = field(default_factory=dict)
    srept_passed: date | None = None
    uept_completed: date | None = None
    registered_user_roles: frozenset[str] = frozenset()
    gateway_connections: tuple[str, ...] = ()
    subscriber: Mapping[CertificatePolicy, SubscriberStanding] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Freeze the mappings so a snapshot cannot change under a decision that was made from it.
        roles = {_check_entity_id(k): frozenset(v) for k, v in self.entity_roles.items()}
        object.__setattr__(self, "entity_roles", MappingProxyType(roles))
        object.__setattr__(self, "subscriber", MappingProxyType(dict(self.subscriber)))
        object.__setattr__(self, "registered_user_roles", frozenset(self.registered_user_roles))
        object.__setattr__(self, "gateway_connections", tuple(self.gateway_connections))

    def standing(self, policy: CertificatePolicy) -> SubscriberStanding:
        """The Party's Authorised Subscriber standing for ``policy`` (``NONE`` if never applied)."""
        return self.subscriber.get(policy, SubscriberStanding.NONE)


@dataclass(frozen=True)
class AroState:
    """An Authorised Responsible Officer acting for a Party on a request.

    ``screened`` is the date of security screening to BS 7858:2019 or equivalent (MP127).
    """

    aro_id: str
    party_id: str
    status: AroStatus = AroStatus.ACTIVE
    identity_verified: date | None = None
    screened: date | None = None


@dataclass(frozen=True)
class Evidence:
    """A piece of evidence an RA operator recorded against an application (e.g. RAPP §5.5 need)."""

    kind: str
    reference: str
    recorded_by: str
    recorded_on: date


@dataclass(frozen=True)
class Application:
    """An application for Authorised Subscriber status for one Certificate Policy."""

    application_id: str
    party_id: str
    policy: CertificatePolicy
    evidence: tuple[Evidence, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", tuple(self.evidence))


@dataclass(frozen=True)
class CertificateRequestFacts:
    """What a certificate request asks for, as established by the listener and the CSR checks.

    ``route`` comes from the listener the request arrived on, never from the client (spec §3).
    For an Organisation CSR, ``entity_id`` and ``role`` are the x500UniqueIdentifier and OU it names;
    for a Device CSR they are not read by any rule (``entity_id`` may carry the Device ID).
    """

    policy: CertificatePolicy
    route: Route
    entity_id: bytes | None = None
    role: RemotePartyRole | None = None
