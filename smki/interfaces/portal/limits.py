"""Upload limits the Portal's pages enforce, which the listener's body limit must leave room for."""

from __future__ import annotations

MAX_CSR_UPLOAD = 64 * 1024
MAX_EVIDENCE_UPLOAD = 10 * 1024 * 1024


def human_size(size: int) -> str:
    """A byte count as a page shows it: ``10 MiB``, ``256 KiB``, ``1.5 MiB``, ``900 bytes``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"
