"""The few DER encodings smki assembles itself, because ``cryptography`` cannot sign with an
external key.

``cryptography`` builds every certificate and CRL (the TBS part); a key backend signs the TBS
bytes; these helpers wrap ``SEQUENCE { tbs, ecdsa-with-SHA256, BIT STRING signature }``. The
algorithm identifier is fixed: every key in the SMKI is P-256 with SHA-256 (spec §4).
"""

from __future__ import annotations

ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")


def der_length(length: int) -> bytes:
    """The DER length octets for ``length`` (short form below 128, long form above)."""
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + der_length(len(value)) + value


def signed_structure(tbs: bytes, signature: bytes) -> bytes:
    """``SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING }``: a Certificate or CertificateList."""
    bit_string = der_tlv(0x03, b"\x00" + signature)
    return der_tlv(0x30, tbs + ECDSA_WITH_SHA256 + bit_string)
