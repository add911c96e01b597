"""Checked certificate requests: what the CSR checks hand to the profiles.

A CSR is never signed as-is (spec §4.4): the CSR checks extract and validate the few facts a
profile needs, and the CA builds every certificate from these values alone. Keeping the request
types here, in a module with no dependencies beyond the domain, lets the CSR checks and the
profiles share them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from smki.config import DEFAULT_HW_TYPES
from smki.domain import RemotePartyRole, Usage


@dataclass(frozen=True, slots=True)
class DeviceRequest:
    """A checked Device CSR.

    ``spki_der`` is the DER SubjectPublicKeyInfo of the P-256 key with an uncompressed point, and
    ``point`` its 65-byte BIT STRING value (kept separately because the SKI is computed from it and
    the fast factory splices the SPKI verbatim).
    """

    device_id: bytes  # 8 octets EUI-64
    usage: Usage  # DS or KA
    spki_der: bytes
    point: bytes
    #: The hwType OID (dotted) of the CSR's hardwareModuleName: the certificate carries it (spec §7.4).
    hw_type: str = field(default=DEFAULT_HW_TYPES[0])
    #: True only when ``smki.ca.csr`` built this request and so has already decoded ``point`` on
    #: the curve (to verify the CSR's signature); the factory then skips its own identical check.
    point_checked: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class OrganisationRequest:
    """A checked Organisation CSR: Entity Identifier, Remote Party Role, usage, optional CN, key."""

    entity_id: bytes  # 8 octets
    role: RemotePartyRole
    usage: Usage
    common_name: str | None
    spki_der: bytes
    point: bytes
