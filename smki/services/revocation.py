"""Revocation and the revocation lists (spec §4.3; issue 5).

* Organisation Certificates are revoked by an ARO of the owning Party (the RA's
  ``revocation.own-certificate`` rule, checked by the caller's request service) or by an RA
  operator; the Organisation CA's **CRL** is then re-signed.
* CA certificates (Organisation CA, Device CA) are revoked only under dual control: an RA operator
  proposes, a *different* RA approver approves; the Root's **ARL** is then re-signed.
* Device Certificates are never put on a CRL: their Repository status changes instead
  (``set_status``).

Each published list gets the next CRL number for its kind and is kept, so earlier ones stay
retrievable by number; the newest is also written to ``<home>/crl/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from smki.audit import AuditEvent
from smki.domain import CertKind, CertStatus
from smki.errors import NotFound, SmkiError
from smki.services.context import Home
from smki.services.staff import require_staff
from smki.store import CertificateRecord, RevocationListRecord, normalise_serial

#: RFC 5280 §5.3.1 reason codes an operator may give (8, removeFromCRL, is not a revocation).
REASON_CODES: dict[str, int] = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "privilegeWithdrawn": 9,
}
CRL = "CRL"
ARL = "ARL"
_LIST_FILES = {CRL: "organisation-ca", ARL: "root"}
_LIST_SUFFIX = {CRL: "crl", ARL: "arl"}
CA_KINDS = (CertKind.ORGANISATION_CA, CertKind.DEVICE_CA)
#: Statuses an RA operator may set directly (``smki cert set-status``); R only through revocation.
SETTABLE_STATUSES = (CertStatus.PENDING, CertStatus.IN_USE, CertStatus.NOT_IN_USE, CertStatus.EXPIRED)


def parse_reason(text: str) -> int:
    """A reason given by name (``keyCompromise``) or number (``1``)."""
    if text.isdigit() and int(text) in REASON_CODES.values():
        return int(text)
    for name, code in REASON_CODES.items():
        if name.lower() == text.strip().lower():
            return code
    raise SmkiError("revoke.bad-reason", f"unknown reason {text[:40]!r}; use one of {', '.join(REASON_CODES)}")


@dataclass(frozen=True)
class Published:
    kind: str
    number: int
    entries: int
    path: Path


def _certificate(home: Home, serial: str) -> CertificateRecord:
    record = home.store.certificate_by_serial(normalise_serial(serial))
    if record is None:
        raise NotFound("certificate.not-found", f"no certificate with serial {serial}")
    return record


def revoke_organisation_certificate(home: Home, serial: str, reason: int, *, actor: str,
                                    details: dict[str, object] | None = None,
                                    now: datetime | None = None) -> Published:
    """Revoke one Organisation Certificate and re-sign the CRL. The caller has applied the RA rules."""
    record = _certificate(home, serial)
    if record.kind is CertKind.DEVICE:
        raise SmkiError("revoke.device-certificate",
                        "Device Certificates are never put on a CRL; change their status with 'cert set-status'")
    if record.kind in CA_KINDS or record.kind is CertKind.ROOT:
        raise SmkiError("revoke.ca-needs-dual-control",
                        "CA certificates are revoked under dual control: 'smki ca revoke propose' then 'approve'")
    if record.status is CertStatus.REVOKED:
        raise SmkiError("revoke.already-revoked", f"certificate {record.serial} is already revoked")
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    with home.store.transaction() as tx:
        tx.set_certificate_status(record.serial, CertStatus.REVOKED, reason=reason, at=moment)
        tx.append_audit([AuditEvent(actor, "certificate.revoked", record.serial,
                                    {"kind": record.kind.value, "reason": reason, **(details or {})})])
    return publish(home, CRL, actor=actor, now=moment)


def propose_ca_revocation(home: Home, serial: str, reason: int, *, staff_id: str) -> int:
    """An RA operator proposes revoking a CA certificate; returns the dual-control item id."""
    require_staff(home, staff_id, "ra-operator")
    record = _certificate(home, serial)
    if record.kind not in CA_KINDS:
        raise SmkiError("revoke.not-a-ca", "only Organisation CA and Device CA certificates go on the ARL")
    if record.status is CertStatus.REVOKED:
        raise SmkiError("revoke.already-revoked", f"certificate {record.serial} is already revoked")
    with home.store.transaction() as tx:
        item = tx.registry.propose_dual_control("ca.revoke", record.serial, {"reason": reason}, staff_id)
        tx.append_audit([AuditEvent(staff_id, "ca.revocation-proposed", record.serial,
                                    {"item": item, "reason": reason})])
    return item


def decide_ca_revocation(home: Home, item_id: int, *, staff_id: str, approve: bool,
                         now: datetime | None = None) -> Published | None:
    """A different RA approver approves (revoke + ARL) or refuses the proposal (rule ``ra.dual-control``)."""
    require_staff(home, staff_id, "ra-approver")
    item = home.store.registry.dual_control(item_id)
    if item is None or item.action != "ca.revoke":
        raise NotFound("ra.not-found", f"no CA revocation proposal {item_id}")
    if item.proposed_by == staff_id:
        raise SmkiError("ra.dual-control",
                        "ra.dual-control: the person who proposed an action cannot also approve or refuse it")
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    reason = int(item.payload["reason"])
    with home.store.transaction() as tx:
        tx.registry.decide_dual_control(item_id, "approved" if approve else "refused", staff_id)
        if approve:
            tx.set_certificate_status(item.subject, CertStatus.REVOKED, reason=reason, at=moment)
        tx.append_audit([AuditEvent(staff_id, "ca.revoked" if approve else "ca.revocation-refused", item.subject,
                                    {"item": item_id, "reason": reason, "proposed_by": item.proposed_by})])
    return publish(home, ARL, actor=staff_id, now=moment) if approve else None


def set_status(home: Home, serial: str, status: CertStatus, *, staff_id: str) -> None:
    """An RA operator sets a Device or Organisation Certificate's Repository status (never to R)."""
    require_staff(home, staff_id, "ra-operator")
    if status not in SETTABLE_STATUSES:
        raise SmkiError("status.not-settable", "revocation ('R') is done with 'revoke', never by setting a status")
    record = _certificate(home, serial)
    if record.kind not in (CertKind.DEVICE, CertKind.ORGANISATION):
        raise SmkiError("status.not-settable", "CA certificate status changes only by revocation")
    if record.status is CertStatus.REVOKED:
        raise SmkiError("status.revoked", "a revoked certificate stays revoked")
    with home.store.transaction() as tx:
        if status is CertStatus.IN_USE and record.kind is CertKind.DEVICE and record.device_id and record.usage:
            tx.retire_in_use_device_certificates([(record.device_id, record.usage)])
        tx.set_certificate_status(record.serial, status)
        tx.append_audit([AuditEvent(staff_id, "certificate.status-set", record.serial,
                                    {"from": record.status.value, "to": status.value})])


def publish(home: Home, kind: str, *, actor: str, now: datetime | None = None) -> Published:
    """Sign and record the next CRL (Organisation CA) or ARL (Root), and write it under ``<home>/crl``."""
    from smki.ca.crl import build_crl
    from smki.ca.hierarchy import ORGANISATION_CA_LABEL, ROOT_LABEL
    from smki.ca.keyid import key_identifier
    from smki.ca.lint import crl_findings, refuse_on_errors

    if kind == CRL:
        issuer = home.ca_certificate(CertKind.ORGANISATION_CA)
        label = ORGANISATION_CA_LABEL
        kinds: tuple[CertKind, ...] = (CertKind.ORGANISATION,)
        lifetime = timedelta(hours=home.settings.crl_next_update_hours)
    elif kind == ARL:
        issuer = home.ca_certificate(CertKind.ROOT)
        label, kinds = ROOT_LABEL, CA_KINDS
        lifetime = timedelta(days=home.settings.arl_next_update_days)
    else:
        raise SmkiError("crl.bad-kind", "a revocation list is a CRL or an ARL")
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    signer = home.backend().signer(label)
    issuer_kid = key_identifier(issuer.public_key()).hex()  # type: ignore[arg-type]
    entries = [(e.serial, e.revoked_at, e.reason) for e in home.store.revoked_entries(kinds, issuer_kid)]
    for _attempt in range(3):  # a concurrent publisher may take our number: sign the next one
        latest = home.store.revocation_list(kind)
        number = 1 if latest is None else latest.number + 1
        crl = build_crl(issuer, signer, entries, number, moment, moment + lifetime)
        der = crl.public_bytes(Encoding.DER)
        refuse_on_errors(crl_findings(der, kind), kind)
        record = RevocationListRecord(kind, number, moment, moment + lifetime, len(entries), der)
        try:
            with home.store.transaction() as tx:
                tx.add_revocation_list(record)
                tx.append_audit([AuditEvent(actor, "crl.published", f"{kind}#{number}",
                                            {"kind": kind, "number": number, "entries": len(entries)})])
        except SmkiError as exc:
            if exc.code == "store.duplicate-crl-number":
                continue
            raise
        return Published(kind, number, len(entries), write_list_files(home, record))
    raise SmkiError("crl.busy", f"could not publish the {kind}: other publishers kept taking the number")


def write_list_files(home: Home, record: RevocationListRecord) -> Path:
    """``<home>/crl/<issuer>-<number>.<crl|arl>`` and the newest as ``<issuer>.<crl|arl>`` (atomic)."""
    directory = home.settings.home / "crl"
    directory.mkdir(parents=True, exist_ok=True)
    stem, suffix = _LIST_FILES[record.kind], _LIST_SUFFIX[record.kind]
    numbered = directory / f"{stem}-{record.number}.{suffix}"
    latest = directory / f"{stem}.{suffix}"
    for path in (numbered, latest):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(record.der)
        os.replace(tmp, path)
    return latest


def publish_due(home: Home, *, actor: str, now: datetime | None = None) -> list[Published]:
    """Re-sign each list whose nextUpdate is near (within a quarter of its lifetime) or that was never published."""
    moment = now or datetime.now(UTC)
    done = []
    for kind in (CRL, ARL):
        latest = home.store.revocation_list(kind)
        if latest is None or moment >= latest.next_update - (latest.next_update - latest.this_update) / 4:
            done.append(publish(home, kind, actor=actor, now=moment))
    return done
