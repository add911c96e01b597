"""The key ceremony: three CA keys and the Root, Organisation CA and Device CA certificates.

The labels are fixed so every later step (issuance, CRL/ARL signing, worker processes reopening a
backend) finds the same keys by name, whether they live in files or an HSM.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from smki.ca.profiles import build_root, build_subordinate_ca
from smki.config import Settings
from smki.domain import CertKind
from smki.keys.base import KeyBackend

ROOT_LABEL = "root"
ORGANISATION_CA_LABEL = "organisation-ca"
DEVICE_CA_LABEL = "device-ca"


@dataclass(frozen=True)
class Hierarchy:
    """The three CA certificates of one SMKI deployment."""

    root: x509.Certificate
    organisation_ca: x509.Certificate
    device_ca: x509.Certificate


def create_hierarchy(backend: KeyBackend, settings: Settings, now: datetime) -> Hierarchy:
    """Generate the three CA keys under the fixed labels and issue the CA certificates.

    The backend refuses (``key.exists``) if a label is already taken, so a second ceremony can
    never silently replace a CA key.
    """
    backend.generate(ROOT_LABEL)
    root_signer = backend.signer(ROOT_LABEL)
    root = build_root(root_signer, settings, now)
    organisation_key = backend.generate(ORGANISATION_CA_LABEL)
    organisation_ca = build_subordinate_ca(
        CertKind.ORGANISATION_CA, organisation_key, root, root_signer, settings, now
    )
    device_key = backend.generate(DEVICE_CA_LABEL)
    device_ca = build_subordinate_ca(CertKind.DEVICE_CA, device_key, root, root_signer, settings, now)
    return Hierarchy(root=root, organisation_ca=organisation_ca, device_ca=device_ca)
