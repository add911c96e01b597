"""ARO pages: the Party's standing, applications and evidence, CSRs, certificates, revocation, batches.

What a page offers follows the listener's route (spec §3) as the RA rules decide it: on SPOTI no
page, link or download offers a Device Certificate or a device batch, and reaching one by its URL
(a batch page, its response ZIP, a Device Certificate's serial, a Device ID search) shows the
refusal page naming ``channel.spoti-organisation-access`` (403, audited). A Device CSR pasted into
the single-CSR form is refused by ``channel.device-via-gateway`` with the rule's SEC reference
shown, never silently dropped.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from smki.domain import CertificatePolicy, CertKind
from smki.errors import SmkiError
from smki.eui64 import parse_eui64
from smki.interfaces.api.errors import count_refusal
from smki.interfaces.portal.dcc_status import classify_batch_outcome
from smki.interfaces.portal.identity import PortalIdentity, identity_of
from smki.interfaces.portal.limits import MAX_CSR_UPLOAD, MAX_EVIDENCE_UPLOAD
from smki.interfaces.portal.web import (
    SECURITY_HEADERS,
    PortalContext,
    actor_of,
    describe,
    download,
    number_in_url,
    status_for,
)
from smki.services import applications as apps
from smki.services import certificate_access
from smki.services import requests as rq
from smki.services.context import Home
from smki.services.device_issuance import DeviceOutcome
from smki.services.portal_batches import (
    INTERFACE_NAMES,
    MAX_ZIP_BYTES,
    PORTAL_INTERFACE,
    WAITING,
    PortalBatch,
    portal_batch,
    read_portal_zip,
    request_name,
    response_zip,
    submit_portal_batch,
)
from smki.services.ra_state import load_application
from smki.store import CertificateQuery, CertificateRecord, normalise_serial

_SAFE_FILE = re.compile(r"[^A-Za-z0-9._-]+")


def aro_of(request: Request) -> PortalIdentity:
    identity = identity_of(request)
    if identity.kind != "aro":
        raise SmkiError("portal.forbidden", "these pages are for Authorised Responsible Officers")
    return identity


def requester(ctx: PortalContext, identity: PortalIdentity) -> rq.Requester:
    assert identity.party_id is not None and identity.aro_id is not None
    return rq.Requester(identity.party_id, identity.aro_id, ctx.route)


def _read_upload(value: Any, limit: int, what: str) -> bytes:
    """An uploaded file's bytes (b"" if none was chosen); read in the page's worker thread."""
    if not isinstance(value, UploadFile) or not value.filename:
        return b""
    data = value.file.read(limit + 1)
    if len(data) > limit:
        raise SmkiError("portal.upload-too-large", f"the {what} is over {limit // 1024} KiB")
    return data


def party_certificates(ctx: PortalContext, party_id: str, *, serial: str = "",
                       status: str = "") -> list[CertificateRecord]:
    """The Party's Organisation Certificates: those naming one of its Entity Identifiers."""
    home = ctx.home()
    party = home.store.registry.require_party(party_id)
    found: list[CertificateRecord] = []
    for entity in party.entities:
        found.extend(home.store.certificates_for_entity(entity))
    if serial:
        found = [c for c in found if serial.lower().lstrip("0") in c.serial.lstrip("0")]
    if status:
        found = [c for c in found if c.status.value == status]
    return sorted(found, key=lambda c: c.id, reverse=True)


def _owned(ctx: PortalContext, identity: PortalIdentity, serial: str) -> CertificateRecord:
    """A certificate this ARO may download: its Party's own, or a Device Certificate, which the
    Repository publishes to every Gateway user anyway — a Repository read, so first rule
    ``repository.srept-passed`` (as the Device ID search), then refused on SPOTI by
    ``channel.spoti-organisation-access``."""
    assert identity.party_id is not None
    home = ctx.home()
    try:
        record = home.store.certificate_by_serial(normalise_serial(serial))
    except SmkiError:
        record = None
    if record is not None:
        if record.kind is CertKind.DEVICE:
            actor = requester(ctx, identity).actor
            certificate_access.authorise_repository(home, actor, identity.party_id)
            return certificate_access.readable(home, ctx.route, actor, record)
        party = home.store.registry.require_party(identity.party_id)
        if record.kind is CertKind.ORGANISATION and record.entity_id in party.entities:
            return record
    raise SmkiError("certificate.not-found", f"no certificate {serial[:40]} for this Party")


def add_aro_routes(router: APIRouter, ctx: PortalContext) -> None:
    @router.get("/aro")
    def aro_home(request: Request) -> Response:
        identity = aro_of(request)
        assert identity.party_id is not None
        home = ctx.home()
        party = home.store.registry.require_party(identity.party_id)
        applications = home.store.registry.applications(party_id=identity.party_id)
        explained = {a.application_id: apps.decide_on(home, a) for a in applications
                     if a.status in ("open", "proposed")}
        aro = home.store.registry.aro(identity.aro_id or "")
        standings = [(p.value, party.subscriptions.get(p.value, "none")) for p in CertificatePolicy]
        return ctx.render(request, "aro_home.html", party=party, aro=aro, standings=standings,
                          applications=applications, explained=explained, policies=list(CertificatePolicy))

    def error_page(request: Request) -> Callable[[SmkiError], Response]:
        return lambda exc: ctx.error_page(request, exc)

    @router.post("/aro/apply")
    async def aro_apply(request: Request) -> Response:
        def work(_form_identity: PortalIdentity, form: Any) -> Response:
            identity = aro_of(request)
            assert identity.party_id is not None
            try:
                policy = CertificatePolicy(str(form.get("policy", "")))
            except ValueError:
                raise SmkiError("portal.bad-policy", "choose the Organisation or the Device policy") from None
            apps.apply(ctx.home(), identity.party_id, policy, aro=requester(ctx, identity))
            return ctx.redirect(request, "/aro", "applied")

        return await ctx.handle_form(request, work, error_page(request))

    @router.post("/aro/applications/{application_id}/evidence")
    async def aro_evidence(request: Request, application_id: str) -> Response:
        def work(_form_identity: PortalIdentity, form: Any) -> Response:
            identity = aro_of(request)
            home = ctx.home()
            record = load_application(home, application_id)  # any text: not a stored id is a 404
            if record.party_id != identity.party_id:
                raise SmkiError("ra.application-not-found", f"no application {record.application_id} for this Party")
            upload = form.get("document")
            data = _read_upload(upload, MAX_EVIDENCE_UPLOAD, "evidence file")
            description = str(form.get("description", "")).strip()
            if not data:
                raise SmkiError("portal.evidence-missing", "choose a file to upload as evidence")
            digest = hashlib.sha256(data).hexdigest()
            assert isinstance(upload, UploadFile)
            name = _SAFE_FILE.sub("_", upload.filename or "evidence")[-80:]
            folder = ctx.portal_dir() / "evidence" / str(record.application_id)
            folder.mkdir(parents=True, exist_ok=True)
            # Kept under its name only once the service has recorded it: a refused upload (an
            # application already decided, say) leaves nothing behind to fill the disk.
            partial = folder / f".{digest[:16]}-{uuid.uuid4().hex[:8]}.partial"
            partial.write_bytes(data)
            try:
                reference = f"{name} sha256:{digest}" + (f" — {description[:200]}" if description else "")
                apps.add_evidence(home, record.application_id, apps.DOCUMENT, reference,
                                  aro=requester(ctx, identity))
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            partial.replace(folder / f"{digest[:16]}-{name}")
            return ctx.redirect(request, "/aro", "evidence")

        return await ctx.handle_form(request, work, error_page(request))

    @router.get("/aro/csr")
    def csr_form(request: Request) -> Response:
        aro_of(request)
        return ctx.render(request, "csr.html", pasted="")

    @router.post("/aro/csr")
    async def csr_submit(request: Request) -> Response:
        kept = {"pasted": ""}

        def work(_form_identity: PortalIdentity, form: Any) -> Response:
            identity = aro_of(request)
            kept["pasted"] = pasted = str(form.get("csr_text", ""))[:MAX_CSR_UPLOAD]
            data = _read_upload(form.get("csr_file"), MAX_CSR_UPLOAD, "CSR file") or pasted.encode()
            if not data.strip():
                raise SmkiError("portal.csr-missing", "upload a CSR file or paste the CSR text")
            return _issue_single(request, ctx, identity, data)

        def refused(exc: SmkiError) -> Response:
            count_refusal(exc)  # smki_csrs_total, as the JSON API and the DCC services count theirs
            return ctx.error_page(request, exc, "csr.html", pasted=kept["pasted"])

        return await ctx.handle_form(request, work, refused)

    @router.get("/aro/certificates")
    def certificates(request: Request) -> Response:
        identity = aro_of(request)
        assert identity.party_id is not None
        serial = request.query_params.get("serial", "").strip()[:64]
        status = request.query_params.get("status", "").strip()[:1]
        device = request.query_params.get("device", "").strip()[:40]
        found = party_certificates(ctx, identity.party_id, serial=serial, status=status)
        devices: list[CertificateRecord] = []
        error = None
        status_code = 200
        if device:
            try:  # any Device's certificates: a Repository search (rules repository.srept-passed, then
                # channel.spoti-organisation-access)
                certificate_access.authorise_repository(ctx.home(), actor_of(request), identity.party_id)
                devices = certificate_access.search(
                    ctx.home(), ctx.route, actor_of(request),
                    CertificateQuery(kind=CertKind.DEVICE, device_id=parse_eui64(device), limit=200))
            except SmkiError as exc:
                error = describe(exc)
                status_code = status_for(exc) if exc.code == "ra.refused" else 200  # a mistyped ID is no refusal
        return ctx.render(request, "certificates.html", status_code, certificates=found, devices=devices,
                          error=error, query={"serial": serial, "status": status, "device": device})

    @router.get("/aro/certificates/{serial}.{fmt}")
    def certificate_download(request: Request, serial: str, fmt: str) -> Response:
        identity = aro_of(request)
        try:
            record = _owned(ctx, identity, serial)
        except SmkiError as exc:
            return ctx.error_page(request, exc)
        if fmt == "der":
            return download(record.der, f"{record.serial}.der", "application/pkix-cert")
        if fmt == "pem":
            pem = x509.load_der_x509_certificate(record.der).public_bytes(Encoding.PEM)
            return download(pem, f"{record.serial}.pem", "application/x-pem-file")
        return ctx.error_page(request, SmkiError("portal.bad-format", "download as .pem or .der"))

    @router.get("/aro/certificates/{serial}")
    def certificate_page(request: Request, serial: str) -> Response:
        identity = aro_of(request)
        record = _owned(ctx, identity, serial)
        pem = x509.load_der_x509_certificate(record.der).public_bytes(Encoding.PEM).decode()
        return ctx.render(request, "issued.html", serial=record.serial, record=record, pem=pem)

    @router.post("/aro/certificates/{serial}/revoke")
    async def certificate_revoke(request: Request, serial: str) -> Response:
        from smki.services.revocation import parse_reason, revoke_organisation_certificate

        def work(_form_identity: PortalIdentity, form: Any) -> Response:
            identity = aro_of(request)
            record = _owned(ctx, identity, serial)
            if record.kind is not CertKind.ORGANISATION:
                # the code every other interface refuses with (README)
                raise SmkiError("revocation.device-certificate",
                                "Device Certificates are never put on a CRL: their Repository status changes "
                                "instead, which the RA sets")
            if form.get("confirm") != "yes":
                raise SmkiError("portal.confirm", "tick the box to confirm the revocation")
            reason = parse_reason(str(form.get("reason", "unspecified")))
            revoke_organisation_certificate(ctx.home(), record.serial, reason, actor=f"aro:{identity.aro_id}",
                                            requesting_party=identity.party_id,
                                            details={"party": identity.party_id, "route": ctx.route.value})
            return ctx.redirect(request, "/aro/certificates", "revoked")

        return await ctx.handle_form(request, work, error_page(request))

    _add_batch_routes(router, ctx)


def _consume(home: Home, identity: PortalIdentity, limit: str, amount: int) -> None:
    """The Portal's share of the per-Party capacity limits (spec §3.3), shared with the API."""
    from smki.services.capacity import capacity_settings, consume

    assert identity.party_id is not None
    consume(home, capacity_settings(home), identity.party_id, limit, amount,
            actor=f"aro:{identity.aro_id}@{identity.party_id}", interface="portal")


def _issue_single(request: Request, ctx: PortalContext, identity: PortalIdentity, data: bytes) -> Response:
    from smki.ca.csr import decode_csr_text

    home = ctx.home()
    who = requester(ctx, identity)
    der = decode_csr_text(data)
    policy = rq.csr_policy(der)
    if policy is CertificatePolicy.ORGANISATION:
        _consume(home, identity, "organisation-csrs", 1)
        issued = rq.request_organisation(home, who, der)
        serial = issued.serial
    else:
        rq.authorise_device_requests(home, who)  # refuses on SPOTI before anything else is looked at
        _consume(home, identity, "portal-adhoc", 1)  # SEC App. N: ad hoc Portal Device CSRs per Party per day
        outcome = rq.request_device(home, who, der, item_id="portal",
                                    batch_ref=f"portal-{identity.party_id}-{uuid.uuid4().hex[:12]}")
        if not outcome.ok:
            raise SmkiError(outcome.error_code or "issuance.anomaly", outcome.error_message or "not issued")
        assert outcome.serial is not None and outcome.der is not None
        serial = outcome.serial
    # Post/Redirect/Get: the certificate's own page, which a refresh cannot submit twice.
    return ctx.redirect(request, f"/aro/certificates/{serial}", "issued")


def _all_batches(ctx: PortalContext, party_id: str) -> list[dict[str, Any]]:
    """The Party's batches however they came: uploaded here (Portal), or by its systems over the JSON
    API or the DCC XML services — all stored batches with one lifecycle — newest first."""
    from smki.services.batch_jobs import jobs_for_party

    return [
        {"name": job.client_ref if job.interface == PORTAL_INTERFACE
            else f"{job.id}" + (f" ({job.client_ref})" if job.client_ref else ""),
         "link": f"/aro/batches/{job.id}",  # every batch has its page: progress, failed files, response ZIP
         "interface": INTERFACE_NAMES.get(job.interface, job.interface), "status": job.status.upper(),
         "done": job.processed, "total": job.total, "issued": job.issued, "failed": job.rejected,
         "created": job.created_at, "batch_id": job.id, "reason": job.error_text if job.status == "REJECTED" else None}
        for job in jobs_for_party(ctx.home(), party_id)]


def _job_id(ref: str) -> int:
    number = number_in_url(ref)
    if number is None:
        raise SmkiError("batch.not-found", "no such batch for this Party")
    return number


def _add_batch_routes(router: APIRouter, ctx: PortalContext) -> None:
    """The device batch pages, on both listeners: each first asks the RA's access rule, so on SPOTI a
    batch URL shows the refusal page naming ``channel.spoti-organisation-access``, not a 404."""

    def device_batches(request: Request, what: str = "the device batch pages") -> PortalIdentity:
        identity = aro_of(request)
        ctx.authorise_device_read(request, what)
        return identity

    @router.get("/aro/batches")
    def batches(request: Request) -> Response:
        identity = device_batches(request)
        assert identity.party_id is not None
        return ctx.render(request, "batches.html", batches=_all_batches(ctx, identity.party_id or ""))

    @router.post("/aro/batches")
    async def batch_upload(request: Request) -> Response:
        from smki.services.capacity import capacity_settings

        # On SPOTI the RA's access rule refuses before the upload is read (the route's refusal page).
        await run_in_threadpool(device_batches, request)

        def work(_form_identity: PortalIdentity, form: Any) -> Response:
            # Unpacking up to 50,000 files and storing them takes seconds: in the worker thread
            # (handle_form), as the JSON and XML services do, not on the event loop.
            identity = aro_of(request)
            upload = form.get("batch")
            data = _read_upload(upload, MAX_ZIP_BYTES, "ZIP file")
            if not data:
                raise SmkiError("portal.batch-missing", "choose a ZIP file of .csr files")
            assert isinstance(upload, UploadFile)
            items = read_portal_zip(data)
            home = ctx.home()
            # the RA rules, capacity (the web service's daily batch volume) and the batch lifecycle
            job = submit_portal_batch(home, requester(ctx, identity), items, request_name(upload.filename),
                                      capacity_settings(home))
            ctx.wake()
            return ctx.redirect(request, f"/aro/batches/{job.id}")

        def refused(exc: SmkiError) -> Response:
            identity_ok = getattr(request.state, "identity", None)
            mine = _all_batches(ctx, identity_ok.party_id or "") if isinstance(identity_ok, PortalIdentity) \
                and identity_ok.party_id else []
            return ctx.error_page(request, exc, "batches.html", batches=mine)

        return await ctx.handle_form(request, work, refused)

    def mine(request: Request, ref: str) -> PortalBatch:
        identity = device_batches(request, f"device batch {ref[:40]}")
        return portal_batch(ctx.home(), _job_id(ref), identity.party_id or "", _classify)

    @router.get("/aro/batches/{ref}")
    def batch_page(request: Request, ref: str) -> Response:
        try:
            batch = mine(request, ref)
        except SmkiError as exc:
            return ctx.error_page(request, exc)
        return ctx.render(request, "batch.html", batch=batch, waiting=WAITING)

    @router.get("/aro/batches/{ref}/status")
    def batch_status(request: Request, ref: str) -> Response:
        try:
            batch = mine(request, ref)
        except SmkiError as exc:
            return JSONResponse({"error": exc.code, "message": exc.message},
                                status_code=403 if exc.code == "ra.refused" else 404, headers=SECURITY_HEADERS)
        return JSONResponse(batch.as_json(), headers=SECURITY_HEADERS)

    @router.get("/aro/batches/{ref}/response.zip")
    def batch_response(request: Request, ref: str) -> Response:
        try:
            batch = mine(request, ref)
            path = response_zip(ctx.home(), batch, _classify, ctx.portal_dir() / "batches")
        except SmkiError as exc:
            return ctx.error_page(request, exc)
        # batch.name is a JSON/XML batch's own reference as its system sent it (any text): made safe
        return download(path.read_bytes(), f"{request_name(batch.name)}-result.zip", "application/zip")


def _classify(outcome: DeviceOutcome) -> tuple[str, str]:
    return classify_batch_outcome(outcome)
