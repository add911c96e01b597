"""RA staff pages: the applications queue, Parties and AROs, revocations, the audit log, CRL/ARL status.

Every change goes through a service that checks the staff member's role (``smki.services.staff``)
and, for decisions, dual control (``ra.dual-control``): the page only offers the buttons, the
service decides whether the person may press them. Auditors see every page and can change nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from smki.domain import CertStatus
from smki.errors import SmkiError
from smki.interfaces.portal.identity import PortalIdentity, identity_of
from smki.interfaces.portal.web import PortalContext
from smki.ra import Decision
from smki.ra.state import INSTALLATION_NEED_EVIDENCE
from smki.services import applications as apps
from smki.services import registry as reg
from smki.services.context import Home
from smki.services.ra_state import today
from smki.store import CertificateQuery

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
                          decided=decided, explained=explained, stored=stored,
                          evidence_kinds=[INSTALLATION_NEED_EVIDENCE, "registered-user", "other"], **extra)

    def action(path: str, done: str, page: Callable[..., Response]) -> Callable[
            [Callable[[PortalIdentity, Any, dict[str, str]], None]], Callable[..., Awaitable[Response]]]:
        """Register a staff POST: check the form token, run it, then redirect or re-show with the error."""
        def register(run: Callable[[PortalIdentity, Any, dict[str, str]], None]) -> Callable[..., Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                kept: dict[str, str] = {}
                try:
                    _, form = await ctx.check_form(request)
                    identity = staff_of(request)
                    kept = {k: str(v)[:500] for k, v in form.items() if isinstance(v, str) and k != "csrf"}
                    try:
                        run(identity, request.path_params, kept)
                    except ValueError:
                        raise SmkiError("portal.bad-id", "that is not a valid number or id") from None
                except SmkiError as exc:
                    return page(request, 400, error_exc=exc, kept=kept)
                return ctx.redirect(request, path, done)
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

    queue_page = show(queue)

    @router.get("/staff")
    def staff_home(request: Request) -> Response:
        identity = staff_of(request)
        home = ctx.home()
        return ctx.render(
            request, "staff_home.html", staff=home.store.registry.staff(_staff_id(identity)),
            open_count=len([a for a in home.store.registry.applications() if a.status in ("open", "proposed")]),
            dual_count=len(home.store.registry.dual_control_items("pending")),
            capacity=_capacity_rows(home),
        )

    @router.get("/staff/applications")
    def applications(request: Request) -> Response:
        return queue_page(request)

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
        staff_of(request)
        home = ctx.home()
        return ctx.render(request, "staff_parties.html", status_code, parties=home.store.registry.parties(),
                          aros=home.store.registry.aros(), **extra)

    parties_page = show(parties)

    @router.get("/staff/parties")
    def parties_get(request: Request) -> Response:
        return parties_page(request)

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

    def revocations(request: Request, status_code: int = 200, **extra: Any) -> Response:
        staff_of(request)
        home = ctx.home()
        revoked = home.store.find_certificates(CertificateQuery(status=CertStatus.REVOKED, limit=200))
        lists = {kind: home.store.revocation_list(kind) for kind in ("CRL", "ARL")}
        return ctx.render(request, "staff_revocations.html", status_code, revoked=revoked, lists=lists,
                          dual=home.store.registry.dual_control_items(), can_sign=home.secret is not None,
                          **extra)

    revocations_page = show(revocations)

    @router.get("/staff/revocations")
    def revocations_get(request: Request) -> Response:
        return revocations_page(request)

    @action("/staff/revocations", "published", revocations_page)
    def staff_publish(identity: PortalIdentity, params: dict[str, str], form: dict[str, str]) -> None:
        from smki.services.revocation import publish
        from smki.services.staff import require_staff

        kind = params["kind"].upper()
        require_staff(ctx.home(), identity.staff_id, "ra-operator")
        publish(ctx.home(), kind, actor=f"staff:{identity.staff_id}")

    @router.get("/staff/audit")
    def audit(request: Request) -> Response:
        staff_of(request)
        home = ctx.home()
        report = home.store.verify_audit() if request.query_params.get("verify") else None
        rows = list(reversed(home.store.audit_tail(AUDIT_ROWS)))
        return ctx.render(request, "staff_audit.html", rows=rows, report=report)


_PATHS = {
    "staff_evidence": "/staff/applications/{application_id}/evidence",
    "staff_propose": "/staff/applications/{application_id}/propose",
    "staff_approve": "/staff/applications/{application_id}/approve",
    "staff_refuse": "/staff/applications/{application_id}/refuse",
    "staff_nominate": "/staff/aros",
    "staff_verify": "/staff/aros/{aro_id}/verify",
    "staff_screen": "/staff/aros/{aro_id}/screen",
    "staff_suspend": "/staff/aros/{aro_id}/suspend",
    "staff_publish": "/staff/publish/{kind}",
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
