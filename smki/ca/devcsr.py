"""Test and demonstration CSRs shaped like the ones Devices and Parties send (spec §4.4).

Used by the tests, ``smki dev make-csr`` and the benchmarks. Everything here produces CSRs that
:mod:`smki.ca.csr` accepts; the hostile variants live in the tests. Never used on the issuing path.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from smki.ca.der import der_tlv
from smki.ca.oids import HARDWARE_MODULE_NAME, X500_UNIQUE_IDENTIFIER
from smki.ca.profiles import end_entity_key_usage
from smki.domain import RemotePartyRole, Usage
from smki.eui64 import parse_eui64

#: hwType of the reference Device Certificates (spec §4.1); the CA writes its configured value.
DEFAULT_HW_TYPE = "1.2.826.0.1.8641679.1.2.2.1"


def oid_der(dotted: str) -> bytes:
    """DER ``OBJECT IDENTIFIER`` TLV for a dotted OID (cryptography has no public encoder)."""
    arcs = [int(arc) for arc in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40):
        raise ValueError(f"not an OID: {dotted[:40]!r}")
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return der_tlv(0x06, bytes(body))


def hardware_module_name(device_id: bytes, hw_type: str = DEFAULT_HW_TYPE) -> x509.OtherName:
    """RFC 4108 ``HardwareModuleName ::= SEQUENCE { hwType OID, hwSerialNum OCTET STRING }``.

    ``cryptography`` takes the otherName value as the DER of that SEQUENCE and adds the
    ``[0] EXPLICIT`` wrapper itself.
    """
    value = der_tlv(0x30, oid_der(hw_type) + der_tlv(0x04, device_id))
    return x509.OtherName(HARDWARE_MODULE_NAME, value)


def _der(builder: x509.CertificateSigningRequestBuilder, key: ec.EllipticCurvePrivateKey) -> bytes:
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def make_device_csr(
    device_id: bytes,
    usage: Usage,
    key: ec.EllipticCurvePrivateKey | None = None,
    *,
    hw_type: str = DEFAULT_HW_TYPE,
) -> bytes:
    """DER Device CSR: empty subject; extensionRequest with critical SAN hardwareModuleName and
    critical keyUsage. A fresh P-256 key unless ``key`` is given."""
    device_id = parse_eui64(device_id)
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([hardware_module_name(device_id, hw_type)]), critical=True)
        .add_extension(end_entity_key_usage(usage), critical=True)
    )
    return _der(builder, key or ec.generate_private_key(ec.SECP256R1()))


def organisation_subject(
    entity_id: bytes, role: RemotePartyRole, common_name: str | None = None
) -> x509.Name:
    """``[CN=<name>,] OU=<role hex>, x500UniqueIdentifier=<64-bit BIT STRING>`` (spec §4.2).

    ``cryptography`` writes a BIT STRING attribute's bytes verbatim as the content, so the
    unused-bits octet (0) must be prepended here; passing the 8 octets alone silently produces a
    malformed 56-bit value.
    """
    attributes = [] if common_name is None else [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, RemotePartyRole(role).ou))
    bits = b"\x00" + parse_eui64(entity_id)  # unused-bits octet, then the 64 bits
    # cryptography's stubs say str, but a BitString attribute takes (and returns) bytes.
    attributes.append(
        x509.NameAttribute(X500_UNIQUE_IDENTIFIER, bits, _type=_ASN1Type.BitString)  # type: ignore[arg-type]
    )
    return x509.Name(attributes)


def make_organisation_csr(
    entity_id: bytes,
    role: RemotePartyRole,
    usage: Usage,
    common_name: str | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """DER Organisation CSR: subject from :func:`organisation_subject`, critical keyUsage only."""
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(organisation_subject(entity_id, role, common_name))
        .add_extension(end_entity_key_usage(usage), critical=True)
    )
    return _der(builder, key or ec.generate_private_key(ec.SECP256R1()))


def device_csr_stream(
    count: int, *, first_device: int = 0x00DB123400000000, keys: int = 0
) -> Iterator[tuple[bytes, Usage, bytes]]:
    """Yield ``count`` (device_id, usage, DER) Device CSRs: DS then KA for consecutive Device IDs.

    ``keys=0`` generates a fresh key per CSR, as real Devices would; ``keys=N`` reuses N keys
    round-robin, which makes input for the CSR checks alone cheap to produce (checking costs the
    same) — but issuing certifies each key once: the repeats are refused as ``csr.duplicate``.
    """
    if count < 0 or keys < 0:
        raise ValueError("count and keys must not be negative")
    pool = [ec.generate_private_key(ec.SECP256R1()) for _ in range(keys)]
    cycle = itertools.cycle(pool) if pool else None
    for index in range(count):
        device_id = ((first_device + index // 2) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
        usage = Usage.DS if index % 2 == 0 else Usage.KA
        key = next(cycle) if cycle is not None else None
        yield device_id, usage, make_device_csr(device_id, usage, key)


def write_device_csrs(path: Path, count: int, start: int = 0x00DB000000000000) -> None:
    """Write ``count`` Device CSRs as one multi-PEM file, streamed: a fresh key each, as real
    Devices make, since smki certifies a key once (``csr.duplicate``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        for _device, _usage, der in device_csr_stream(count, first_device=start):
            handle.write(x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM))
