"""The DCC-compatible XML services (spec §3.1, §3.2) over the codecs of :mod:`.codec`.

* Ad Hoc Device CSR service — ``POST /1.0/DeviceCSR`` (Gateway only; the path is smki's choice,
  the public record names none). Always HTTP 200 with a ``DeviceCertificateSigningResponse``.
  Only a Party registered as a User in the role Import Supplier or Gas Supplier, or the DCC itself,
  may use it: smki reads that from the Party's *Registered User roles* in the RA's register
  (``import-supplier``, ``gas-supplier``, ``dcc``) or its category ``dcc``; anyone else gets
  ``WORKFLOW_ERROR`` ``WF:AA1`` (``workflow.role-not-permitted``).
* Batched Device CSR service — ``POST /1.0/PortalCSRBatch/SubmitCSRBatch`` and
  ``GET /1.0/PortalCSRBatch/CSRBatchResult?BatchId=N`` (Gateway only): batches become jobs run by
  the server's batch runner; results are streamed from the store and kept 30 days. On SPOTI a
  CSRBatchResult is ``WORKFLOW_ERROR`` ``WF:RA1`` (``channel.spoti-organisation-access``): the
  request as a whole is refused by rule, before the BatchId is even looked at.
* Repository — ``POST /services/certificatesearch`` and ``/services/retrievecertificate`` (both
  listeners): 401 for invalid search parameters, 402 for no result, ``application/xml``. If
  ``[api] repository-apikey`` is set, ``?apikey=`` must match it (403 otherwise). On SPOTI, where
  only Organisation Certificates may be read (``channel.spoti-organisation-access``), a search by
  Device ID (``CertificateSubjectAltName``) is 401 — a search SPOTI does not offer, not an empty
  result — and a Device Certificate's serial is 402, as if not in the Repository: SPOTI's
  Repository holds no Device Certificate. Both refusals are audited ``access.refused``. A Party
  that has not passed SREPT (``repository.srept-passed``, spec §1) is 403 with an empty body, as a
  refused credential is: the caller may not read, whatever it asks (also audited ``access.refused``).

Everything else under ``/1.0`` and ``/services`` — a trailing slash, a mistyped path, a wrong method,
the listener's refusals, a repeated ``BatchId`` or ``apikey`` — is refused in a service's own shape
(:func:`dcc_refusal`, :class:`DccFallbackRoute`), never smki's JSON or a redirect of a POST.

Handlers read the body themselves (the listener middleware has already bounded its size) and do
the blocking work in the thread pool.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from smki.domain import MAX_ROW_ID, CertificatePolicy, CertKind, CertStatus, Usage
from smki.errors import SmkiError
from smki.interfaces.api.context import ListenerContext, ctx_of, identity_of, requester_of
from smki.interfaces.api.errors import count_refusal
from smki.interfaces.dcc import codec as dx
from smki.ra.engine import PolicyRefusal, RuleRefusal
from smki.services import batch_jobs
from smki.services import certificate_access as access
from smki.services.requests import Requester
from smki.store import CertificateRecord
from smki.store.batches import BatchJobRecord
from smki.store.registry import PartyRecord

XML = "application/xml"
ADHOC_PATH = "/1.0/DeviceCSR"
SUBMIT_PATH = "/1.0/PortalCSRBatch/SubmitCSRBatch"
RESULT_PATH = "/1.0/PortalCSRBatch/CSRBatchResult"
SEARCH_PATH = "/services/certificatesearch"
RETRIEVE_PATH = "/services/retrievecertificate"
#: The path prefixes of the DCC services: every request under them is answered in a service's own
#: shape (a wrong method, a trailing slash, a mistyped name), never smki's JSON or a redirect.
DEVICE_PREFIX = "/1.0"
REPOSITORY_PREFIX = "/services"
#: Each service's path and method, as the spec names them (no trailing slash).
SERVICES = {ADHOC_PATH: "POST", SUBMIT_PATH: "POST", RESULT_PATH: "GET", SEARCH_PATH: "POST", RETRIEVE_PATH: "POST"}
ADHOC_ROLES = frozenset({"import-supplier", "gas-supplier", "dcc"})
#: Bytes per chunk of a streamed ``CSRBatchResult``: each chunk is one hop from the thread pool to
#: the event loop, so a 30 MB answer goes out in ~30 of them rather than ~500 of 64 KB.
RESULT_CHUNK = 1024 * 1024


def _xml(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=XML, headers={"Cache-Control": "no-store"})


def _transaction_id() -> int:
    return secrets.randbits(62) + 1


# ---------------------------------------------------------------------------------------------
# Ad Hoc


def _check_adhoc_role(ctx: ListenerContext, requester: Requester) -> PartyRecord:
    """The requester's Party, if its roles let it use the Ad Hoc service (the record is handed on to
    the request rules, which need it too: one read per request)."""
    party = requester.party_read() or ctx.home.store.registry.party(requester.party_id)
    if party is None:
        raise SmkiError("ra.party-not-found", f"no Party {requester.party_id!r}")
    if party.category == "dcc" or ADHOC_ROLES & set(party.registered_user_roles):
        return party
    raise SmkiError("workflow.role-not-permitted",
                    "the Ad Hoc Device CSR service is for Import Suppliers, Gas Suppliers and the DCC only")


def _adhoc(ctx: ListenerContext, requester: Requester, body: bytes) -> dx.DeviceCertificateSigningResponse:
    try:
        message = dx.parse_device_csr_request(body, max_bytes=ctx.api.max_body)
    except dx.DccFormatError as exc:
        outcome = dx.dcc_error_from(dx.Service.AD_HOC, exc)
        return dx.DeviceCertificateSigningResponse(exc.request_id, _transaction_id(), outcome.status,  # type: ignore[arg-type]
                                                   error=outcome.error)
    try:
        with ctx.home.store.held_reads():  # the role check's read and the request's share a connection
            party = _check_adhoc_role(ctx, requester)
            outcome_ok = batch_jobs.request_single_device(
                ctx.home, requester, message.csr_der, capacity=ctx.capacity, limit_name="adhoc-service",
                interface="adhoc", require_known_device=True, party=party)
    except PolicyRefusal as exc:
        count_refusal(exc)
        refused = dx.dcc_error_from(dx.Service.AD_HOC, exc, exc.decision.failed_ids)
        return dx.DeviceCertificateSigningResponse(message.id, _transaction_id(), refused.status,  # type: ignore[arg-type]
                                                   error=refused.error)
    except SmkiError as exc:
        count_refusal(exc)
        refused = dx.dcc_error_from(dx.Service.AD_HOC, exc)
        return dx.DeviceCertificateSigningResponse(message.id, _transaction_id(), refused.status,  # type: ignore[arg-type]
                                                   error=refused.error)
    return dx.DeviceCertificateSigningResponse(message.id, _transaction_id(), dx.AdHocStatus.SUCCESS,
                                               certificate_der=outcome_ok.der)


# ---------------------------------------------------------------------------------------------
# Batches


def _submit(ctx: ListenerContext, requester: Requester, body: bytes) -> dx.SubmitCSRBatchStatus:
    try:
        batch = dx.parse_submit_csr_batch(body, max_bytes=ctx.api.max_batch_body)
    except dx.DccFormatError as exc:
        return dx.SubmitCSRBatchStatus(dx.SubmitStatus.FORMAT_ERROR, error=dx.DccError(exc.code, exc.message))
    try:
        job = batch_jobs.submit_batch(ctx.home, requester, [(c.id, c.csr_der) for c in batch.csrs],
                                      interface="xml", client_ref=batch.id, capacity=ctx.capacity,
                                      head_start=ctx.head_start)
    except PolicyRefusal as exc:
        count_refusal(exc, len(batch.csrs))
        return dx.SubmitCSRBatchStatus(dx.SubmitStatus.WORKFLOW_ERROR, error=dx.rule_refusal(exc.decision.failed_ids))
    except SmkiError as exc:
        count_refusal(exc, len(batch.csrs))
        outcome = dx.dcc_error_from(dx.Service.BATCH, exc)
        # A submission has no CA_ERROR status: the CA unable to sign (key.*, hsm.*) refuses it as a
        # workflow error with the documented WF:AA1 and the key's code in the text (issue 11).
        code = (outcome.error.code if outcome.error.code.startswith("WF:")
                else dx.WORKFLOW_CODE if outcome.error.code == dx.CA_CODE else dx.OTHER_CODE)
        return dx.SubmitCSRBatchStatus(dx.SubmitStatus.WORKFLOW_ERROR, error=dx.DccError(code, outcome.error.text))
    ctx.wake_runner()
    return dx.SubmitCSRBatchStatus(dx.SubmitStatus.PENDING, batch_id=job.id)


def _device_certificates(ctx: ListenerContext,
                         job: BatchJobRecord) -> Iterator[dx.DeviceCertificate | tuple[str, bytes]]:
    """The result's entries from the store: ``(ID, DER)`` for each certificate (rendered without
    building an object per entry), a ``DeviceCertificate`` with its Error for each refusal."""
    rules = batch_jobs.job_rules(job)
    for row in batch_jobs.iter_result_rows(ctx.home, job):
        if row.der is not None:
            yield row.item_id, row.der
        else:
            yield _refused_certificate(row.item_id, row.error_code, row.error_text, rules)


def _refused_certificate(item_id: str, error_code: str | None, error_text: str | None,
                         rules: list[str]) -> dx.DeviceCertificate:
    code = error_code or "issuance.anomaly"
    outcome = dx.dcc_error_for(dx.Service.BATCH, code, error_text or code, rules if code == "ra.refused" else ())
    return dx.DeviceCertificate(item_id, outcome.status, error=outcome.error)  # type: ignore[arg-type]


def _result_head(ctx: ListenerContext, requester: Requester, batch_ids: list[str]
                 ) -> BatchJobRecord | dx.CSRBatchResult:
    """The batch a CSRBatchResult asks for (``batch_ids``: every ``BatchId`` in the query), or the
    answer that refuses it: WORKFLOW_ERROR ``WF:RA1`` naming the rule on a listener that may not hand
    out Device Certificates (SPOTI), whatever the BatchId; else FORMAT_ERROR ``FM:AA3`` for a BatchId
    that is not one of the Party's batches, or that is given more than once (which would it be?)."""
    shown = " ".join((",".join(batch_ids) or "?")[:40].split())  # client text, bounded, for the audit record
    try:
        access.authorise_device_batch(ctx.home, ctx.route, requester.actor, shown)
    except PolicyRefusal as exc:
        return dx.CSRBatchResult(dx.BatchStatus.WORKFLOW_ERROR, error=dx.rule_refusal(exc.decision.failed_ids))
    if len(batch_ids) > 1:
        return _unknown_batch(f"BatchId is given {len(batch_ids)} times: give it once")
    batch_text = batch_ids[0] if batch_ids else None
    # At most 19 digits (MAX_ROW_ID's) before int(): Python refuses int() of over 4,300 digits with
    # a ValueError, which would be a 500 with a JSON body on an XML service.
    if batch_text is None or not (batch_text.isascii() and batch_text.isdigit()) or len(batch_text) > 19 \
            or not 0 < int(batch_text) <= MAX_ROW_ID:
        return _unknown_batch("BatchId must be a positive integer naming one of your batches")
    try:
        return batch_jobs.job_for_party(ctx.home, int(batch_text), requester.party_id)
    except SmkiError:
        return _unknown_batch(f"no batch {batch_text} for this Party")


def _unknown_batch(text: str) -> dx.CSRBatchResult:
    return dx.CSRBatchResult(dx.BatchStatus.FORMAT_ERROR, error=dx.DccError(dx.FM_UNKNOWN_BATCH, text))


# ---------------------------------------------------------------------------------------------
# Repository


def _dcc_record(record: CertificateRecord) -> dx.CertificateRecord:
    device = record.kind is CertKind.DEVICE
    eui = record.device_id if device else record.entity_id
    assert eui is not None and record.usage is not None
    return dx.CertificateRecord(serial=int(record.serial, 16), eui64=eui, device=device,
                                status=CertStatus(record.status),
                                usage=Usage(record.usage), role=None if device else record.role)


def _listed(record: CertificateRecord) -> bool:
    return record.kind in (CertKind.DEVICE, CertKind.ORGANISATION) and record.usage is not None


def _audit_reference() -> str:
    return secrets.token_hex(8).upper()


def _search(ctx: ListenerContext, actor: str, body: bytes) -> Response:
    try:
        request = dx.parse_certificate_search_request(body, max_bytes=ctx.api.max_body)
    except dx.DccFormatError:
        return _xml(b"", 401)
    store = ctx.home.store
    if request.by is dx.SearchBy.SUBJECT_ALT_NAME:
        try:  # 401: over SPOTI a search by Device ID is not a valid search at all (module docstring)
            access.authorise_read(ctx.home, ctx.route, actor, CertificatePolicy.DEVICE,
                                  f"a search by Device ID {request.eui64.hex()}")
        except PolicyRefusal:
            return _xml(b"", 401)
        found = store.certificates_for_device(request.eui64)
    else:
        found = store.certificates_for_entity(request.eui64)
    hidden = access.hidden_kinds(ctx.route)  # once per search, not per certificate found
    results = tuple(_dcc_record(r) for r in found if _listed(r) and r.kind not in hidden)
    if not results:
        return _xml(b"", 402)
    return _xml(dx.render_certificate_search_response(dx.CertificateSearchResponse(_audit_reference(), results)))


def _retrieve(ctx: ListenerContext, actor: str, body: bytes) -> Response:
    try:
        request = dx.parse_certificate_data_request(body, max_bytes=ctx.api.max_body)
    except dx.DccFormatError:
        return _xml(b"", 401)
    if request.serial.bit_length() > 128:
        return _xml(b"", 402)
    record = ctx.home.store.certificate_by_serial(request.serial)
    if record is None or not _listed(record):
        return _xml(b"", 402)
    try:  # 402: SPOTI's Repository holds no Device Certificate (module docstring)
        access.readable(ctx.home, ctx.route, actor, record)
    except PolicyRefusal:
        return _xml(b"", 402)
    return _xml(dx.render_certificate_data_response(
        dx.CertificateDataResponse(_audit_reference(), _dcc_record(record), record.der)))


def _apikey_ok(ctx: ListenerContext, request: Request) -> bool:
    wanted = ctx.api.repository_apikey
    if not wanted:
        return True
    given = request.query_params.getlist("apikey")
    # Given twice (``?apikey=a&apikey=b``), it is no one key: refused, not the last one silently.
    return len(given) == 1 and hmac.compare_digest(given[0].encode(), wanted.encode())


def _forbidden_key() -> Response:
    return _xml(b"", 403)


def _srept_refused(ctx: ListenerContext, request: Request) -> Response | None:
    """Rule ``repository.srept-passed`` (spec §1): a Party that has not passed SREPT may not read the
    Repository. None when the caller may read; else HTTP 403 with an empty ``application/xml`` body,
    the shape these services give every refusal of the *caller* (a wrong apikey, a refused
    credential): DCC clients read the status, and the messages have no error element. Not 401 (the
    parameters are valid) nor 402 (a client reads it as "no certificate", which is false). The
    refusal, with its rule and reason, is in the audit log (``access.refused``)."""
    identity = identity_of(request)
    try:
        access.authorise_repository(ctx.home, identity.actor, identity.party_id, identity.party)
    except RuleRefusal:
        return _xml(b"", 403)
    return None


# ---------------------------------------------------------------------------------------------
# Refusals made before a handler ran


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def dcc_service_at(path: str, method: str) -> str | None:
    """The service whose message answers a refusal at ``path`` (one of :data:`SERVICES`), or None if
    ``path`` is not under the DCC services' prefixes.

    A service's own path is that service. Under ``/1.0``, a near miss — the same path with trailing
    slashes or in another case (``/1.0/DeviceCSR/``) — is the service the client meant; any other
    path is answered as the service its method suggests: GET as ``CSRBatchResult`` (the only GET),
    else under ``/1.0/PortalCSRBatch`` as ``SubmitCSRBatchStatus``, else as the Ad Hoc service.
    Under ``/services`` every path is the Repository's (its refusals are a status, whichever).
    """
    if _under(path, REPOSITORY_PREFIX):
        return path if path in (SEARCH_PATH, RETRIEVE_PATH) else SEARCH_PATH
    if not _under(path, DEVICE_PREFIX):
        return None
    meant = path.rstrip("/").casefold()
    for known in (ADHOC_PATH, SUBMIT_PATH, RESULT_PATH):
        if meant == known.casefold():
            return known
    if method in ("GET", "HEAD"):
        return RESULT_PATH
    return SUBMIT_PATH if _under(meant, "/1.0/portalcsrbatch") else ADHOC_PATH


def dcc_refusal(path: str, status: int, code: str, message: str, method: str = "POST") -> Response | None:
    """A refusal made outside the handler at ``path`` (the listener's credential check, a body over the
    limit or stalled, a wrong method, no such path), as that XML service answers; None if ``path`` is
    not under the DCC services' prefixes (:func:`dcc_service_at` says which service answers).

    The Device CSR services answer HTTP 200 with their own message, as spec §3.2 says the Ad Hoc
    service does even for errors: a body over the limit is ``FORMAT_ERROR`` ``FM:AA1`` (the codec's
    ``MessageTooLarge``), anything else ``WORKFLOW_ERROR`` as :func:`dx.dcc_error_for` codes it. The
    Repository answers the status with an empty body, as its own refusals (401, 402, 403) do.
    """
    service = dcc_service_at(path, method)
    if service is None:
        return None
    if service in (SEARCH_PATH, RETRIEVE_PATH):
        return _xml(b"", status)
    if code == "request.too-large":
        error = dx.DccError(dx.FM_INVALID_XML, f"MessageTooLarge: {message}")
    else:
        error = dx.dcc_error_for(dx.Service.BATCH, code, message).error
        assert error is not None
        if not error.code.startswith(("FM:", "WF:")):  # these refusals have only the two statuses
            error = dx.DccError(dx.OTHER_CODE, error.text)
    if service == ADHOC_PATH:
        status_ad_hoc = dx.AdHocStatus.FORMAT_ERROR if error.code.startswith("FM:") else dx.AdHocStatus.WORKFLOW_ERROR
        return _xml(dx.render_device_csr_response(
            dx.DeviceCertificateSigningResponse(None, _transaction_id(), status_ad_hoc, error=error)))
    if service == SUBMIT_PATH:
        submit = dx.SubmitStatus.FORMAT_ERROR if error.code.startswith("FM:") else dx.SubmitStatus.WORKFLOW_ERROR
        return _xml(dx.render_submit_csr_batch_status(dx.SubmitCSRBatchStatus(submit, error=error)))
    result = dx.BatchStatus.FORMAT_ERROR if error.code.startswith("FM:") else dx.BatchStatus.WORKFLOW_ERROR
    return _xml(dx.render_csr_batch_result(dx.CSRBatchResult(result, error=error)))


def _not_found_message(path: str, method: str) -> str:
    service = dcc_service_at(path, method)
    if service is not None and path.rstrip("/").casefold() == service.casefold():
        return f"no service at this path: the service is {SERVICES[service]} {service} (no trailing slash)"
    listed = ", ".join(f"{verb} {known}" for known, verb in SERVICES.items()
                       if _under(known, REPOSITORY_PREFIX) == _under(path, REPOSITORY_PREFIX))
    return f"no service at this path; the services are {listed}"


class DccFallbackRoute(BaseRoute):
    """Every path under the DCC services' prefixes that is not a service: answered 404 as the service
    :func:`dcc_service_at` names refuses (HTTP 200 and its message under ``/1.0``, 404 with an empty
    body under ``/services``), not smki's JSON 404. Registered after every other route, it also
    keeps Starlette from answering ``POST /1.0/DeviceCSR/`` with a 307 redirect to the path without
    the slash, which a client posting a body does not follow safely (its redirect is tried only when
    no route matched). A service's own path with the wrong method is not matched here: the router's
    405, with ``Allow``, goes to :func:`dcc_refusal` from the app's handler."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            path = scope["path"]
            if path not in SERVICES and dcc_service_at(path, scope["method"]) is not None:
                return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        response = dcc_refusal(path, 404, "http.not-found", _not_found_message(path, method), method)
        assert response is not None
        await response(scope, receive, send)


# ---------------------------------------------------------------------------------------------
# Routers

_XML_BODY: dict[str, Any] = {"requestBody": {"content": {XML: {"schema": {"type": "string"}}}, "required": True}}
_XML_OUT: dict[int | str, dict[str, Any]] = {200: {"content": {XML: {"schema": {"type": "string"}}}}}
#: The Repository's refusal of the caller (a wrong apikey, a Party without SREPT): empty body.
_REFUSED: dict[int | str, dict[str, Any]] = {
    403: {"description": "Refused: wrong apikey, or the Party has not passed SREPT (empty body)"}}


def create_device_router() -> APIRouter:
    """The Device CSR web services: registered on the Gateway listener only."""
    router = APIRouter(tags=["DCC Device CSR services (XML)"])

    @router.post(ADHOC_PATH, response_class=Response, openapi_extra=_XML_BODY, responses=_XML_OUT)
    async def adhoc(request: Request) -> Response:
        """Ad Hoc Device CSR service: one ``DeviceCertificateSigningRequest`` (always HTTP 200)."""
        ctx = ctx_of(request)
        requester = requester_of(request)
        body = await request.body()
        response = await run_in_threadpool(_adhoc, ctx, requester, body)
        return _xml(dx.render_device_csr_response(response))

    @router.post(SUBMIT_PATH, response_class=Response, openapi_extra=_XML_BODY, responses=_XML_OUT)
    async def submit(request: Request) -> Response:
        """Batched Device CSR service: ``SubmitCSRBatch`` → ``SubmitCSRBatchStatus`` with a BatchId."""
        ctx = ctx_of(request)
        requester = requester_of(request)
        body = await request.body()
        status = await run_in_threadpool(_submit, ctx, requester, body)
        return _xml(dx.render_submit_csr_batch_status(status))

    @router.get(RESULT_PATH, response_class=Response, responses=_XML_OUT)
    async def result(request: Request) -> Response:
        """``CSRBatchResult`` for one of your batches (``?BatchId=N``); ``FM:AA3`` if unknown or not yours;
        ``WORKFLOW_ERROR`` ``WF:RA1`` on SPOTI (``channel.spoti-organisation-access``)."""
        ctx = ctx_of(request)
        requester = requester_of(request)
        head = await run_in_threadpool(_result_head, ctx, requester, request.query_params.getlist("BatchId"))
        if isinstance(head, dx.CSRBatchResult):
            return _xml(dx.render_csr_batch_result(head))
        status = dx.BatchStatus(head.status)
        if status is dx.BatchStatus.REJECTED:  # the RA's reason travels in the optional Error
            return _xml(dx.render_csr_batch_result(dx.CSRBatchResult(status, error=dx.rejected_error(head.error_text))))
        if status is not dx.BatchStatus.COMPLETED:
            return _xml(dx.render_csr_batch_result(dx.CSRBatchResult(status)))
        chunks = dx.iter_csr_batch_result(status, _device_certificates(ctx, head), chunk_bytes=RESULT_CHUNK)
        return StreamingResponse(iterate_in_threadpool(chunks), media_type=XML, headers={"Cache-Control": "no-store"})

    return router


def create_repository_router() -> APIRouter:
    """The DCC Repository services: both listeners."""
    router = APIRouter(tags=["DCC Repository services (XML)"])

    @router.post(SEARCH_PATH, response_class=Response, openapi_extra=_XML_BODY,
                 responses={**_XML_OUT, 401: {"description": "Invalid search parameters"},
                            402: {"description": "No result"}, **_REFUSED})
    async def certificatesearch(request: Request) -> Response:
        """Search by Entity Identifier (``CertificateSubjectName``) or Device ID (``CertificateSubjectAltName``)."""
        ctx = ctx_of(request)
        if not _apikey_ok(ctx, request):
            return _forbidden_key()
        refused = await run_in_threadpool(_srept_refused, ctx, request)
        if refused is not None:
            return refused
        body = await request.body()
        return await run_in_threadpool(_search, ctx, identity_of(request).actor, body)

    @router.post(RETRIEVE_PATH, response_class=Response, openapi_extra=_XML_BODY,
                 responses={**_XML_OUT, 401: {"description": "Invalid search parameters"},
                            402: {"description": "No result"}, **_REFUSED})
    async def retrievecertificate(request: Request) -> Response:
        """One certificate by serial (``CertificateDataRequest``), with its body as base64 DER."""
        ctx = ctx_of(request)
        if not _apikey_ok(ctx, request):
            return _forbidden_key()
        refused = await run_in_threadpool(_srept_refused, ctx, request)
        if refused is not None:
            return refused
        body = await request.body()
        return await run_in_threadpool(_retrieve, ctx, identity_of(request).actor, body)

    return router
