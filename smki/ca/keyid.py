"""RFC 5280 §4.2.1.2 method 2 key identifiers, as every SMKI certificate uses (spec §4).

Method 2 (8 octets: the 4-bit field ``0100`` then the low 60 bits of SHA-1 of the
subjectPublicKey BIT STRING value) rather than method 1 (the full 20-octet SHA-1) because the
reference certificates, and so the devices that match AKIs against SKIs, use it.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

#: The first octet of a method-2 identifier for each value of the digest octet's low nibble.
_METHOD_2_NIBBLE = tuple(bytes((0x40 | low,)) for low in range(16))


def key_identifier_from_point(point: bytes) -> bytes:
    """The method-2 identifier of a key given as its uncompressed SEC1 point (the BIT STRING value)."""
    # The low 60 bits of the digest are its last 8 octets with the first one's top nibble cleared;
    # that nibble becomes 0100. Done on the octets (once per Device Certificate): the same value as
    # ``(0x4 << 60 | int(digest[-8:]) & (1 << 60) - 1)`` (``tests/ca/test_keyid.py``), in half the time.
    digest = hashlib.sha1(point, usedforsecurity=False).digest()
    return _METHOD_2_NIBBLE[digest[12] & 0x0F] + digest[13:]


def key_identifier(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The method-2 key identifier (8 octets, first nibble ``4``) of an EC public key."""
    return key_identifier_from_point(public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))


#: DER SubjectPublicKeyInfo of a P-256 key up to its 65-byte uncompressed point (as in the profiles).
P256_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")


def key_fingerprint(point: bytes) -> bytes:
    """What the key register (duplicate keys, ``csr.duplicate``) knows a key by: the first 16
    octets of SHA-256 of its uncompressed point. Not the 60-bit SKI: among hundreds of millions of
    Device keys that would collide by chance, and a collision would refuse an honest CSR."""
    return hashlib.sha256(point).digest()[:16]


def certificate_key_fingerprint(der: bytes) -> bytes:
    """:func:`key_fingerprint` of a P-256 certificate's key, found by its SPKI in the DER.

    The batch writer has each certificate only as DER; finding the SPKI's fixed prefix costs far
    less than parsing. The prefix cannot occur earlier: before the SPKI come only the version,
    a serial of at most 20 octets, the algorithm, two names and the validity, none holding it.
    """
    fingerprint = peek_key_fingerprint(der)
    if fingerprint is None:
        raise ValueError("not a P-256 certificate")
    return fingerprint


def peek_key_fingerprint(der: bytes) -> bytes | None:
    """:func:`key_fingerprint` of the first P-256 SubjectPublicKeyInfo in ``der`` (a certificate,
    or a CSR before it is checked), None if there is none. For a CSR it is a guess made without
    checking it: a caller reading ahead with it must compare it with the checked key's."""
    at = der.find(P256_SPKI_PREFIX)
    if at < 0 or len(der) < at + len(P256_SPKI_PREFIX) + 65:
        return None
    start = at + len(P256_SPKI_PREFIX)
    return key_fingerprint(der[start:start + 65])
