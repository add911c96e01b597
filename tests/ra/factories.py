"""A fully-qualified Party, ARO, applications and requests; each test case changes one fact of them."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from smki.domain import CertificatePolicy, RemotePartyRole, Route
from smki.ra.state import (
    INSTALLATION_NEED_EVIDENCE,
    Application,
    AroState,
    AroStatus,
    CertificateRequestFacts,
    Evidence,
    PartyCategory,
    PartyState,
    SubscriberStanding,
)

ORG = CertificatePolicy.ORGANISATION
DEVICE = CertificatePolicy.DEVICE

E1 = bytes.fromhex("90B3D51F30010000")  # P1's Entity Identifier (supplier)
E2 = bytes.fromhex("90B3D51F30020000")  # P2's Entity Identifier

BEFORE_MP074 = date(2019, 11, 6)
MP074_DAY = date(2019, 11, 7)
BEFORE_MP127 = date(2020, 11, 28)
MP127_DAY = date(2020, 11, 29)
DATES = (BEFORE_MP074, MP074_DAY, BEFORE_MP127, MP127_DAY)
RULESET_ON = {BEFORE_MP074: "baseline", MP074_DAY: "MP074", BEFORE_MP127: "MP074", MP127_DAY: "MP127"}

PARTY = PartyState(
    party_id="P1",
    name="Acme Energy",
    category=PartyCategory.LARGE_SUPPLIER,
    entity_roles={E1: frozenset({RemotePartyRole.SUPPLIER})},
    srept_passed=date(2018, 6, 1),
    uept_completed=date(2018, 9, 1),
    registered_user_roles=frozenset({"import-supplier"}),
    gateway_connections=("GW-0001",),
    subscriber={ORG: SubscriberStanding.APPROVED, DEVICE: SubscriberStanding.APPROVED},
)

ARO = AroState(
    aro_id="A1",
    party_id="P1",
    status=AroStatus.ACTIVE,
    identity_verified=date(2018, 7, 1),
    screened=date(2018, 7, 2),
)

NEED = Evidence(
    kind=INSTALLATION_NEED_EVIDENCE,
    reference="RA-EV-0042 installation programme 2019",
    recorded_by="op.alice",
    recorded_on=date(2018, 10, 1),
)

ORG_APPLICATION = Application("APP-ORG-1", "P1", ORG)
DEVICE_APPLICATION = Application("APP-DEV-1", "P1", DEVICE, (NEED,))

DEVICE_VIA_GATEWAY = CertificateRequestFacts(DEVICE, Route.GATEWAY, bytes.fromhex("00DB123456789001"))
ORG_VIA_SPOTI = CertificateRequestFacts(ORG, Route.SPOTI, E1, RemotePartyRole.SUPPLIER)


def party(**changes: object) -> PartyState:
    """The fully-qualified Party with ``changes`` applied."""
    return replace(PARTY, **changes)


def standing(policy: CertificatePolicy, value: SubscriberStanding) -> PartyState:
    """The Party with its standing for one policy changed."""
    return party(subscriber={**PARTY.subscriber, policy: value})


def aro(**changes: object) -> AroState:
    """The good ARO with ``changes`` applied."""
    return replace(ARO, **changes)
