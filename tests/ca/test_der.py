"""The DER helpers smki assembles certificates with: the cached headers agree with the encoder."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smki.ca.der import ECDSA_WITH_SHA256, der_tlv, signed_structure


@given(tbs_length=st.one_of(st.integers(0, 300), st.integers(300, 70_000)),
       signature=st.binary(min_size=0, max_size=200))
def test_signed_structure_is_the_plain_encoding(tbs_length: int, signature: bytes) -> None:
    tbs = b"\x30" * tbs_length
    plain = der_tlv(0x30, tbs + ECDSA_WITH_SHA256 + der_tlv(0x03, b"\x00" + signature))
    assert signed_structure(tbs, signature) == plain
    assert signed_structure(tbs, signature) == plain  # the second time from the cached headers
