"""A published CRL or ARL as an HTTP response that relying parties' fetchers can cache and revalidate.

A relying party fetches the CRL again and again (at every nextUpdate, and more often when it is
careful), and a 100,000-entry list is megabytes. So every response carries

* ``ETag``: a digest of the list's bytes and the format, so two homes (or a re-initialised one)
  whose CRL numbers coincide never share a tag;
* ``Last-Modified`` = the list's thisUpdate and ``Expires`` = its nextUpdate (RFC 5280 §5.1.2.4-5):
  the time by which the next list is due;
* ``Cache-Control``: the *newest* list may be replaced by the next revocation at any moment, so it
  is ``no-cache`` (keep it, but revalidate before each use: a 304 costs no body); a list fetched
  by number never changes, so it is ``immutable``.

``If-None-Match`` (or, without it, ``If-Modified-Since``) that matches gets ``304 Not Modified``
(RFC 9110 §13.1).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from starlette.requests import Request
from starlette.responses import Response

from smki.store import RevocationListRecord

#: A list fetched by its number never changes: a year is as long as caches honour.
IMMUTABLE = "max-age=31536000, immutable"
#: The newest list changes with the next revocation: store it, but revalidate before each use.
REVALIDATE = "no-cache"


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _pem(der: bytes) -> bytes:
    text = base64.b64encode(der).decode()
    lines = "\n".join(text[i:i + 64] for i in range(0, len(text), 64))
    return f"-----BEGIN X509 CRL-----\n{lines}\n-----END X509 CRL-----\n".encode()


def _not_modified(request: Request, etag: str, last_modified: datetime) -> bool:
    """RFC 9110 §13.2.2: If-None-Match decides when present; otherwise If-Modified-Since."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or etag in tags
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError, IndexError):
        return False  # an unparseable date is ignored (RFC 9110 §13.1.3)
    return _utc(last_modified).replace(microsecond=0) <= _utc(since)


def list_response(request: Request, record: RevocationListRecord, kind: str, fmt: str, *, newest: bool) -> Response:
    """The list as DER (``application/pkix-crl``) or PEM, with caching headers, or a 304."""
    digest = hashlib.sha256(record.der).hexdigest()[:32]
    etag = f'"{kind}-{record.number}-{digest}-{fmt}"'
    headers = {
        "ETag": etag,
        "Last-Modified": format_datetime(_utc(record.this_update), usegmt=True),
        "Expires": format_datetime(_utc(record.next_update), usegmt=True),
        "Cache-Control": REVALIDATE if newest else IMMUTABLE,
    }
    if _not_modified(request, etag, record.this_update):
        return Response(status_code=304, headers=headers)
    name = f"{kind}-{record.number}"
    if fmt == "pem":
        return Response(_pem(record.der), media_type="application/x-pem-file",
                        headers={**headers, "Content-Disposition": f'attachment; filename="{name}.pem"'})
    return Response(record.der, media_type="application/pkix-crl",
                    headers={**headers, "Content-Disposition": f'attachment; filename="{name}.{kind}"'})
