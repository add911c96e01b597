"""Text a person typed (a name, a reason for a refusal), as smki stores and shows it.

It goes into the store (PostgreSQL refuses a NUL in text, and neither store can hold a lone UTF-16
surrogate), into audit records, into the DCC's XML (which cannot carry control characters) and
onto pages. So it is one line, runs of whitespace made one space, and printable: a control
character or a lone surrogate (a pasted escape sequence, a broken encoding) is refused with the
caller's code, naming what was wrong, rather than failing later as a database or rendering error.
"""

from __future__ import annotations

from smki.errors import SmkiError


def typed_text(value: str, what: str, *, limit: int, code: str) -> str:
    """``value`` as one printable line of 1 to ``limit`` characters, or ``code`` naming ``what``."""
    text = " ".join(value.split())
    if not text or len(text) > limit:
        raise SmkiError(code, f"{what} must be 1 to {limit} characters")
    if not text.isprintable():
        raise SmkiError(code, f"{what} holds a control character or an unencodable one: type it as plain text")
    return text
