"""Checked certificate requests: what the CA needs from a CSR, and nothing else."""
from __future__ import annotations
from dataclasses import dataclass
from smki.domain import RemotePartyRole, Usage

@dataclass(frozen=True, slots=True)
class DeviceRequest:
    """A checked Device CSR."""
    device_id: bytes  # 8 octets EUI-64
    usage: Usage
    spki_der: bytes  # DER SubjectPublicKeyInfo (P-256, uncompressed point)
    point: bytes  # the 65-byte uncompressed point

@dataclass(frozen=True, slots=True)
class OrganisationRequest:
    """A checked Organisation CSR."""
    entity_id: bytes  # 8 octets
    role: RemotePartyRole
    usage: Usage
    common_name: str | None
    spki_der: bytes
    point: bytes
