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


#: (len(tbs), len(signature)) → the octets before the TBS and those between it and the signature.
_SIGNED_HEADERS: dict[tuple[int, int], tuple[bytes, bytes]] = {}
_MAX_SIGNED_HEADERS = 1024  # a batch sees a handful of lengths; CRLs a few more; never unbounded


def signed_structure(tbs: bytes, signature: bytes) -> bytes:
    """``SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING }``: a Certificate or CertificateList.

    The headers depend only on the two lengths, and a batch's certificates have a handful of them
    (a DER ECDSA signature is 70 to 72 octets, rarely fewer): they are made once per pair and the
    certificate is one join (once per Device Certificate, so it counts).
    """
    key = (len(tbs), len(signature))
    headers = _SIGNED_HEADERS.get(key)
    if headers is None:
        headers = _signed_headers(*key)
        if len(_SIGNED_HEADERS) < _MAX_SIGNED_HEADERS:
            _SIGNED_HEADERS[key] = headers
    return b"".join((headers[0], tbs, headers[1], signature))


def _signed_headers(tbs_length: int, signature_length: int) -> tuple[bytes, bytes]:
    """The octets of :func:`signed_structure` around the TBS, for these lengths."""
    bit_string_header = b"\x03" + der_length(signature_length + 1) + b"\x00"
    content_length = tbs_length + len(ECDSA_WITH_SHA256) + len(bit_string_header) + signature_length
    return b"\x30" + der_length(content_length), ECDSA_WITH_SHA256 + bit_string_header
