"""RFC 5280 method-2 key identifiers, computed on the digest's octets, as the definition says."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from smki.ca.keyid import key_identifier_from_point


def _method_2(point: bytes) -> bytes:
    """The definition: 0100, then the low 60 bits of SHA-1 of the BIT STRING value."""
    digest = int.from_bytes(hashlib.sha1(point).digest(), "big")
    return ((0x4 << 60) | (digest & ((1 << 60) - 1))).to_bytes(8, "big")


@given(st.binary(min_size=0, max_size=100))
def test_key_identifier_is_method_2(point: bytes) -> None:
    assert key_identifier_from_point(point) == _method_2(point)


def test_every_low_nibble() -> None:
    seen = set()
    for i in range(2000):
        point = b"\x04" + i.to_bytes(64, "big")
        assert key_identifier_from_point(point) == _method_2(point)
        seen.add(hashlib.sha1(point).digest()[12] & 0x0F)
    assert len(seen) == 16
