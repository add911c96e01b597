"""The JSON API (``/api/v1``): the same operations as the DCC services, for modern clients.

Organisation and Device CSRs (one, or a batch run as a job with progress and results), certificate
search and download, CRL/ARL download. Every request is authenticated by the listener (mutual TLS)
and every certificate request goes through the RA's subscriber path with the listener's route, so
a Device CSR on SPOTI is refused 403 by ``channel.device-via-gateway`` like everywhere else.
Reads follow ``channel.spoti-organisation-access`` (:mod:`smki.services.certificate_access`): on
SPOTI a Device Certificate, a search for them and a device batch's status or results are refused
403, and other searches leave Device Certificates out.
Handlers are plain functions: FastAPI runs them in its thread pool, off the event loop. One is a
coroutine: a batch's status with ``?wait=`` (long polling) waits on the event loop, holding no
thread, and reads the store in the thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from smki.domain import MAX_ROW_ID, CertKind, CertStatus, Usage
from smki.errors import NotFound, SmkiError
from smki.eui64 import eui64_hex, parse_eui64
from smki.interfaces.api.context import ctx_of, identity_of, requester_of
from smki.interfaces.api.list_download import list_response
from smki.services import batch_jobs, batch_watch
from smki.services import certificate_access as access
from smki.services.requests import request_organisation
from smki.store import CertificateQuery, CertificateRecord
from smki.store.batches import BatchJobRecord

PREFIX = "/api/v1"
MAX_CSR_TEXT = 16 * 1024
# Identifiers and cursors are database integers: bounding them here answers 422 for out-of-range
# input instead of letting the driver overflow (a 500 that schemathesis found).
DbId = Annotated[int, Path(ge=0, le=MAX_ROW_ID)]


# ---------------------------------------------------------------------------------------------
# Models


class ErrorRule(BaseModel):
    id: str
    reference: str
    reason: str


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable dotted code, e.g. ra.refused, csr.bad-signature, capacity.batch-csrs")
    message: str
    rules: list[ErrorRule] = Field(default_factory=list, description="Failing RA rules (or the capacity limit)")
    request_id: Annotated[str, Field(description="The id in the X-Request-ID header and the access log")] = ""


class ErrorOut(BaseModel):
    error: ErrorDetail


class CsrIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    csr: str = Field(min_length=1, max_length=MAX_CSR_TEXT,
                     description="PKCS#10: PEM (with or without armour) or base64 DER")


class CertificateOut(BaseModel):
    serial: str = Field(description="32 lower-case hex digits")
    kind: str
    usage: str | None
    status: str = Field(description="Repository status: P, I, N, E, R")
    device_id: str | None = Field(description="EUI-64, 16 hex digits (Device Certificates)")
    entity_id: str | None = Field(description="EUI-64, 16 hex digits (Organisation Certificates)")
    role: int | None
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    batch_id: str | None = None
    certificate_pem: str | None = None


class CertificatePage(BaseModel):
    certificates: list[CertificateOut]
    next_after: int | None = Field(description="Pass as ?after= for the next page; null on the last page")


def _printable(value: str) -> str:
    """An id or reference a batch's results carry back: in the DCC's XML (``CSRBatchResult``), which
    cannot carry a control character, a lone surrogate or U+FFFE/U+FFFF, and on Portal pages and in
    response files. Refused here, at submission: once stored, such an id made the batch's XML result
    a 200 cut off after its headers, for good."""
    if not value.isprintable():
        raise ValueError("must be printable text: no control, format or unassigned characters")
    return value


class BatchCsrIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=100)
    csr: str = Field(min_length=1, max_length=MAX_CSR_TEXT)

    _id_printable = field_validator("id")(_printable)


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: str = Field(default="", max_length=256, description="The client's own reference for the batch")
    csrs: list[BatchCsrIn] = Field(min_length=1, max_length=batch_jobs.MAX_CSRS)

    _reference_printable = field_validator("reference")(_printable)


class BatchOut(BaseModel):
    batch_id: int
    reference: str
    status: Literal["pending", "queued", "paused", "processing", "completed", "rejected"]
    total: int
    processed: int
    issued: int
    rejected: int
    percent: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime


class BatchResultOut(BaseModel):
    index: int
    id: str
    status: Literal["pending", "issued", "refused"]
    serial: str | None = None
    certificate_pem: str | None = None
    error: ErrorDetail | None = None


class BatchResultsPage(BaseModel):
    batch: BatchOut
    results: list[BatchResultOut]
    next_after: int | None


class WhoAmI(BaseModel):
    kind: str
    name: str
    party_id: str | None
    aro_id: str | None
    route: str
    credential_serial: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in {
        400: "Bad request", 401: "No or unknown credential", 403: "Refused by an RA rule or credential status",
        404: "Not found", 413: "Body over the size limit", 422: "Invalid input or CSR",
        429: "Capacity limit reached (Retry-After)",
    }.items()
}


# ---------------------------------------------------------------------------------------------
# Helpers


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def certificate_out(record: CertificateRecord, *, with_pem: bool = False) -> CertificateOut:
    return CertificateOut(
        serial=record.serial, kind=record.kind.value, usage=None if record.usage is None else record.usage.value,
        status=record.status.value, device_id=None if record.device_id is None else eui64_hex(record.device_id),
        entity_id=None if record.entity_id is None else eui64_hex(record.entity_id), role=record.role,
        not_before=record.not_before, not_after=record.not_after, issued_at=record.issued_at,
        batch_id=record.batch_id, certificate_pem=_pem(record.der) if with_pem else None,
    )


def _stored(request: Request, serial: str) -> CertificateRecord:
    record = ctx_of(request).home.store.certificate_by_serial(serial)
    if record is None:
        raise NotFound("certificate.not-found", f"no certificate with serial {serial[:40]}")
    return record


def _readable(request: Request, serial: str) -> CertificateRecord:
    """A stored certificate this listener may hand out (a Device Certificate on SPOTI is refused 403)."""
    ctx = ctx_of(request)
    return access.readable(ctx.home, ctx.route, identity_of(request).actor, _stored(request, serial))


def _device_batch_readable(request: Request, batch_id: int) -> None:
    """A device batch's status or results, which SPOTI never gives (403 ``ra.refused``)."""
    ctx = ctx_of(request)
    access.authorise_device_batch(ctx.home, ctx.route, identity_of(request).actor, batch_id)


def batch_out(job: BatchJobRecord) -> BatchOut:
    return BatchOut(
        batch_id=job.id, reference=job.client_ref, status=job.status.lower(),  # type: ignore[arg-type]
        total=job.total, processed=job.processed, issued=job.issued, rejected=job.rejected,
        percent=100 if job.total == 0 else int(100 * job.processed / job.total),
        created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at, expires_at=job.expires_at,
    )


#: The longest ``wait`` a batch status request may ask for, in seconds.
MAX_STATUS_WAIT = 30.0
#: While a status request waits, the job is read again at least this often: a job that another server
#: process or node runs changes without word to this one (``smki.services.batch_watch``).
STATUS_RECHECK_SECONDS = 0.25
#: At most this many status requests wait at once in one server process; beyond that a request is
#: answered at once, as without ``wait`` (each waiting request reads its job every recheck).
MAX_STATUS_WAITERS = 64
#: Statuses a batch never leaves: a wait ends at once.
_FINAL_STATUSES = frozenset({"COMPLETED", "REJECTED"})


async def _status_after(read: Callable[[], BatchJobRecord], wait: float,
                        stopping: Callable[[], bool]) -> BatchJobRecord:
    """``read()``'s job, read again each time this process changes a job's status and every
    ``STATUS_RECHECK_SECONDS``, until its status differs from the first read's, ``wait`` seconds
    have passed or the server is ``stopping``. The reads run in the thread pool; the wait holds no
    thread. No wait, or ``MAX_STATUS_WAITERS`` waiting already: one read, answered at once."""
    if wait <= 0 or batch_watch.waiting() >= MAX_STATUS_WAITERS:
        return await run_in_threadpool(read)
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def wake() -> None:  # called from the thread that changed a status
        loop.call_soon_threadsafe(woken.set)

    # Subscribed before the first read, so that a change between the read and the wait is not missed.
    unsubscribe = batch_watch.subscribe(wake)
    try:
        job = await run_in_threadpool(read)
        first = job.status
        deadline = loop.time() + wait
        while first not in _FINAL_STATUSES and job.status == first and not stopping():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):  # the recheck: word comes only from this process
                await asyncio.wait_for(woken.wait(), min(remaining, STATUS_RECHECK_SECONDS))
            woken.clear()
            job = await run_in_threadpool(read)
        return job
    finally:
        unsubscribe()


def _enum(kind: type[Any], value: str | None, what: str) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in kind)
        raise SmkiError("api.invalid", f"{what} must be one of {allowed}") from None


# ---------------------------------------------------------------------------------------------
# Routes


def create_json_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, responses=_ERRORS)

    @router.get("/whoami", response_model=WhoAmI, tags=["identity"])
    def whoami(request: Request) -> WhoAmI:
        """The identity the listener read from your client certificate, and the listener's route."""
        identity = identity_of(request)
        return WhoAmI(kind=identity.kind, name=identity.name, party_id=identity.party_id, aro_id=identity.aro_id,
                      route=ctx_of(request).route.value, credential_serial=identity.serial)

    @router.post("/organisation-certificates", response_model=CertificateOut, status_code=201,
                 tags=["certificates"])
    def organisation_csr(body: CsrIn, request: Request) -> CertificateOut:
        """Submit an Organisation CSR; the certificate is issued at once (both routes)."""
        ctx = ctx_of(request)
        requester = requester_of(request)
        from smki.services.capacity import consume

        consume(ctx.home, ctx.capacity, requester.party_id, "organisation-csrs", actor=requester.actor,
                interface="json")
        issued = request_organisation(ctx.home, requester, body.csr.encode())
        return certificate_out(_stored(request, issued.serial), with_pem=True)

    @router.post("/device-certificates", response_model=CertificateOut, status_code=201, tags=["certificates"])
    def device_csr(body: CsrIn, request: Request) -> CertificateOut:
        """Submit one Device CSR (Gateway only; refused 403 ``channel.device-via-gateway`` on SPOTI)."""
        ctx = ctx_of(request)
        with ctx.home.store.held_reads():  # the request's reads, the stored certificate's included
            outcome = batch_jobs.request_single_device(ctx.home, requester_of(request), body.csr.encode(),
                                                       capacity=ctx.capacity, limit_name="adhoc-service",
                                                       interface="json")
            assert outcome.serial is not None
            return certificate_out(_stored(request, outcome.serial), with_pem=True)

    @router.post("/device-batches", response_model=BatchOut, status_code=202, tags=["batches"])
    def submit_batch(body: BatchIn, request: Request, response: Response) -> BatchOut:
        """Submit up to 50,000 Device CSRs; they are issued in the background. Poll the batch for progress."""
        ctx = ctx_of(request)
        if len({c.id for c in body.csrs}) != len(body.csrs):
            raise SmkiError("api.invalid", "CSR ids must be unique within a batch")
        job = batch_jobs.submit_batch(ctx.home, requester_of(request), [(c.id, c.csr.encode()) for c in body.csrs],
                                      interface="json", client_ref=body.reference, capacity=ctx.capacity,
                                      head_start=ctx.head_start)
        ctx.wake_runner()
        response.headers["Location"] = f"{PREFIX}/device-batches/{job.id}"
        return batch_out(job)

    @router.get("/device-batches/{batch_id}", response_model=BatchOut, tags=["batches"])
    async def batch_status(batch_id: DbId, request: Request, wait: Annotated[float, Query(
        ge=0, le=MAX_STATUS_WAIT, description="Seconds to wait for the status to change before answering "
        "(long polling); 0 answers at once")] = 0) -> BatchOut:
        """A batch's status and progress (your Party's batches only). With ``wait``, the answer comes
        as soon as the status changes (queued → processing → completed), or after ``wait`` seconds
        with the status unchanged: a client waiting for its batch asks once rather than over and over.
        Gateway only: refused 403 ``channel.spoti-organisation-access`` on SPOTI."""
        ctx = ctx_of(request)
        party_id = requester_of(request).party_id
        await run_in_threadpool(_device_batch_readable, request, batch_id)
        job = await _status_after(lambda: batch_jobs.job_for_party(ctx.home, batch_id, party_id), wait,
                                  lambda: ctx.stopping)
        return batch_out(job)

    @router.get("/device-batches/{batch_id}/results", response_model=BatchResultsPage, tags=["batches"])
    def batch_results(request: Request, batch_id: DbId, after: Annotated[int, Query(ge=-1, le=MAX_ROW_ID)] = -1,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> BatchResultsPage:
        """Per-CSR results, a page at a time (items not yet processed show ``pending``). Gateway only:
        refused 403 ``channel.spoti-organisation-access`` on SPOTI."""
        ctx = ctx_of(request)
        _device_batch_readable(request, batch_id)
        job = batch_jobs.job_for_party(ctx.home, batch_id, requester_of(request).party_id)
        rules = batch_jobs.job_rules(job)
        items = batch_jobs.result_items(ctx.home, job, after=after, limit=limit)
        results = []
        for item, der in items:
            if item.outcome is None:
                results.append(BatchResultOut(index=item.idx, id=item.item_id, status="pending"))
            elif item.serial is not None:
                results.append(BatchResultOut(index=item.idx, id=item.item_id, status="issued", serial=item.serial,
                                              certificate_pem=None if der is None else _pem(der)))
            else:
                detail = ErrorDetail(code=item.error_code or "issuance.anomaly", message=item.error_text or "",
                                     rules=[ErrorRule(id=r, reference="", reason="") for r in rules]
                                     if item.error_code == "ra.refused" else [])
                results.append(BatchResultOut(index=item.idx, id=item.item_id, status="refused", error=detail))
        next_after = items[-1][0].idx if len(items) == limit else None
        return BatchResultsPage(batch=batch_out(job), results=results, next_after=next_after)

    @router.get("/certificates", response_model=CertificatePage, tags=["repository"], dependencies=_REPOSITORY)
    def search(
        request: Request,
        serial: str | None = None,
        device_id: Annotated[str | None, Query(description="EUI-64")] = None,
        entity_id: Annotated[str | None, Query(description="EUI-64")] = None,
        role: Annotated[int | None, Query(ge=0, le=255)] = None,
        usage: Annotated[Literal["DS", "KA"] | None, Query()] = None,
        status: Annotated[Literal["P", "I", "N", "E", "R"] | None, Query()] = None,
        kind: Annotated[Literal["root", "org-ca", "device-ca", "org", "device"] | None, Query()] = None,
        after: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> CertificatePage:
        """Search the Repository (criteria combine with AND); pages by ``after``. On SPOTI a search
        for Device Certificates (``kind=device``, ``device_id``) is refused 403
        ``channel.spoti-organisation-access`` and other searches leave them out."""
        ctx = ctx_of(request)
        store = ctx.home.store
        query = CertificateQuery(
            kind=_enum(CertKind, kind, "kind"), status=_enum(CertStatus, status, "status"),
            usage=_enum(Usage, usage, "usage"), device_id=None if device_id is None else parse_eui64(device_id),
            entity_id=None if entity_id is None else parse_eui64(entity_id), role=role, after_id=after, limit=limit,
        )
        if serial is not None:
            access.authorise_search(ctx.home, ctx.route, identity_of(request).actor, query)
            record = store.certificate_by_serial(serial)
            found = [record] if record is not None and access.visible(ctx.route, record) and _matches(
                record, device_id, entity_id, role, usage, status, kind) else []
            return CertificatePage(certificates=[certificate_out(r) for r in found], next_after=None)
        page = access.search(ctx.home, ctx.route, identity_of(request).actor, query)
        return CertificatePage(certificates=[certificate_out(r) for r in page],
                               next_after=page[-1].id if len(page) == limit else None)

    @router.get("/certificates/{serial}", response_model=CertificateOut, tags=["repository"],
                dependencies=_REPOSITORY)
    def certificate(serial: str, request: Request) -> CertificateOut:
        """One certificate's Repository record, with its PEM (a Device Certificate: Gateway only,
        refused 403 ``channel.spoti-organisation-access`` on SPOTI)."""
        return certificate_out(_readable(request, serial), with_pem=True)

    @router.get("/certificates/{serial}/download", tags=["repository"], dependencies=_REPOSITORY,
                responses={200: {"content": {"application/pkix-cert": {}, "application/x-pem-file": {}}}})
    def download(serial: str, request: Request,
                 format: Annotated[Literal["pem", "der"], Query()] = "pem") -> Response:
        """The certificate as PEM or DER (a Device Certificate: Gateway only, as for its record)."""
        record = _readable(request, serial)
        if format == "der":
            return Response(record.der, media_type="application/pkix-cert",
                            headers={"Content-Disposition": f'attachment; filename="{record.serial}.cer"'})
        return Response(_pem(record.der), media_type="application/x-pem-file",
                        headers={"Content-Disposition": f'attachment; filename="{record.serial}.pem"'})

    for kind in ("crl", "arl"):
        _add_list_routes(router, kind)
    return router


def repository_access(request: Request) -> None:
    """Rule ``repository.srept-passed`` before any Repository read (spec §1): the caller's Party has
    passed SREPT. RA staff read freely."""
    identity = identity_of(request)
    access.authorise_repository(ctx_of(request).home, identity.actor, identity.party_id, identity.party)


_REPOSITORY = [Depends(repository_access)]


def _matches(record: CertificateRecord, device_id: str | None, entity_id: str | None, role: int | None,
             usage: str | None, status: str | None, kind: str | None) -> bool:
    checks = [
        device_id is None or record.device_id == parse_eui64(device_id),
        entity_id is None or record.entity_id == parse_eui64(entity_id),
        role is None or record.role == role,
        usage is None or (record.usage is not None and record.usage.value == usage),
        status is None or record.status.value == status,
        kind is None or record.kind.value == kind,
    ]
    return all(checks)


def _add_list_routes(router: APIRouter, kind: str) -> None:
    upper = kind.upper()
    what = "CRL (Organisation CA)" if kind == "crl" else "ARL (Root: revoked CA certificates)"
    media: dict[int | str, dict[str, Any]] = {
        200: {"content": {"application/pkix-crl": {}, "application/x-pem-file": {}}},
        304: {"description": "Not Modified: the If-None-Match / If-Modified-Since list is still current"}}

    def latest(request: Request, format: Annotated[Literal["der", "pem"], Query()] = "der") -> Response:
        record = ctx_of(request).home.store.revocation_list(upper)
        if record is None:
            raise NotFound(f"{kind}.not-found", f"no {upper} has been published yet")
        return list_response(request, record, kind, format, newest=True)

    def numbered(number: DbId, request: Request,
                 format: Annotated[Literal["der", "pem"], Query()] = "der") -> Response:
        record = ctx_of(request).home.store.revocation_list(upper, number)
        if record is None:
            raise NotFound(f"{kind}.not-found", f"no {upper} number {number}")
        return list_response(request, record, kind, format, newest=False)

    router.add_api_route(f"/{kind}", latest, methods=["GET"], tags=["repository"], responses=media,
                         dependencies=_REPOSITORY,
                         summary=f"The latest {upper}", description=f"The newest published {what}.",
                         name=f"{kind}_latest")
    router.add_api_route(f"/{kind}/{{number}}", numbered, methods=["GET"], tags=["repository"], responses=media,
                         dependencies=_REPOSITORY,
                         summary=f"{upper} by number", description=f"A published {what} by its CRL number.",
                         name=f"{kind}_numbered")
