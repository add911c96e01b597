"""The Repository extract: every certificate (full) or every one changed since a date (increment).

The real Repository's full extract passed 16 GB, which is why MP147 moved to a weekly full extract
plus daily increments (spec §3.1). smki streams both from the store a page at a time (keyset
pagination), writing each record as it is read: memory stays flat whatever the repository's size.
An increment selects on ``changed_at``, so it carries new certificates *and* status changes
(re-issue, expiry, revocation) since the date.

Format: CSV with a header row, one certificate per line, the Repository interface's field names
and encodings (hex serial, hyphenated EUI-64, status and usage codes, decimal role, base64 DER body).
"""

from __future__ import annotations

import base64
import csv
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from smki.eui64 import eui64_hyphenated
from smki.store import CertificateQuery, CertificateRecord, Store

COLUMNS = (
    "CertificateSerial",
    "CertificateKind",
    "CertificateSubjectName",
    "CertificateSubjectAltName",
    "CertificateStatus",
    "CertificateUsage",
    "CertificateRole",
    "IssuedAt",
    "NotBefore",
    "NotAfter",
    "ChangedAt",
    "RevokedAt",
    "RevocationReason",
    "CertificateBody",
)


def extract_row(record: CertificateRecord) -> list[str]:
    """One extract line for a stored certificate."""
    return [
        record.serial,
        record.kind.value,
        eui64_hyphenated(record.entity_id) if record.entity_id else "",
        eui64_hyphenated(record.device_id) if record.device_id else "",
        record.status.value,
        record.usage.value if record.usage else "",
        "" if record.role is None else str(record.role),
        record.issued_at.isoformat(),
        record.not_before.isoformat(),
        record.not_after.isoformat(),
        record.changed_at.isoformat(),
        record.revoked_at.isoformat() if record.revoked_at else "",
        "" if record.revocation_reason is None else str(record.revocation_reason),
        base64.b64encode(record.der).decode("ascii"),
    ]


def write_extract(
    store: Store,
    out: TextIO,
    *,
    since: datetime | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Write the full extract (``since`` None) or the increment since ``since``; returns the count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    count = 0
    for record in store.iter_certificates(CertificateQuery(changed_since=since)):
        writer.writerow(extract_row(record))
        count += 1
        if on_progress is not None and count % 10_000 == 0:
            on_progress(count)
    return count
