"""Shared fixtures for the CA tests: one hierarchy per session (key generation and linting are the
slow parts), a deterministic signer for byte-identity checks, and helpers to make requests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from smki.ca.hierarchy import (
    DEVICE_CA_LABEL,
    ORGANISATION_CA_LABEL,
    ROOT_LABEL,
    Hierarchy,
    create_hierarchy,
)
from smki.ca.profiles import build_root, build_subordinate_ca
from smki.ca.requests import DeviceRequest, OrganisationRequest
from smki.config import Settings
from smki.domain import CertKind, RemotePartyRole, Usage
from smki.keys.file import FileKeyBackend, FileSigner


def _reference_dir() -> Path:
    """The DCC reference certificates: in the ``shared/`` beside this clone (as CI lays it out),
    else the workplace's ``/work/shared``."""
    beside = Path(__file__).resolve().parents[2].parent / "shared" / "reference-certs"
    return beside if beside.is_dir() else Path("/work/shared/reference-certs")


REFERENCE_DIR = _reference_dir()
NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


class DeterministicSigner:
    """RFC 6979 ECDSA: the same TBS gives the same signature, so whole certificates can be compared."""

    def __init__(self, label: str, key: ec.EllipticCurvePrivateKey) -> None:
        self._label = label
        self._key = key

    @property
    def label(self) -> str:
        return self._label

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))


class RecordingSigner(DeterministicSigner):
    """Counts signatures: proves that a refused certificate was never signed."""

    def __init__(self, label: str, key: ec.EllipticCurvePrivateKey) -> None:
        super().__init__(label, key)
        self.signed: list[bytes] = []

    def sign(self, data: bytes) -> bytes:
        self.signed.append(data)
        return super().sign(data)


@dataclass
class FileCA:
    """The hierarchy made by ``create_hierarchy`` over a FileKeyBackend, with its signers."""

    hierarchy: Hierarchy
    backend: FileKeyBackend
    settings: Settings
    root_signer: FileSigner
    organisation_signer: FileSigner
    device_signer: FileSigner
    directory: Path


@dataclass
class DeterministicCA:
    """The same profiles signed with RFC 6979 signers (for byte-for-byte comparisons)."""

    root: x509.Certificate
    organisation_ca: x509.Certificate
    device_ca: x509.Certificate
    root_signer: DeterministicSigner
    organisation_signer: DeterministicSigner
    device_signer: DeterministicSigner
    settings: Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def file_ca(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> FileCA:
    directory = tmp_path_factory.mktemp("file-ca")
    backend = FileKeyBackend(directory / "keys", b"correct horse battery")
    hierarchy = create_hierarchy(backend, settings, NOW)
    for name, cert in (
        ("root", hierarchy.root),
        ("oca", hierarchy.organisation_ca),
        ("dca", hierarchy.device_ca),
    ):
        (directory / f"{name}.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    return FileCA(
        hierarchy,
        backend,
        settings,
        backend.signer(ROOT_LABEL),
        backend.signer(ORGANISATION_CA_LABEL),
        backend.signer(DEVICE_CA_LABEL),
        directory,
    )


@pytest.fixture(scope="session")
def det_ca(settings: Settings) -> DeterministicCA:
    root_signer = DeterministicSigner("root", ec.generate_private_key(ec.SECP256R1()))
    organisation_signer = DeterministicSigner("organisation-ca", ec.generate_private_key(ec.SECP256R1()))
    device_signer = DeterministicSigner("device-ca", ec.generate_private_key(ec.SECP256R1()))
    root = build_root(root_signer, settings, NOW)
    organisation_ca = build_subordinate_ca(
        CertKind.ORGANISATION_CA, organisation_signer.public_key(), root, root_signer, settings, NOW
    )
    device_ca = build_subordinate_ca(
        CertKind.DEVICE_CA, device_signer.public_key(), root, root_signer, settings, NOW
    )
    return DeterministicCA(
        root, organisation_ca, device_ca, root_signer, organisation_signer, device_signer, settings
    )


def key_material(key: ec.EllipticCurvePublicKey) -> tuple[bytes, bytes]:
    """(SPKI DER, uncompressed point) of a public key."""
    return (
        key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
        key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint),
    )


def device_request(
    device_id: bytes = bytes.fromhex("00db123456789001"),
    usage: Usage = Usage.DS,
    key: ec.EllipticCurvePublicKey | None = None,
) -> DeviceRequest:
    key = key or ec.generate_private_key(ec.SECP256R1()).public_key()
    spki, point = key_material(key)
    return DeviceRequest(device_id, usage, spki, point)


def organisation_request(
    entity_id: bytes = bytes.fromhex("90b3d51f30010000"),
    role: RemotePartyRole = RemotePartyRole.SUPPLIER,
    usage: Usage = Usage.DS,
    common_name: str | None = "GITTESTSUPPLIER",
    key: ec.EllipticCurvePublicKey | None = None,
) -> OrganisationRequest:
    key = key or ec.generate_private_key(ec.SECP256R1()).public_key()
    spki, point = key_material(key)
    return OrganisationRequest(entity_id, role, usage, common_name, spki, point)


def reference(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((REFERENCE_DIR / name).read_bytes())


def openssl(*args: str | Path, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *map(str, args)], input=input, capture_output=True, check=False)


def write_pem(directory: Path, name: str, cert: x509.Certificate) -> Path:
    path = directory / name
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    return path


class AnyHwType(frozenset[str]):
    """Accepts every hwType: for tests of the CSR checks' structure rather than of the hwType list."""

    def __contains__(self, item: object) -> bool:
        return True


ANY_HW_TYPE = AnyHwType()
