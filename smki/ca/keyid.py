"""RFC 5280 §4.2.1.2 method 2 key identifiers, as every SMKI certificate uses (spec §4).

Method 2 (8 octets: the 4-bit field ``0100`` then the low 60 bits of SHA-1 of the
subjectPublicKey BIT STRING value) rather than method 1 (the full 20-octet SHA-1) because the
reference certificates, and so the devices that match AKIs against SKIs, use it.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

_LOW_60_BITS = (1 << 60) - 1
_METHOD_2_PREFIX = 0x4 << 60


def key_identifier_from_point(point: bytes) -> bytes:
    """The method-2 identifier of a key given as its uncompressed SEC1 point (the BIT STRING value)."""
    digest = int.from_bytes(hashlib.sha1(point, usedforsecurity=False).digest()[-8:], "big")
    return (_METHOD_2_PREFIX | (digest & _LOW_60_BITS)).to_bytes(8, "big")


def key_identifier(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The method-2 key identifier (8 octets, first nibble ``4``) of an EC public key."""
    return key_identifier_from_point(public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
