"""Upload limits the Portal's pages enforce, which the listener's body limit must leave room for."""

from __future__ import annotations

MAX_CSR_UPLOAD = 64 * 1024
MAX_EVIDENCE_UPLOAD = 10 * 1024 * 1024
