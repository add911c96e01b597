"""How a refusal looks on the JSON API: ``{"error": {"code", "message", "rules": [...]}}``.

The status code follows the code's family so clients can act on it without parsing the message:
401 no or unknown credential; 403 refusals by rule (RA rules, revoked/suspended credentials, role);
404 unknown objects; 413 bodies over the limit; 422 input that parses but is not acceptable (a bad
CSR, an invalid field); 429 capacity; 400 anything else the client got wrong. A fault of smki's own
is a 500 with a fixed message — never a traceback.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse

from smki.errors import NotFound, SmkiError
from smki.observability.access import request_id
from smki.ra.engine import DecisionKind, PolicyRefusal, RuleRefusal

_UNAUTHENTICATED = {"credential.missing", "credential.unknown", "credential.unrecognised"}
_FORBIDDEN_PREFIXES = ("ra.", "credential.", "api.forbidden", "portal.forbidden")
_UNPROCESSABLE_PREFIXES = ("csr.", "eui64.", "request.invalid", "batch.empty", "batch.too-many", "store.bad-serial",
                           "api.invalid")


def status_for(error: SmkiError) -> int:
    code = error.code
    if code in _UNAUTHENTICATED:
        return 401
    if code.startswith("capacity."):
        return 429
    if code == "request.too-large":
        return 413
    if isinstance(error, NotFound) or code.endswith("not-found"):
        return 404
    if code.startswith(_FORBIDDEN_PREFIXES):
        return 403
    if code.startswith(_UNPROCESSABLE_PREFIXES):
        return 422
    if code.startswith(("store.unavailable", "key.", "ca.", "hsm.")):
        return 503
    return 400


def rules_of(error: SmkiError) -> list[dict[str, str]]:
    """The failing RA rules of a refusal, each with its SEC reference and the reason it failed."""
    if isinstance(error, PolicyRefusal):
        return [{"id": r.rule_id, "reference": r.reference, "reason": r.reason} for r in error.decision.failed]
    if isinstance(error, RuleRefusal):
        return [{"id": error.result.rule_id, "reference": error.result.reference, "reason": error.result.reason}]
    reference = getattr(error, "reference", "")
    if error.code.startswith("capacity.") and reference:
        return [{"id": error.code, "reference": str(reference), "reason": error.message}]
    return []


def error_body(code: str, message: str, rules: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The error object; ``request_id`` matches the ``X-Request-ID`` header and the access-log line."""
    return {"error": {"code": code, "message": message, "rules": rules or [], "request_id": request_id.get()}}


def count_refusal(error: SmkiError, csrs: int = 1) -> None:
    """Metrics: ``csrs`` CSRs refused (by code; a whole batch refused up front counts each of its
    CSRs), or a key-backend fault. A refused *read* (``channel.spoti-organisation-access``) is no CSR
    and is not counted."""
    from smki.observability import metrics

    if isinstance(error, PolicyRefusal) and error.decision.kind is DecisionKind.ACCESS:
        return
    if error.code.startswith(("csr.", "ra.", "capacity.", "eui64.")):
        metrics.csr_refused(error.code, csrs)
    elif error.code.startswith(("key.", "hsm.")):
        metrics.key_backend_error(error.code)


def error_response(error: SmkiError, status: int | None = None) -> JSONResponse:
    headers: dict[str, str] = {"Cache-Control": "no-store"}
    retry = getattr(error, "retry_after", None)
    if isinstance(retry, int | float) and error.code.startswith("capacity."):
        headers["Retry-After"] = str(max(1, math.ceil(retry)))
    return JSONResponse(error_body(error.code, error.message, rules_of(error)), status_code=status or status_for(error),
                        headers=headers)


def raw_error(status: int, code: str, message: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """An error as (status, headers, body) for the ASGI middleware, which runs before FastAPI."""
    body = json.dumps(error_body(code, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]
    return status, headers, body


async def send_error(send: Any, status: int, code: str, message: str,
                     extra_headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Answer an error straight through an ASGI ``send`` (the middleware's :func:`raw_error`)."""
    status, headers, body = raw_error(status, code, message)
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra_headers]})
    await send({"type": "http.response.body", "body": body})


class TrackedSend:
    """An ASGI ``send`` that remembers whether the response has started: a middleware that catches
    an error below it can answer only if nothing has been sent yet."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
