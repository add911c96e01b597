"""Revocation, the revocation lists and the status lifecycle (spec §3.1, §4.3; issue 5).

* Organisation Certificates are revoked by an ARO of the owning Party (rule
  ``revocation.own-certificate``: the certificate's Entity Identifier must belong to the requesting
  Party) or by an RA operator; the Organisation CA's **CRL** is then re-signed.
* CA certificates (Organisation CA, Device CA) are revoked only under dual control: an RA operator
  proposes, a *different* RA approver approves (rule ``ra.dual-control``); the Root's **ARL** is
  then re-signed.
* Device Certificates are never put on a CRL (spec §4.3): their Repository status changes instead
  (``set_status``).
* Organisation Certificates past their notAfter become expired (``E``) by ``expire_due``, which
  ``smki crl publish`` and ``smki cert expire-due`` run.

Each published list gets the next CRL number for its kind and is kept in the store, so earlier
ones stay retrievable by number; the newest is also written to ``<home>/crl/``. Number 1 of each,
empty, is the key ceremony's (``first_lists``, recorded in the ceremony's transaction). Every change is
audited in the transaction that makes it.

Why the key is opened before the change: a revocation whose CRL cannot then be signed (no
passphrase, token absent) would leave the store saying "revoked" while relying parties still see
the old list. Opening the signer first refuses such a request before anything changes; a later
failure to sign is repaired by the next ``smki crl publish``, which always lists every revoked
certificate.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.audit import AuditEvent
from smki.domain import CertKind, CertStatus
from smki.errors import NotFound, SmkiError
from smki.ra import RuleRefusal
from smki.ra import check_own_certificate as check_own_certificate_rule
from smki.services.context import Home
from smki.services.staff import require_second_person, require_staff
from smki.services.typed_text import typed_text
from smki.store import CertificateQuery, CertificateRecord, RevocationListRecord, Transaction, normalise_serial

#: RFC 5280 §5.3.1 reason codes an operator may give. Left out: certificateHold (6) and
#: removeFromCRL (8), because a revocation here is final, and aACompromise (10), which is about
#: attribute authorities.
REASON_CODES: dict[str, int] = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "privilegeWithdrawn": 9,
}
REASON_NAMES = {code: name for name, code in REASON_CODES.items()}
CRL = "CRL"
ARL = "ARL"
LIST_KINDS = (CRL, ARL)
_LIST_FILES = {CRL: "organisation-ca", ARL: "root"}
_LIST_SUFFIX = {CRL: "crl", ARL: "arl"}
CA_KINDS = (CertKind.ORGANISATION_CA, CertKind.DEVICE_CA)
#: Statuses an RA operator may set directly (``smki cert set-status``); R only through revocation.
SETTABLE_STATUSES = (CertStatus.PENDING, CertStatus.IN_USE, CertStatus.NOT_IN_USE, CertStatus.EXPIRED)
_LIVE = (CertStatus.PENDING, CertStatus.IN_USE, CertStatus.NOT_IN_USE, CertStatus.EXPIRED)
CA_REVOKE_ACTION = "ca.revoke"


def parse_reason(text: str) -> int:
    """A reason given by name (``keyCompromise``, any case) or number (``1``)."""
    cleaned = text.strip()
    if cleaned.isascii() and cleaned.isdigit() and int(cleaned) in REASON_NAMES:
        return int(cleaned)
    for name, code in REASON_CODES.items():
        if name.lower() == cleaned.lower():
            return code
    raise SmkiError("revocation.bad-reason",
                    f"unknown reason {text[:40]!r}; use one of {', '.join(REASON_CODES)}")


@dataclass(frozen=True)
class Published:
    """A CRL or ARL just signed and recorded."""

    kind: str
    number: int
    entries: int
    path: Path


def _certificate(home: Home, serial: str) -> CertificateRecord:
    record = home.store.certificate_by_serial(normalise_serial(serial))
    if record is None:
        raise NotFound("certificate.not-found", f"no certificate with serial {serial}")
    return record


def _moment(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).replace(microsecond=0)


def _require_signer(home: Home, kind: str) -> None:
    """Open the list's signing key now, so a request that could not be published changes nothing."""
    from smki.ca.hierarchy import ORGANISATION_CA_LABEL, ROOT_LABEL

    home.backend().signer(ORGANISATION_CA_LABEL if kind == CRL else ROOT_LABEL)


def _refuse_unrevocable(record: CertificateRecord) -> None:
    if record.kind is CertKind.DEVICE:
        raise SmkiError("revocation.device-certificate",
                        "Device Certificates are never put on a CRL; change their status with 'cert set-status'")
    if record.kind in CA_KINDS:
        raise SmkiError("revocation.ca-needs-dual-control",
                        "CA certificates are revoked under dual control: 'smki ca revoke propose', then 'approve'")
    if record.kind is not CertKind.ORGANISATION:
        raise SmkiError("revocation.not-revocable", "the Root is not revoked on any list; replace the hierarchy")
    if record.status is CertStatus.REVOKED:
        raise SmkiError("revocation.already-revoked", f"certificate {record.serial} is already revoked")


@contextmanager
def _audited_refusal(home: Home, actor: str, serial: str, party: str | None) -> Iterator[None]:
    """A refusal by a revocation rule is an audit record (``revocation.refused``) before it reaches
    the user, as a refused request or Repository read is: someone asking to revoke what they may
    not (another Party's certificate, a Device Certificate) is what an auditor looks for."""
    try:
        yield
    except SmkiError as exc:
        details: dict[str, object] = {"code": exc.code}
        if party is not None:
            details["party"] = party
        with home.store.transaction() as tx:
            tx.append_audit([AuditEvent(actor, "revocation.refused", serial, details)])
        raise


def check_own_certificate(home: Home, record: CertificateRecord, requesting_party: str) -> None:
    """Apply rule ``revocation.own-certificate`` (in :mod:`smki.ra.rules`) with the register's owner
    of the Entity Identifier the certificate names; a failure is a refusal naming the rule."""
    owner = home.store.registry.party_for_entity(record.entity_id) if record.entity_id else None
    result = check_own_certificate_rule(record.serial, record.entity_id, owner, requesting_party)
    if not result.passed:
        raise RuleRefusal(result, result.rule_id, f"{result.rule_id}: {result.reason}")


def revoke_organisation_certificate(
    home: Home,
    serial: str,
    reason: int,
    *,
    actor: str,
    requesting_party: str | None = None,
    details: dict[str, object] | None = None,
    now: datetime | None = None,
) -> Published:
    """Revoke one Organisation Certificate and re-sign the CRL.

    ``requesting_party`` is set when an ARO asks (the Portal / API path, after the RA has checked
    the ARO itself): the certificate must then be one of that Party's (``revocation.own-certificate``).
    An RA operator's request (``revoke_as_operator``) leaves it unset.
    """
    if reason not in REASON_NAMES:
        raise SmkiError("revocation.bad-reason", f"{reason!r} is not a reason code smki accepts")
    record = _certificate(home, serial)
    with _audited_refusal(home, actor, record.serial, requesting_party):
        _refuse_unrevocable(record)
        if requesting_party is not None:
            check_own_certificate(home, record, requesting_party)
    _require_signer(home, CRL)
    moment = _moment(now)
    audit: dict[str, object] = {"kind": record.kind.value, "reason": reason, "reason_name": REASON_NAMES[reason]}
    if requesting_party is not None:
        audit["party"] = requesting_party
    audit.update(details or {})
    try:
        with home.store.transaction() as tx:
            tx.set_certificate_status(record.serial, CertStatus.REVOKED, reason=reason, at=moment, only_from=_LIVE)
            tx.append_audit([AuditEvent(actor, "certificate.revoked", record.serial, audit)])
    except SmkiError as exc:
        if exc.code == "store.status-changed":
            raise SmkiError("revocation.already-revoked", f"certificate {record.serial} is already revoked") from exc
        raise
    return _publish_after_revoking(home, CRL, record.serial, actor=actor, now=moment)


def _publish_after_revoking(home: Home, kind: str, serial: str, *, actor: str, now: datetime) -> Published:
    """Publish the list a revocation just recorded belongs on. The revocation stands whatever
    happens here, so a failure says so, and says how the list catches up, rather than leaving the
    user to guess whether the certificate was revoked."""
    try:
        return publish(home, kind, actor=actor, now=now)
    except Exception as exc:  # whatever it was, the revocation stands: that is what the user must read
        why = f"{exc.code}: {exc.message}" if isinstance(exc, SmkiError) else f"internal: {type(exc).__name__}: {exc}"
        raise SmkiError(
            "revocation.list-not-published",
            f"certificate {serial} is revoked, but the {kind} could not be published ({why}); "
            f"'smki crl publish --kind {kind}', or a running server's scheduler, publishes it with this revocation",
        ) from exc


def revoke_as_operator(home: Home, serial: str, reason: int, *, staff_id: str | None,
                       now: datetime | None = None) -> Published:
    """An RA operator revokes an Organisation Certificate (``smki cert revoke``)."""
    require_staff(home, staff_id, "ra-operator", subject=serial, action="revoke-certificate")
    assert staff_id is not None
    return revoke_organisation_certificate(home, serial, reason, actor=f"staff:{staff_id}",
                                           details={"staff": staff_id}, now=now)


def propose_ca_revocation(home: Home, serial: str, reason: int, *, staff_id: str | None) -> int:
    """An RA operator proposes revoking a CA certificate; returns the dual-control item id."""
    require_staff(home, staff_id, "ra-operator", subject=serial, action="propose-ca-revocation")
    assert staff_id is not None
    if reason not in REASON_NAMES:
        raise SmkiError("revocation.bad-reason", f"{reason!r} is not a reason code smki accepts")
    record = _certificate(home, serial)
    with _audited_refusal(home, f"staff:{staff_id}", record.serial, None):
        if record.kind not in CA_KINDS:
            raise SmkiError("revocation.not-a-ca",
                            "only Organisation CA and Device CA certificates go on the ARL")
        if record.status is CertStatus.REVOKED:
            raise SmkiError("revocation.already-revoked", f"certificate {record.serial} is already revoked")
    for item in home.store.registry.dual_control_items("pending"):
        if item.action == CA_REVOKE_ACTION and item.subject == record.serial:
            raise SmkiError("revocation.already-proposed",
                            f"proposal {item.id} to revoke {record.serial} is awaiting a decision")
    with home.store.transaction() as tx:
        item_id = tx.registry.propose_dual_control(CA_REVOKE_ACTION, record.serial,
                                                   {"reason": reason, "kind": record.kind.value}, staff_id)
        tx.append_audit([AuditEvent(f"staff:{staff_id}", "ca.revocation-proposed", record.serial,
                                    {"item": item_id, "reason": reason, "kind": record.kind.value})])
    return item_id


def decide_ca_revocation(home: Home, item_id: int, *, staff_id: str | None, approve: bool,
                         reason: str | None = None, now: datetime | None = None) -> Published | None:
    """A different RA approver approves (revoke + ARL) or refuses the proposal (rule ``ra.dual-control``).

    ``reason`` is the approver's own reason for refusing (optional; recorded in the audit as ``refusal``).
    """
    staff = require_staff(home, staff_id, "ra-approver", subject=f"ca-revocation:{item_id}",
                          action="approve-ca-revocation" if approve else "refuse-ca-revocation")
    assert staff_id is not None
    item = home.store.registry.dual_control(item_id)
    if item is None or item.action != CA_REVOKE_ACTION:
        raise NotFound("ra.not-found", f"no CA revocation proposal {item_id}")
    if item.status != "pending":
        raise SmkiError("ra.already-decided", f"proposal {item_id} was already {item.status}")
    # The same four-eyes step as applications and reinstatements (names compared case-insensitively).
    require_second_person(home, staff, item.proposed_by, refused_event="ca.dual-control-refused",
                          subject=item.subject, details={"item": item_id}, actor=f"staff:{staff.staff_id}")
    if approve:
        _require_signer(home, ARL)
    refusal = None if approve or not reason or not reason.strip() else typed_text(
        reason, "the reason", limit=500, code="ra.bad-text")
    moment = _moment(now)
    code = int(item.payload["reason"])
    actor = f"staff:{staff_id}"
    details: dict[str, object] = {"item": item_id, "reason": code, "proposed_by": item.proposed_by}
    if refusal is not None:
        details["refusal"] = refusal
    try:
        with home.store.transaction() as tx:
            tx.registry.decide_dual_control(item_id, "approved" if approve else "refused", staff_id)
            if approve:
                tx.set_certificate_status(item.subject, CertStatus.REVOKED, reason=code, at=moment,
                                          only_from=_LIVE)
            tx.append_audit([AuditEvent(actor, "ca.revoked" if approve else "ca.revocation-refused", item.subject,
                                        details)])
    except SmkiError as exc:
        if exc.code == "store.status-changed":
            raise SmkiError("revocation.already-revoked", f"certificate {item.subject} is already revoked") from exc
        raise
    return _publish_after_revoking(home, ARL, item.subject, actor=actor, now=moment) if approve else None


@dataclass(frozen=True)
class CaCertificate:
    """An Organisation CA or Device CA certificate as RA staff see it before proposing or deciding
    its revocation: what it is (subject, kind), which one (serial, validity) and where it stands."""

    serial: str
    kind: CertKind
    subject: str  # RFC 4514
    not_before: datetime
    not_after: datetime
    status: CertStatus
    revoked_at: datetime | None


@dataclass(frozen=True)
class CaRevocation:
    """A CA revocation proposal with everything the approver must see before deciding: the
    certificate it revokes (``certificate``: None only if that serial is not in the store), the
    reason the proposer gave, who proposed it and when, and where it stands."""

    item: int
    serial: str
    certificate: CaCertificate | None
    reason: int
    reason_name: str
    status: str  # pending / approved / refused
    proposed_by: str
    proposed_at: datetime
    decided_by: str | None
    decided_at: datetime | None


def _ca_view(record: CertificateRecord) -> CaCertificate:
    subject = x509.load_der_x509_certificate(record.der).subject.rfc4514_string()
    return CaCertificate(record.serial, record.kind, subject, record.not_before, record.not_after, record.status,
                         record.revoked_at)


def ca_certificates(home: Home) -> list[CaCertificate]:
    """Every Organisation CA and Device CA certificate in the store (any status), oldest first: what
    an RA operator may propose revoking (``propose_ca_revocation``)."""
    found: list[CaCertificate] = []
    for kind in CA_KINDS:
        found += [_ca_view(r) for r in home.store.find_certificates(CertificateQuery(kind=kind, limit=1000))]
    return found


def ca_revocations(home: Home, *, pending_only: bool = True) -> list[CaRevocation]:
    """CA revocation proposals, oldest first (those awaiting an RA approver unless ``pending_only`` is False)."""
    views: list[CaRevocation] = []
    for item in home.store.registry.dual_control_items("pending" if pending_only else None):
        if item.action != CA_REVOKE_ACTION:
            continue
        record = home.store.certificate_by_serial(item.subject)
        code = int(item.payload.get("reason", 0))
        views.append(CaRevocation(item.id, item.subject, None if record is None else _ca_view(record), code,
                                  REASON_NAMES.get(code, str(code)), item.status, item.proposed_by,
                                  item.proposed_at, item.decided_by, item.decided_at))
    return views


def set_status(home: Home, serial: str, status: CertStatus, *, staff_id: str | None,
               now: datetime | None = None) -> CertStatus:
    """An RA operator sets a Device or Organisation Certificate's Repository status (never to R).

    Returns the previous status. Setting a Device Certificate in use puts the Device's other in-use
    certificate for that usage to not in use, in the same transaction (one in use per usage).
    """
    require_staff(home, staff_id, "ra-operator", subject=serial, action="set-status")
    assert staff_id is not None
    status = CertStatus(status)
    if status not in SETTABLE_STATUSES:
        raise SmkiError("status.not-settable", "revocation ('R') is done with 'revoke', never by setting a status")
    record = _certificate(home, serial)
    if record.kind not in (CertKind.DEVICE, CertKind.ORGANISATION):
        raise SmkiError("status.not-settable", "a CA certificate's status changes only by revocation")
    if record.status is CertStatus.REVOKED:
        raise SmkiError("status.revoked", "a revoked certificate stays revoked")
    if record.status is status:
        raise SmkiError("status.unchanged", f"certificate {record.serial} is already in status {status.value}")
    if (status is CertStatus.IN_USE and record.kind is CertKind.ORGANISATION
            and record.not_after < (now or datetime.now(UTC))):
        raise SmkiError("status.expired", f"certificate {record.serial} expired on {record.not_after.date()}")
    try:
        with home.store.transaction() as tx:
            if status is CertStatus.IN_USE and record.kind is CertKind.DEVICE and record.device_id and record.usage:
                tx.retire_in_use_device_certificates([(record.device_id, record.usage)])
            tx.set_certificate_status(record.serial, status, only_from=(record.status,))
            tx.append_audit([AuditEvent(f"staff:{staff_id}", "certificate.status-set", record.serial,
                                        {"kind": record.kind.value, "from": record.status.value, "to": status.value})])
    except SmkiError as exc:
        if exc.code == "store.status-changed":
            raise SmkiError("status.changed", f"certificate {record.serial} changed status meanwhile; "
                                              "look again and retry") from exc
        raise
    return record.status


def expire_due(home: Home, *, actor: str, now: datetime | None = None) -> list[str]:
    """Set Organisation Certificates past their notAfter to expired ('E'); one audit record each.

    Device Certificates never expire (notAfter 9999-12-31, spec §4.1); revoked certificates stay
    revoked (and on the CRL).
    """
    moment = now or datetime.now(UTC)
    with home.store.transaction() as tx:
        serials = tx.expire_certificates(CertKind.ORGANISATION, moment)
        tx.append_audit([AuditEvent(actor, "certificate.expired", serial, {"kind": CertKind.ORGANISATION.value})
                         for serial in serials])
    return serials


def _list_profile(home: Home, kind: str) -> tuple[CertKind, str, tuple[CertKind, ...], timedelta]:
    """A list's issuer, the issuer's key label, the kinds of certificate it lists, and its lifetime."""
    from smki.ca.hierarchy import ORGANISATION_CA_LABEL, ROOT_LABEL

    if kind == CRL:
        return (CertKind.ORGANISATION_CA, ORGANISATION_CA_LABEL, (CertKind.ORGANISATION,),
                timedelta(hours=home.settings.crl_next_update_hours))
    if kind == ARL:
        return CertKind.ROOT, ROOT_LABEL, CA_KINDS, timedelta(days=home.settings.arl_next_update_days)
    raise SmkiError("crl.bad-kind", f"a revocation list is a CRL or an ARL, not {kind[:10]!r}")


def _sign_list(home: Home, kind: str, issuer: x509.Certificate, entries: Sequence[tuple[int, datetime, int | None]],
               number: int, moment: datetime) -> RevocationListRecord:
    """Build, sign and lint (``crl_lint``) list ``number`` of ``kind``; nothing is recorded yet."""
    from smki.ca.crl import build_crl
    from smki.ca.lint import refuse_on_errors
    from smki.services.crl_lint import publication_findings

    _issuer_kind, label, _kinds, lifetime = _list_profile(home, kind)
    crl = build_crl(issuer, home.backend().signer(label), entries, number, moment, moment + lifetime)
    der = crl.public_bytes(Encoding.DER)
    refuse_on_errors(publication_findings(der, kind), kind)
    return RevocationListRecord(kind, number, moment, moment + lifetime, len(entries), der)


def record_list(tx: Transaction, record: RevocationListRecord, actor: str) -> None:
    """Record a signed list, audited ``crl.published``, in the caller's transaction."""
    tx.add_revocation_list(record)
    tx.append_audit([AuditEvent(actor, "crl.published", f"{record.kind}#{record.number}",
                                {"kind": record.kind, "number": record.number, "entries": record.entries})])


def publish(home: Home, kind: str, *, actor: str, now: datetime | None = None) -> Published:
    """Sign and record the next CRL (Organisation CA) or ARL (Root), and write it under ``<home>/crl``.

    The list holds every revoked certificate of its kinds issued by its issuer's key, streamed
    from the store; it is linted (``crl_lint``) before it is recorded.
    """
    from smki.ca.keyid import key_identifier

    issuer_kind, _label, kinds, _lifetime = _list_profile(home, kind)
    if home.store.ca_certificate(issuer_kind) is None:
        raise NotFound("crl.no-issuer", f"no in-use {issuer_kind.value} certificate to sign the {kind}")
    issuer = home.ca_certificate(issuer_kind)
    moment = _moment(now)
    issuer_kid = key_identifier(issuer.public_key()).hex()  # type: ignore[arg-type]
    entries = [(e.serial, e.revoked_at, e.reason) for e in home.store.revoked_entries(kinds, issuer_kid)]
    for _attempt in range(3):  # a concurrent publisher may take our number: sign the next one
        latest = home.store.revocation_list(kind)
        record = _sign_list(home, kind, issuer, entries, 1 if latest is None else latest.number + 1, moment)
        try:
            with home.store.transaction() as tx:
                record_list(tx, record, actor)
        except SmkiError as exc:
            if exc.code == "store.duplicate-crl-number":
                continue
            raise
        try:
            written = write_list_files(home, record)
        except OSError as exc:  # the list is published (recorded, served by the Repository): say so
            raise SmkiError("crl.file-not-written", f"{kind} {record.number} is published (recorded, and served by "
                                                    f"the Repository), but its file under {home.settings.home / 'crl'} "
                                                    f"could not be written: {exc.strerror or exc}") from exc
        return Published(kind, record.number, record.entries, written)
    raise SmkiError("crl.busy", f"could not publish the {kind}: other publishers kept taking the number")


def first_lists(home: Home, issuers: Mapping[CertKind, x509.Certificate], now: datetime) -> list[RevocationListRecord]:
    """The key ceremony's lists (spec §4.3): CRL and ARL number 1, empty, signed by the new
    Organisation CA and Root (``issuers``, not yet recorded), so relying parties can check
    revocation from the first certificate on. The ceremony records them (:func:`record_list`) in
    its own transaction, so a list that cannot be signed or linted fails the whole ceremony."""
    return [_sign_list(home, kind, issuers[_list_profile(home, kind)[0]], [], 1, _moment(now)) for kind in LIST_KINDS]


def write_list_files(home: Home, record: RevocationListRecord) -> Path:
    """``<home>/crl/<issuer>-<number>.<crl|arl>`` and the newest as ``<issuer>.<crl|arl>`` (atomic)."""
    directory = home.settings.home / "crl"
    directory.mkdir(parents=True, exist_ok=True)
    stem, suffix = _LIST_FILES[record.kind], _LIST_SUFFIX[record.kind]
    numbered = directory / f"{stem}-{record.number}.{suffix}"
    latest = directory / f"{stem}.{suffix}"
    for path in (numbered, latest):
        if path is latest:
            newest = home.store.revocation_list(record.kind)
            if newest is not None and newest.number > record.number:
                continue  # a concurrent publisher already wrote a newer list
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(record.der)
            os.replace(tmp, path)
        except BaseException:  # a file that cannot be replaced (a directory in its place): no stray .tmp left
            tmp.unlink(missing_ok=True)
            raise
    return latest


def unpublished_revocations(home: Home, kind: str, latest: RevocationListRecord | None = None) -> int:
    """How many revoked certificates of the list's kinds its newest published list does not hold.

    Non-zero when a revocation was recorded but its list never signed: the process died between
    the two transactions, or signing failed (an HSM away, a lint refusal). Entries never leave a
    list (a revocation is final), so the newest list holds them all exactly when the counts agree.
    ``latest`` is the newest list when the caller has already read it (it can be megabytes).
    """
    from smki.ca.keyid import key_identifier

    issuer_kind, _label, kinds, _lifetime = _list_profile(home, kind)
    if home.store.ca_certificate(issuer_kind) is None:
        return 0  # no issuer in use: no list can be signed (and ``publish_due`` skips it)
    issuer_kid = key_identifier(home.ca_certificate(issuer_kind).public_key()).hex()  # type: ignore[arg-type]
    latest = latest or home.store.revocation_list(kind)
    return home.store.revoked_count(kinds, issuer_kid) - (0 if latest is None else latest.entries)


def publish_due(home: Home, *, actor: str, now: datetime | None = None) -> list[Published]:
    """Re-sign each list whose nextUpdate is near (within a quarter of its lifetime), that was never
    published, or that misses a recorded revocation (``unpublished_revocations``: a revocation whose
    publication was interrupted): the step a server's scheduler runs, at start and on every tick.
    A list whose issuer has been revoked is skipped."""
    moment = now or datetime.now(UTC)
    done = []
    for kind in LIST_KINDS:
        latest = home.store.revocation_list(kind)
        if (latest is None or moment >= latest.next_update - (latest.next_update - latest.this_update) / 4
                or unpublished_revocations(home, kind, latest) > 0):
            try:
                done.append(publish(home, kind, actor=actor, now=moment))
            except NotFound as exc:
                if exc.code != "crl.no-issuer":
                    raise
    return done


def list_record(home: Home, kind: str, number: int | None = None) -> RevocationListRecord:
    """A published CRL/ARL by number, or the newest (``smki crl show|export``)."""
    if kind not in LIST_KINDS:
        raise SmkiError("crl.bad-kind", f"a revocation list is a CRL or an ARL, not {kind[:10]!r}")
    record = home.store.revocation_list(kind, number)
    if record is None:
        which = f"no {kind} number {number}" if number is not None else f"no {kind} has been published yet"
        raise NotFound("crl.not-found", which)
    return record


class RevocationListScheduler:
    """Re-signs the CRL and ARL on schedule inside a long-running server (``smki serve``).

    Every ``interval`` seconds it runs :func:`publish_due`, which re-signs a list only when it was
    never published or its nextUpdate is near. Several server processes (and nodes) each run one;
    a cluster-wide lock (:func:`smki.store.locks.exclusive`) lets one at a time decide and publish,
    so each interval gets one CRL and one ARL, not one per process.
    A failure is reported through ``on_error`` and retried at the next tick; it never stops the server.
    """

    def __init__(self, home: Home, *, interval: float = 300.0, actor: str = "serve:crl-scheduler",
                 on_error: Callable[[Exception], None] | None = None) -> None:
        import threading

        self._home = home
        self._interval = interval
        self._actor = actor
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crl-scheduler", daemon=True)
        self.published: list[Published] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        from smki.store.locks import exclusive

        while not self._stop.is_set():
            try:
                # One publisher at a time across every process of every node sharing the database:
                # whoever holds the lock re-reads the newest lists, so the others find nothing due.
                with exclusive(self._home.store.engine, "revocation-lists") as mine:
                    if mine:
                        self.published += publish_due(self._home, actor=self._actor)
            except Exception as exc:  # keep serving; the next tick retries
                if self._on_error is not None:
                    self._on_error(exc)
            self._stop.wait(self._interval)
