"""EUI-64 parsing: every accepted spelling round-trips to the same 8 octets; nothing else is accepted."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smki.eui64 import InvalidEUI64, eui64_hex, eui64_hyphenated, parse_eui64

octets = st.binary(min_size=8, max_size=8)


@given(octets)
def test_every_spelling_parses_to_the_same_octets(raw: bytes) -> None:
    assert parse_eui64(raw.hex()) == raw
    assert parse_eui64(raw.hex().upper()) == raw
    assert parse_eui64(eui64_hyphenated(raw)) == raw
    assert parse_eui64(eui64_hyphenated(raw).replace("-", ":")) == raw
    assert parse_eui64(raw) == raw
    assert eui64_hex(raw) == raw.hex()


def test_repository_form_matches_the_spec() -> None:
    assert eui64_hyphenated(bytes.fromhex("90b3d51f30010000")) == "90-B3-D5-1F-30-01-00-00"


@given(st.text(max_size=40))
def test_garbage_is_refused_with_a_code(text: str) -> None:
    try:
        value = parse_eui64(text)
    except InvalidEUI64 as exc:
        assert exc.code == "eui64.invalid"
    else:
        assert len(value) == 8


@pytest.mark.parametrize(
    "text",
    ["", "90b3d51f3001000", "90b3d51f300100000", "90-B3-D5-1F-30-01-00", "90-B3:D5-1F-30-01-00-00", "zz" * 8],
)
def test_near_misses_are_refused(text: str) -> None:
    with pytest.raises(InvalidEUI64):
        parse_eui64(text)


def test_wrong_length_bytes_are_refused() -> None:
    with pytest.raises(InvalidEUI64):
        parse_eui64(b"\x00" * 7)
