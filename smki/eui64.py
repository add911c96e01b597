"""EUI-64 Entity Identifiers and Device IDs (spec §1).

The SEC writes them as 16 hex digits, and the Repository interface as eight hyphen-separated octets
(``90-B3-D5-1F-30-01-00-00``). Everything inside smki handles them as 8 raw bytes; these functions
are the only place text becomes bytes and back.
"""

from __future__ import annotations

import re

from smki.errors import SmkiError

_HEX16 = re.compile(r"[0-9A-Fa-f]{16}")
_SEPARATED = re.compile(r"[0-9A-Fa-f]{2}([-:])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){6}")


class InvalidEUI64(SmkiError):
    """Text or bytes that are not an EUI-64."""


def parse_eui64(value: str | bytes) -> bytes:
    """Return the 8 octets of an EUI-64 given as 16 hex digits, ``AA-BB-…``/``AA:BB:…``, or 8 bytes."""
    if isinstance(value, bytes | bytearray):
        if len(value) != 8:
            raise InvalidEUI64("eui64.invalid", f"an EUI-64 is 8 octets, got {len(value)}")
        return bytes(value)
    if not isinstance(value, str):
        raise InvalidEUI64("eui64.invalid", "an EUI-64 must be text or bytes")
    text = value.strip()
    if _HEX16.fullmatch(text):
        return bytes.fromhex(text)
    if _SEPARATED.fullmatch(text):
        return bytes.fromhex(text.replace("-", "").replace(":", ""))
    shown = text if len(text) <= 40 else text[:40] + "…"
    raise InvalidEUI64(
        "eui64.invalid",
        f"{shown!r} is not an EUI-64 (16 hex digits, or 8 octets separated by '-' or ':')",
    )


def eui64_hex(value: bytes) -> str:
    """16 lower-case hex digits: the form used in file names and the store."""
    return parse_eui64(value).hex()


def eui64_hyphenated(value: bytes) -> str:
    """``90-B3-D5-1F-30-01-00-00``: the form of the DCC Repository interface."""
    return "-".join(f"{b:02X}" for b in parse_eui64(value))
