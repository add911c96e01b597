"""What every Portal page shares: the templates, the per-listener context, form tokens, responses.

Pages are rendered on the server (Jinja2 with autoescaping); the one script only enhances the
batch progress page. Every response carries a Content-Security-Policy that allows nothing but the
listener itself (``'self'``), so even a template mistake cannot make the browser fetch from, or
post to, another host.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from smki.domain import MAX_ROW_ID, CertificatePolicy, Route
from smki.errors import SmkiError
from smki.interfaces.portal.identity import PortalIdentity, identity_of
from smki.ra import PolicyRefusal, RuleRefusal, RuleResult
from smki.services import certificate_access
from smki.services.context import Home
from smki.services.shared_secrets import form_token_keys

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors 'none' for browsers that predate CSP level 2
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

#: Messages shown after a successful action (Post/Redirect/Get: the redirect names one by key).
NOTICES: Mapping[str, str] = {
    "issued": "Your certificate was issued. Download it below.",
    "applied": "Your application was opened. The RA will review it and record its decision here.",
    "evidence": "The evidence was recorded against the application.",
    "proposed": "The proposal was recorded. A different RA approver must now approve or refuse it.",
    "approved": "The application was approved: the Party is now an Authorised Subscriber for that policy.",
    "refused": "The application was refused; the rule-by-rule explanation is stored with it.",
    "nominated": "The ARO was nominated.",
    "verified": "The ARO's identity verification was recorded.",
    "screened": "The ARO's security screening was recorded.",
    "suspended": "The ARO was suspended; it cannot act from its very next request.",
    "reinstatement-proposed": "The reinstatement was proposed. A different RA approver must now approve or refuse "
                              "it (Reinstatements).",
    "reinstated": "The reinstatement was approved: the subscriber or ARO may request certificates again.",
    "reinstatement-refused": "The reinstatement was refused; the subscriber or ARO stays suspended.",
    "subscriber-suspended": "The subscriber standing was suspended: the Party's AROs are refused certificates under "
                            "that policy from their very next request.",
    "subscriber-withdrawn": "The subscriber standing was withdrawn: the Party must apply anew for that policy.",
    "revoked": "The certificate was revoked and a new CRL was published.",
    "ca-revocation-proposed": "The CA revocation was proposed. A different RA approver must now approve or refuse it "
                              "(below).",
    "ca-revoked": "The CA certificate was revoked and a new ARL was signed and published.",
    "ca-revocation-refused": "The CA revocation was refused; the certificate stays as it was.",
    "published": "The revocation list was signed and published.",
    "batch-approved": "The batch was approved: it is queued and runs in turn (inside the processing window, if set).",
    "batch-rejected": "The batch was rejected with your reason; none of its CSRs will be processed.",
}

_env = Environment(
    loader=PackageLoader("smki.interfaces.portal", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: datetime | None) -> str:
    """Times are shown in UTC to the second (the store keeps them in UTC)."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _audit_time(value: str) -> str:
    """An audit record's ISO 8601 ``at`` (UTC, microseconds) to the second."""
    try:
        return _when(datetime.fromisoformat(value).astimezone(UTC))
    except ValueError:
        return value


def _age(value: datetime | None, now: datetime) -> str:
    """How long ago ``value`` was, in the largest whole unit (``3 h``, ``2 d``)."""
    if value is None:
        return ""
    seconds = max(0, int((now - value).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


_env.filters["when"] = _when
_env.filters["age"] = _age
_env.filters["audit_time"] = _audit_time


@dataclass
class PortalContext:
    """One mounted Portal: its home, the listener's route, and a way to wake the process's batch runner."""

    home_factory: Callable[[], Home]
    route: Route
    prefix: str = "/portal"
    #: Tells this process's batch runner that a batch may be ready to run (uploaded, approved).
    wake: Callable[[], None] = lambda: None

    def home(self) -> Home:
        return self.home_factory()

    @property
    def gateway(self) -> bool:
        return self.route is Route.GATEWAY

    @property
    def device_access(self) -> bool:
        """Whether this listener shows Device Certificates and device batches at all (not on SPOTI:
        ``channel.spoti-organisation-access``); a page or link for them is offered only if so."""
        return certificate_access.may_read(self.route, CertificatePolicy.DEVICE)

    def authorise_device_read(self, request: Request, what: str) -> None:
        """Refuse ``what`` (a device batch page, a Device search) where Device Certificates may not be
        read: audited, and raised as ``ra.refused`` naming the rule for the refusal page."""
        certificate_access.authorise_read(self.home(), self.route, actor_of(request), CertificatePolicy.DEVICE, what)

    def portal_dir(self) -> Path:
        return self.home().settings.home / "portal"

    def token(self, identity: PortalIdentity, key: bytes | None = None, issued: int | None = None) -> str:
        """A form token bound to the identity and to when the page was made: a cross-site form post
        (which the browser would send with the user's client certificate) cannot know it, and one
        that leaked stops working after :data:`FORM_TOKEN_SECONDS`. The key is shared by every
        process of every node (:mod:`smki.services.shared_secrets`), so any of them accepts any
        one's form. Hex throughout: the issue time (8 digits), then the HMAC of identity and time."""
        key = form_token_keys(self.home())[0] if key is None else key
        stamp = f"{now_seconds() if issued is None else issued:08x}"
        return stamp + hmac.new(key, f"{identity.key}\n{stamp}".encode(), hashlib.sha256).hexdigest()

    async def check_form(self, request: Request) -> tuple[PortalIdentity, Any]:
        """The caller's identity and the posted form, after checking the form token."""
        identity = identity_of(request)
        form = await request.form()
        token = form.get("csrf")
        # the current key, and the one before a rotation: a database read, so not on the event loop
        keys = await run_in_threadpool(form_token_keys, self.home())
        issued = _token_time(token)
        if issued is None or not isinstance(token, str) or not any(
                hmac.compare_digest(token, self.token(identity, key, issued)) for key in keys):
            raise SmkiError("portal.form-expired", "this form has expired or came from another site; reload the page")
        return identity, form

    async def handle_form(self, request: Request, work: Callable[[PortalIdentity, Any], Response],
                          refused: Callable[[SmkiError], Response]) -> Response:
        """A POST: the form is read and its token checked on the event loop, then ``work`` (store and
        service calls, files, rendering) runs in a worker thread, as a sync page does, so a slow
        database never holds up the process's other requests. ``refused`` renders a refusal (also
        in a thread: a page reads the form-token key)."""
        try:
            identity, form = await self.check_form(request)
        except SmkiError as exc:
            return await run_in_threadpool(refused, exc)

        def run() -> Response:
            try:
                return work(identity, form)
            except SmkiError as exc:
                return refused(exc)

        return await run_in_threadpool(run)

    def render(self, request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        identity = getattr(request.state, "identity", None)
        notice = NOTICES.get(request.query_params.get("done", ""))
        body = _env.get_template(template).render(
            identity=identity if isinstance(identity, PortalIdentity) else None,
            csrf=self.token(identity) if isinstance(identity, PortalIdentity) else "",
            route=self.route, gateway=self.gateway, device_access=self.device_access, base=self.base(request),
            notice=notice, **values,
        )
        return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)

    def error_page(self, request: Request, exc: SmkiError, template: str = "error.html",
                   status_code: int | None = None, **values: Any) -> HTMLResponse:
        """Render ``template`` with the refusal shown (and the user's input kept in ``values``)."""
        return self.render(request, template, status_code or status_for(exc), error=describe(exc), **values)


    def base(self, request: Request) -> str:
        """Where the Portal is mounted (``/portal`` under the app's root path), for every link."""
        return str(request.scope.get("root_path", "")) + self.prefix

    def redirect(self, request: Request, path: str, done: str | None = None) -> RedirectResponse:
        target = self.base(request) + path + (f"?done={done}" if done else "")
        return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)


#: How long a page's forms may be posted after it was made: a leaked token is not good for ever.
FORM_TOKEN_SECONDS = 12 * 3600
#: How far ahead of this node's clock another node's token may be dated (their clocks differ a little).
FORM_TOKEN_SKEW = 300
_TOKEN = re.compile(r"[0-9a-f]{72}")


def asked_from_this_site(request: Request) -> bool:
    """Whether a GET that costs the server real work (the audit chain's verification reads every
    record) was asked by this Portal's own page, or typed or bookmarked (``Sec-Fetch-Site``
    ``same-origin`` or ``none``), rather than by another site's page through the staff member's
    browser, which presents their client certificate wherever it is sent: browsers send this
    Fetch Metadata header with every request; a client that sends none (a script) is not a browser
    another site can steer."""
    return request.headers.get("sec-fetch-site", "none") in ("same-origin", "none")


def now_seconds() -> int:
    """The Unix time in whole seconds (form tokens are dated with it)."""
    return int(time.time())


def _token_time(token: object) -> int | None:
    """When a well-formed form token was issued, if that is recent enough to accept; else None."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return None
    issued = int(token[:8], 16)
    now = now_seconds()
    return issued if now - FORM_TOKEN_SECONDS <= issued <= now + FORM_TOKEN_SKEW else None


def actor_of(request: Request) -> str:
    """The audit actor of the Portal's caller: ``aro:<ARO>@<Party>`` or ``staff:<id>``."""
    identity = identity_of(request)
    if identity.kind == "aro":
        return f"aro:{identity.aro_id}@{identity.party_id}"
    return f"staff:{identity.staff_id}"


def number_in_url(text: str) -> int | None:
    """A record's number as a URL gives it (a batch, an audit record, a page cursor), or None: ASCII
    digits only (``int`` alone reads '٣' as 3 and '²' not at all), at most ``MAX_ROW_ID`` (a larger
    one reached the database and was a 500)."""
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > MAX_ROW_ID:
        return None
    return int(text)


def download(data: bytes, filename: str, media_type: str) -> Response:
    """``data`` as an attachment; the file name is cut to ASCII letters, digits, ``.``, ``_`` and ``-``
    (a quote, a line break or a non-Latin-1 letter would break the header, or the response)."""
    headers = dict(SECURITY_HEADERS)
    filename = re.sub(r"[^A-Za-z0-9._-]+", "-", filename).strip("-") or "download"
    headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return Response(data, media_type=media_type, headers=headers)


@dataclass(frozen=True)
class ShownError:
    """A refusal as a page shows it: code, message, and (for RA refusals) each failing rule."""

    code: str
    message: str
    rules: tuple[RuleResult, ...] = ()
    ruleset: str | None = None


def describe(exc: SmkiError) -> ShownError:
    if isinstance(exc, PolicyRefusal):
        return ShownError(exc.code, exc.message, exc.decision.failed, exc.decision.ruleset)
    if isinstance(exc, RuleRefusal):
        # One rule outside a decision (repository.srept-passed, ra.dual-control, ra.staff-role,
        # ra.staff-holds-role under staff.role-required…): shown alike, with the reference it carries.
        result = exc.result
        # The rule's line below gives its reason: a message that only repeats it is not shown twice.
        repeats = exc.message in (result.reason, f"{result.rule_id}: {result.reason}")
        return ShownError(exc.code, "" if repeats else exc.message, (result,))
    return ShownError(exc.code, exc.message)


def status_for(exc: SmkiError) -> int:
    code = exc.code
    if code == "portal.unauthenticated":
        return 401
    if code in ("ra.refused", "ra.staff-role", "ra.dual-control", "portal.forbidden", "portal.form-expired") \
            or code.startswith("staff."):
        return 403
    if code.endswith("not-found") or code.endswith("-unknown"):
        return 404
    return 400
