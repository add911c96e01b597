"""RA staff pages: the applications queue, Parties and AROs, reinstatements, revocations, the audit log,
CRL/ARL status.

Every change goes through a service that checks the staff member's role (``smki.services.staff``)
and, for decisions, dual control (``ra.dual-control``): the page only offers the buttons, the
service decides whether the person may press them. Auditors see every page and can change nothing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from smki.domain import CertStatus
from smki.errors import NotFound, SmkiError
from smki.interfaces.portal.identity import PortalIdentity, identity_of
from smki.interfaces.portal.web import PortalContext, asked_from_this_site, number_in_url
from smki.ra import Decision
from smki.ra.state import INSTALLATION_NEED_EVIDENCE
from smki.services import applications as apps
from smki.services import registry as reg
from smki.services import reinstatement as rs
from smki.services import revocation as rv
from smki.services.batch_lifecycle import batch_policy, batches_waiting
from smki.services.context import Home
from smki.services.ra_state import today
from smki.store import AuditQuery, CertificateQuery

AUDIT_ROWS = 50


def staff_of(request: Request) -> PortalIdentity:
    identity = identity_of(request)
    if identity.kind != "staff":
        raise SmkiError("portal.forbidden", "these pages are for RA staff")
    return identity


def _staff_id(identity: PortalIdentity) -> str:
    assert identity.staff_id is not None
    return identity.staff_id


def add_staff_routes(router: APIRouter, ctx: PortalContext) -> None:
    def queue(request: Request, status_code: int = 200, **extra: Any) -> Response:
        identity = staff_of(request)
        home = ctx.home()
        staff = home.store.registry.staff(_staff_id(identity))
        pending = [a for a in home.store.registry.applications() if a.status in ("open", "proposed")]
        decided = [a for a in home.store.registry.applications() if a.status not in ("open", "proposed")][-20:]
        explained: dict[int, Decision] = {a.application_id: apps.decide_on(home, a) for a in pending}
        stored: dict[int, Decision] = {}
        for a in decided:
            final = apps.stored_decisions(a)[1]
            if final is not None:
                stored[a.application_id] = final
        return ctx.render(request, "staff_applications.html", status_code, staff=staff, pending=pending,
                          decided=decided, explained=explained, stored=stored, can=_can(home, identity),
                          evidence_kinds=[INSTALLATION_NEED_EVIDENCE, "registered-user", "other"], **extra)

    def action(path: str, done: str, page: Callable[..., Response]) -> Callable[
            [Callable[[PortalIdentity, Any, dict[str, str]], None]], Callable[..., Awaitable[Response]]]:
        """Register a staff POST: check the form token, run it, then redirect or re-show with the error."""
        def register(run: Callable[[PortalIdentity, Any, dict[str, str]], None]) -> Callable[..., Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                kept: dict[str, str] = {}

                def work(_form_identity: PortalIdentity, form: Any) -> Response:  # in a worker thread
                    identity = staff_of(request)
                    # whole: a service refuses what is too long (ra.bad-text); cut here, it was stored cut
                    kept.update({k: str(v) for k, v in form.items() if isinstance(v, str) and k != "csrf"})
                    try:
                        run(identity, request.path_params, kept)
                    except ValueError:
                        raise SmkiError("portal.bad-id", "that is not a valid number or id") from None
                    return ctx.redirect(request, path, done)

                return await ctx.handle_form(request, work, lambda exc: page(request, 400, error_exc=exc, kept=kept))
            router.add_api_route(_route_path(run), endpoint, methods=["POST"], name=run.__name__)
            return endpoint
        return register

    def show(template_page: Callable[..., Response]) -> Callable[..., Response]:
        """Wrap a page builder so a refusal passed in as ``error_exc`` is shown on that page."""
        def page(request: Request, status_code: int = 200, error_exc: SmkiError | None = None,
                 kept: dict[str, str] | None = None) -> Response:
            if error_exc is None:
                return template_page(request, status_code, kept=kept or {})
            from smki.interfaces.portal.web import describe, status_for
            return template_page(request, status_for(error_exc), error=describe(error_exc), kept=kept or {})
        return page

    def page_at(path: str, build: Callable[..., Response]) -> Callable[..., Response]:
        """Serve ``build`` at GET ``path``; returns it wrapped by :func:`show`, for its actions' refusals."""
        page = show(build)

        def get(request: Request) -> Response:
            return page(request)

        router.add_api_route(path, get, methods=["GET"], name=build.__name__)
        return page

    queue_page = page_at("/staff/applications", queue)

    @router.get("/staff")
    def staff_home(request: Request) -> Response:
        identity = staff_of(request)
        home = ctx.home()
        pending = home.store.registry.dual_control_items("pending")  # each kind is counted where it is decided
        return ctx.render(
            request, "staff_home.html", staff=home.store.registry.staff(_staff_id(identity)),
            open_count=len([a for a in home.store.registry.applications() if a.status in ("open", "proposed")]),
            revocation_count=len([d for d in pending if d.action == rv.CA_REVOKE_ACTION]),
            reinstatement_count=len([d for d in pending if d.action in rs.ACTIONS]),
            batch_count=len(batches_waiting(home)),
            capacity=_capacity_rows(home),
        )

    @action("/staff/applications", "evidence", queue_page)
    def staff_evidence(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        apps.add_evidence(ctx.home(), params["application_id"], form.get("kind", ""), form.get("reference", ""),
                          staff_id=_staff_id(identity))

    @action("/staff/applications", "proposed", queue_page)
    def staff_propose(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        apps.propose(ctx.home(), params["application_id"], staff_id=_staff_id(identity))

    @action("/staff/applications", "approved", queue_page)
    def staff_approve(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        apps.approve(ctx.home(), params["application_id"], staff_id=_staff_id(identity))

    @action("/staff/applications", "refused", queue_page)
    def staff_refuse(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        apps.refuse(ctx.home(), params["application_id"], form.get("reason", ""), staff_id=_staff_id(identity))

    def parties(request: Request, status_code: int = 200, **extra: Any) -> Response:
        identity = staff_of(request)
        home = ctx.home()
        proposed = {(r.kind, r.subject, r.policy): r.item for r in rs.reinstatements(home)}
        return ctx.render(request, "staff_parties.html", status_code, parties=home.store.registry.parties(),
                          aros=home.store.registry.aros(), proposed=proposed, can=_can(home, identity), **extra)

    parties_page = page_at("/staff/parties", parties)

    @action("/staff/parties", "nominated", parties_page)
    def staff_nominate(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        reg.nominate_aro(ctx.home(), form.get("aro_id", "").strip(), form.get("party_id", ""), form.get("name", ""),
                         form.get("nominated_by", ""), staff_id=_staff_id(identity))

    @action("/staff/parties", "verified", parties_page)
    def staff_verify(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        reg.verify_aro(ctx.home(), params["aro_id"], form.get("check", ""), staff_id=_staff_id(identity))

    @action("/staff/parties", "screened", parties_page)
    def staff_screen(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        try:
            screened_on = date.fromisoformat(form.get("screened_on", "") or today().isoformat())
        except ValueError:
            raise SmkiError("portal.bad-date", "give the screening date as YYYY-MM-DD") from None
        reg.screen_aro(ctx.home(), params["aro_id"], screened_on, form.get("standard", ""),
                       staff_id=_staff_id(identity))

    @action("/staff/parties", "suspended", parties_page)
    def staff_suspend(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        reg.set_aro_status(ctx.home(), params["aro_id"], "suspended", staff_id=_staff_id(identity),
                           reason=form.get("reason") or None)

    @action("/staff/parties", "subscriber-suspended", parties_page)
    def staff_suspend_subscriber(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        reg.set_subscriber_standing(ctx.home(), params["party_id"], form.get("policy", ""), "suspended",
                                    staff_id=_staff_id(identity), reason=form.get("reason") or None)

    @action("/staff/parties", "subscriber-withdrawn", parties_page)
    def staff_withdraw_subscriber(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        _confirmed(form, "tick the box to confirm the withdrawal: it cannot be reinstated, only applied for anew")
        reg.set_subscriber_standing(ctx.home(), params["party_id"], form.get("policy", ""), "withdrawn",
                                    staff_id=_staff_id(identity), reason=form.get("reason") or None)

    @action("/staff/parties", "reinstatement-proposed", parties_page)
    def staff_propose_subscriber_reinstatement(identity: PortalIdentity, params: dict[str, str],
                                               form: dict[str, str]) -> None:
        rs.propose_subscriber_reinstatement(ctx.home(), params["party_id"], form.get("policy", ""),
                                            staff_id=_staff_id(identity), reason=form.get("reason") or None)

    @action("/staff/parties", "reinstatement-proposed", parties_page)
    def staff_propose_aro_reinstatement(identity: PortalIdentity, params: dict[str, str],
                                        form: dict[str, str]) -> None:
        rs.propose_aro_reinstatement(ctx.home(), params["aro_id"], staff_id=_staff_id(identity),
                                     reason=form.get("reason") or None)

    def reinstatements(request: Request, status_code: int = 200, **extra: Any) -> Response:
        """Reinstatement proposals (suspended subscribers and AROs) awaiting an RA approver, and the last decided."""
        identity = staff_of(request)
        home = ctx.home()
        every = rs.reinstatements(home, pending_only=False)
        return ctx.render(request, "staff_reinstatements.html", status_code,
                          pending=[r for r in every if r.status == "pending"],
                          decided=[r for r in every if r.status != "pending"][-20:],
                          me=_staff_id(identity), can=_can(home, identity), **extra)

    reinstatements_page = page_at("/staff/reinstatements", reinstatements)

    def decide(service: Callable[..., object], what: str, identity: PortalIdentity, params: dict[str, str],
               form: dict[str, str], *, approve: bool) -> None:
        """Approve or refuse the dual-control proposal in the URL (``{item}``) with ``service``, which
        checks the role and ``ra.dual-control``; a refusal carries the approver's optional reason."""
        refusal = {} if approve else {"reason": form.get("reason") or None}
        service(ctx.home(), _item_id(params["item"], what), staff_id=_staff_id(identity), approve=approve, **refusal)

    @action("/staff/reinstatements", "reinstated", reinstatements_page)
    def staff_reinstatement_approve(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        decide(rs.decide_reinstatement, "reinstatement", identity, params, form, approve=True)

    @action("/staff/reinstatements", "reinstatement-refused", reinstatements_page)
    def staff_reinstatement_refuse(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        decide(rs.decide_reinstatement, "reinstatement", identity, params, form, approve=False)

    def revocations(request: Request, status_code: int = 200, **extra: Any) -> Response:
        identity = staff_of(request)
        home = ctx.home()
        revoked = home.store.find_certificates(CertificateQuery(status=CertStatus.REVOKED, limit=200))
        lists = {kind: home.store.revocation_list(kind) for kind in ("CRL", "ARL")}
        every = rv.ca_revocations(home, pending_only=False)
        pending = [r for r in every if r.status == "pending"]
        return ctx.render(request, "staff_revocations.html", status_code, revoked=revoked, lists=lists,
                          ca_certificates=rv.ca_certificates(home), pending=pending,
                          proposed={r.serial: r.item for r in pending},
                          decided=[r for r in every if r.status != "pending"][-20:],
                          reasons=list(rv.REASON_CODES), me=_staff_id(identity),
                          can_sign=home.secret is not None, can=_can(home, identity), **extra)

    revocations_page = page_at("/staff/revocations", revocations)

    @action("/staff/revocations", "published", revocations_page)
    def staff_publish(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        from smki.services.staff import require_staff

        kind = params["kind"].upper()
        require_staff(ctx.home(), identity.staff_id, "ra-operator", subject=kind, action="publish")
        rv.publish(ctx.home(), kind, actor=f"staff:{identity.staff_id}")

    @action("/staff/revocations", "ca-revocation-proposed", revocations_page)
    def staff_propose_ca_revocation(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        rv.propose_ca_revocation(ctx.home(), params["serial"], rv.parse_reason(form.get("reason", "")),
                                 staff_id=_staff_id(identity))

    @action("/staff/revocations", "ca-revoked", revocations_page)
    def staff_ca_revocation_approve(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        _confirmed(form, "tick the box to confirm revoking the CA certificate: it cannot be undone")
        decide(rv.decide_ca_revocation, "CA revocation", identity, params, form, approve=True)

    @action("/staff/revocations", "ca-revocation-refused", revocations_page)
    def staff_ca_revocation_refuse(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        decide(rv.decide_ca_revocation, "CA revocation", identity, params, form, approve=False)

    @action("/staff/revocations", "revoked", revocations_page)
    def staff_revoke_certificate(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        _confirmed(form, "tick the box to confirm the revocation")
        rv.revoke_as_operator(ctx.home(), form.get("serial", "").strip(), rv.parse_reason(form.get("reason", "")),
                              staff_id=_staff_id(identity))

    def devices(request: Request, status_code: int = 200, **extra: Any) -> Response:
        """The device register, one Device at a time: its state in force today and every dated change."""
        from smki.services.device_register import view_device

        identity = staff_of(request)
        home = ctx.home()
        wanted = (request.query_params.get("device") or "").strip()[:40]
        view = None
        if wanted:
            try:
                view = view_device(home, wanted)
            except SmkiError as exc:
                from smki.interfaces.portal.web import describe, status_for

                status_code = 404 if isinstance(exc, NotFound) else status_for(exc)
                extra = {**extra, "error": describe(exc)}
        return ctx.render(request, "staff_devices.html", status_code, wanted=wanted, view=view,
                          can=_can(home, identity), **extra)

    @router.get("/staff/devices")
    def devices_get(request: Request) -> Response:
        return devices(request)

    def batch_queue(request: Request, status_code: int = 200, **extra: Any) -> Response:
        """Device CSR batches awaiting the RA (PENDING), oldest first, with their size and age."""
        identity = staff_of(request)
        home = ctx.home()
        policy = batch_policy(home.settings)
        return ctx.render(request, "staff_batches.html", status_code, waiting=batches_waiting(home),
                          now=datetime.now(UTC), policy=policy, can=_can(home, identity), **extra)

    batches_page = page_at("/staff/batches", batch_queue)

    @action("/staff/batches", "batch-approved", batches_page)
    def staff_batch_approve(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        from smki.services.batch_lifecycle import approve_batch

        approve_batch(ctx.home(), _batch_id(params["batch_id"]), staff_id=_staff_id(identity))
        ctx.wake()  # this process's runner may start it at once

    @action("/staff/batches", "batch-rejected", batches_page)
    def staff_batch_reject(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        from smki.services.batch_lifecycle import reject_batch

        reject_batch(ctx.home(), _batch_id(params["batch_id"]), form.get("reason", ""), staff_id=_staff_id(identity))

    @router.get("/staff/audit")
    def audit(request: Request) -> Response:
        identity = staff_of(request)
        home = ctx.home()
        try:
            query = _audit_query(request)
        except SmkiError as exc:
            from smki.interfaces.portal.web import describe, status_for

            return ctx.render(request, "staff_audit.html", status_for(exc), error=describe(exc), rows=[],
                              report=None, filters=dict(request.query_params), older=None, can=_can(home, identity))
        report = None
        if request.query_params.get("verify"):
            if not asked_from_this_site(request):
                from smki.interfaces.portal.web import describe

                return ctx.render(request, "staff_audit.html", 403, error=describe(SmkiError(
                    "portal.cross-site", "the hash chain is verified only from this page's own button, not from "
                    "a link on another site")), rows=[], report=None, filters={}, older=None,
                    can=_can(home, identity))
            report = home.store.verify_audit()
        rows = home.store.audit_search(query)
        older = rows[-1].seq if len(rows) == query.limit else None
        filters = {k: v for k, v in request.query_params.items() if k in _AUDIT_FILTERS and v}
        return ctx.render(request, "staff_audit.html", rows=rows, report=report, filters=filters, older=older,
                          paged=query.before_seq is not None, can=_can(home, identity))

    @router.get("/staff/audit.csv")
    def audit_csv(request: Request) -> Response:
        staff_of(request)
        home = ctx.home()
        query = replace(_audit_query(request), before_seq=None, limit=AUDIT_CSV_PAGE)

        def lines() -> Iterator[str]:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\r\n")
            writer.writerow(["seq", "at", "actor", "action", "subject", "details", "prev_hash", "hash"])
            page = replace(query)
            while True:
                rows = home.store.audit_search(page)
                for r in rows:
                    writer.writerow([r.seq, r.at, spreadsheet_text(r.actor), spreadsheet_text(r.action),
                                     spreadsheet_text(r.subject), spreadsheet_text(r.details), r.prev_hash.hex(),
                                     r.hash.hex()])
                yield out.getvalue()
                out.seek(0)
                out.truncate()
                if len(rows) < page.limit:
                    return
                page = replace(page, before_seq=rows[-1].seq)

        from fastapi.responses import StreamingResponse

        from smki.interfaces.portal.web import SECURITY_HEADERS

        return StreamingResponse(lines(), media_type="text/csv; charset=utf-8", headers={
            **SECURITY_HEADERS, "Content-Disposition": 'attachment; filename="smki-audit.csv"'})

    @router.get("/staff/audit/{seq}")
    def audit_detail(request: Request, seq: str) -> Response:
        from smki.audit import GENESIS_HASH, row_hash

        identity = staff_of(request)
        home = ctx.home()
        number = number_in_url(seq)
        if number is None:
            raise SmkiError("portal.bad-id", "an audit record is named by its number")
        record = home.store.audit_record(number)
        if record is None:
            raise SmkiError("audit.not-found", f"there is no audit record {seq}")
        previous = home.store.audit_record(record.seq - 1) if record.seq > 1 else None
        following = home.store.audit_record(record.seq + 1)
        expected_prev = previous.hash if previous is not None else GENESIS_HASH
        computed = row_hash(record.prev_hash, record.seq, record.at, record.actor, record.action, record.subject,
                            record.details)
        return ctx.render(request, "staff_audit_record.html", record=record, previous=previous,
                          following=following, links_ok=record.prev_hash == expected_prev,
                          hash_ok=computed == record.hash,
                          next_ok=following is None or following.prev_hash == record.hash,
                          details=json.dumps(record.details_dict, indent=2, sort_keys=True, ensure_ascii=False),
                          can=_can(home, identity))


def _batch_id(text: str) -> int:
    number = number_in_url(text)
    if number is None:
        raise NotFound("batch.not-found", f"no batch {text[:40]}")
    return number


def _item_id(text: str, what: str) -> int:
    """A dual-control proposal's number from its URL (not a number: the service's not-found)."""
    number = number_in_url(text)
    if number is None:
        raise NotFound("ra.not-found", f"no {what} proposal {text[:40]}")
    return number


def _confirmed(form: dict[str, str], message: str) -> None:
    """An irreversible action needs its confirmation box ticked (as the ARO's revocation does)."""
    if form.get("confirm") != "yes":
        raise SmkiError("portal.confirm", message)


AUDIT_CSV_PAGE = 5_000
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value: str) -> str:
    """``value`` for a CSV cell a spreadsheet will not run: text starting ``=``, ``+``, ``-``, ``@``,
    a tab or a CR gets a leading ``'`` (OWASP's CSV injection advice). Audit subjects can hold what
    a user typed (an id from a URL that was refused, say), and auditors open the export in a
    spreadsheet. Drop that ``'`` to recompute a record's hash from the export."""
    return "'" + value if value.startswith(_FORMULA_START) else value
_AUDIT_FILTERS = ("actor", "action", "subject", "since", "until")


def _audit_query(request: Request) -> AuditQuery:
    """The audit page's filters from the query string (bad dates and cursors are refused, not ignored)."""
    params = request.query_params

    def day(name: str) -> date | None:
        value = (params.get(name) or "").strip()
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise SmkiError("portal.bad-date", f"give '{name}' as YYYY-MM-DD") from None

    before = (params.get("before") or "").strip()
    before_seq = number_in_url(before) if before else None
    if before and before_seq is None:
        raise SmkiError("portal.bad-id", "that is not a valid page cursor")
    return AuditQuery(actor=(params.get("actor") or "").strip()[:200] or None,
                      action=(params.get("action") or "").strip()[:200] or None,
                      subject=(params.get("subject") or "").strip()[:200] or None,
                      since=day("since"), until=day("until"),
                      before_seq=before_seq, limit=AUDIT_ROWS)


def _can(home: Home, identity: PortalIdentity) -> frozenset[str]:
    """What the staff member's roles permit (``StaffAction`` values): the pages offer only those actions.

    The services still check every action (``ra.staff-role``); this only decides which buttons to show.
    """
    from smki.ra.rules import STAFF_PERMISSIONS
    from smki.ra.state import StaffRole

    staff = home.store.registry.staff(_staff_id(identity))
    if staff is None or not staff.active:
        return frozenset()
    allowed: set[str] = set()
    for role in staff.roles:
        try:
            allowed |= {action.value for action in STAFF_PERMISSIONS[StaffRole(role)]}
        except (ValueError, KeyError):
            continue
    # Actions reserved to one role by design (rule ``ra.staff-holds-role``, ``smki.services.revocation``).
    if StaffRole.RA_OPERATOR.value in staff.roles:
        allowed |= {"publish", "revoke-certificate", "propose-ca-revocation"}
    if StaffRole.RA_APPROVER.value in staff.roles:
        allowed.add("decide-ca-revocation")
    return frozenset(allowed)


_PATHS = {
    "staff_evidence": "/staff/applications/{application_id}/evidence",
    "staff_propose": "/staff/applications/{application_id}/propose",
    "staff_approve": "/staff/applications/{application_id}/approve",
    "staff_refuse": "/staff/applications/{application_id}/refuse",
    "staff_nominate": "/staff/aros",
    "staff_verify": "/staff/aros/{aro_id}/verify",
    "staff_screen": "/staff/aros/{aro_id}/screen",
    "staff_suspend": "/staff/aros/{aro_id}/suspend",
    "staff_propose_aro_reinstatement": "/staff/aros/{aro_id}/reinstate",
    "staff_propose_subscriber_reinstatement": "/staff/parties/{party_id}/reinstate",
    "staff_reinstatement_approve": "/staff/reinstatements/{item}/approve",
    "staff_reinstatement_refuse": "/staff/reinstatements/{item}/refuse",
    "staff_suspend_subscriber": "/staff/parties/{party_id}/suspend",
    "staff_withdraw_subscriber": "/staff/parties/{party_id}/withdraw",
    "staff_publish": "/staff/publish/{kind}",
    "staff_propose_ca_revocation": "/staff/ca-certificates/{serial}/propose",
    "staff_ca_revocation_approve": "/staff/revocations/{item}/approve",
    "staff_ca_revocation_refuse": "/staff/revocations/{item}/refuse",
    "staff_revoke_certificate": "/staff/certificates/revoke",
    "staff_batch_approve": "/staff/batches/{batch_id}/approve",
    "staff_batch_reject": "/staff/batches/{batch_id}/reject",
}


def _route_path(run: Callable[..., object]) -> str:
    return _PATHS[run.__name__]


def _capacity_rows(home: Home) -> list[dict[str, object]]:
    """Each Party's use of each capacity limit (spec §3.3), as the staff overview shows it."""
    from smki.services.capacity import usage

    rows: list[dict[str, object]] = []
    for row in usage(home):
        capacity = float(row["capacity"])
        used = max(0.0, capacity - float(row["remaining"]))
        rows.append({
            "party": row["party"], "limit": row["limit"], "used": round(used),
            "capacity": round(capacity), "percent": round(100 * used / capacity) if capacity else 0,
            "period": _period_text(float(row["period_seconds"])),
        })
    return sorted(rows, key=lambda r: (str(r["party"]), str(r["limit"])))


def _period_text(seconds: float) -> str:
    if seconds >= 86_400 and seconds % 86_400 == 0:
        return f"{int(seconds // 86_400)} d"
    if seconds >= 3_600 and seconds % 3_600 == 0:
        return f"{int(seconds // 3_600)} h"
    return f"{seconds:g} s"
