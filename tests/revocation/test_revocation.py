"""Revocation, CRL/ARL publication and the status lifecycle, through the services (spec §4.3)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from smki.ca.devcsr import make_device_csr
from smki.ca.lint import Severity, crl_findings
from smki.domain import CertKind, CertStatus, Usage
from smki.errors import SmkiError
from smki.services.batch_sources import BatchItem
from smki.services.context import Home
from smki.services.device_issuance import issue_device_batch
from smki.services.populate import populate_devices
from smki.services.revocation import (
    ARL,
    CRL,
    REASON_CODES,
    decide_ca_revocation,
    expire_due,
    list_record,
    parse_reason,
    propose_ca_revocation,
    publish,
    publish_due,
    revoke_as_operator,
    revoke_organisation_certificate,
    set_status,
)
from smki.store import CertificateQuery
from tests.revocation.conftest import ENTITY_A, ENTITY_B, issue_org
from tests.revocation.openssl_tools import (
    cert_pem,
    crl_pem,
    openssl_crl_verify,
    openssl_verify_with_arl,
    openssl_verify_with_crl,
)


def _crl(home: Home, kind: str = CRL, number: int | None = None) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(list_record(home, kind, number).der)


def _ca(home: Home, kind: CertKind) -> x509.Certificate:
    return home.ca_certificate(kind)


def _audit_actions(home: Home) -> list[tuple[str, str, str]]:
    return [(row.action, row.subject, row.actor) for row in home.store.audit_rows()]


def test_revoked_certificate_fails_openssl_crl_check_and_unrevoked_passes(home: Home, tmp_path: Path) -> None:
    revoked = issue_org(home)
    kept = issue_org(home, usage=Usage.KA)
    done = revoke_as_operator(home, revoked.serial, parse_reason("keyCompromise"), staff_id="op")
    assert (done.kind, done.number, done.entries) == (CRL, 2, 1)  # #1 is the ceremony's, empty
    assert done.path == home.settings.home / "crl" / "organisation-ca.crl"

    crl = x509.load_der_x509_crl(done.path.read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(revoked.certificate.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(kept.certificate.serial_number) is None
    assert crl.issuer == _ca(home, CertKind.ORGANISATION_CA).subject

    root, oca = home.settings.home / "root.pem", home.settings.home / "organisation-ca.pem"
    crl_file = crl_pem(crl.public_bytes(Encoding.DER), tmp_path / "crl.pem")
    assert openssl_crl_verify(crl_file, oca).returncode == 0
    bad = openssl_verify_with_crl(root, oca, crl_file, cert_pem(revoked.der, tmp_path / "revoked.pem"))
    assert bad.returncode != 0 and "certificate revoked" in (bad.stdout + bad.stderr)
    good = openssl_verify_with_crl(root, oca, crl_file, cert_pem(kept.der, tmp_path / "kept.pem"))
    assert good.returncode == 0, good.stdout + good.stderr

    record = home.store.certificate_by_serial(revoked.serial)
    assert record is not None and record.status is CertStatus.REVOKED and record.revocation_reason == 1
    assert ("certificate.revoked", revoked.serial, "staff:op") in _audit_actions(home)
    assert ("crl.published", "CRL#2", "staff:op") in _audit_actions(home)
    assert home.store.verify_audit().ok


def test_crl_numbers_increase_and_earlier_lists_stay_retrievable(home: Home) -> None:
    serials = [issue_org(home).serial for _ in range(3)]
    for serial, reason in zip(serials, ("unspecified", "superseded", "9"), strict=True):
        revoke_as_operator(home, serial, parse_reason(reason), staff_id="op")
    first = list_record(home, CRL, 1)  # the key ceremony's
    again = publish(home, CRL, actor="test")
    assert again.number == 5
    assert home.store.revocation_list_numbers(CRL) == [1, 2, 3, 4, 5]
    assert list_record(home, CRL, 1).der == first.der  # kept byte for byte
    for number, entries in ((1, 0), (2, 1), (3, 2), (4, 3), (5, 3)):
        crl = _crl(home, CRL, number)
        assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number
        assert len(crl) == entries
        assert (home.settings.home / "crl" / f"organisation-ca-{number}.crl").read_bytes() == list_record(
            home, CRL, number).der
    # unspecified (0) is written by omitting the reasonCode entry extension (RFC 5280 §5.3.1)
    newest = _crl(home)
    by_serial = {f"{e.serial_number:032x}": e for e in newest}
    assert len(by_serial[serials[0]].extensions) == 0
    assert by_serial[serials[2]].extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.privilege_withdrawn)
    with pytest.raises(SmkiError) as missing:
        list_record(home, CRL, 99)
    assert missing.value.code == "crl.not-found"


def test_every_list_passes_pkilint_and_openssl(home: Home, tmp_path: Path) -> None:
    for reason in REASON_CODES.values():
        revoke_as_operator(home, issue_org(home).serial, reason, staff_id="op")
    dca = _ca(home, CertKind.DEVICE_CA)
    item = propose_ca_revocation(home, f"{dca.serial_number:x}", parse_reason("cACompromise"), staff_id="op")
    decide_ca_revocation(home, item, staff_id="approver", approve=True)
    for kind, issuer in ((CRL, "organisation-ca.pem"), (ARL, "root.pem")):
        for number in home.store.revocation_list_numbers(kind):
            der = list_record(home, kind, number).der
            errors = [f for f in crl_findings(der, kind) if f.severity <= Severity.ERROR]
            assert errors == [], (kind, number, errors)
            check = openssl_crl_verify(crl_pem(der, tmp_path / f"{kind}{number}.pem"), home.settings.home / issuer)
            assert check.returncode == 0 and "verify OK" in check.stderr, check.stderr


def test_device_certificate_is_never_put_on_a_crl(home: Home) -> None:
    populate_devices(home, 2, actor="test")
    device = home.store.find_certificates(CertificateQuery(kind=CertKind.DEVICE, limit=1))[0]
    with pytest.raises(SmkiError) as refused:
        revoke_as_operator(home, device.serial, 1, staff_id="op")
    assert refused.value.code == "revocation.device-certificate"
    with pytest.raises(SmkiError) as also:
        revoke_organisation_certificate(home, device.serial, 1, actor="aro:x", requesting_party="party-a")
    assert also.value.code == "revocation.device-certificate"
    # a Device Certificate's status changes instead, and the CRL never lists it
    set_status(home, device.serial, CertStatus.NOT_IN_USE, staff_id="op")
    published = publish(home, CRL, actor="test")
    assert published.entries == 0
    record = home.store.certificate_by_serial(device.serial)
    assert record is not None and record.status is CertStatus.NOT_IN_USE and record.revoked_at is None


def test_aro_may_revoke_only_its_own_partys_certificate(home: Home) -> None:
    theirs = issue_org(home, ENTITY_B)
    with pytest.raises(SmkiError) as refused:
        revoke_organisation_certificate(home, theirs.serial, 1, actor="aro:alice", requesting_party="party-a")
    assert refused.value.code == "revocation.own-certificate"
    assert "revocation.own-certificate" in refused.value.message
    assert "party-a" in refused.value.message
    record = home.store.certificate_by_serial(theirs.serial)
    assert record is not None and record.status is CertStatus.IN_USE
    assert home.store.revocation_list_numbers(CRL) == [1]  # nothing was published either

    ours = issue_org(home, ENTITY_A)
    done = revoke_organisation_certificate(home, ours.serial, 3, actor="aro:alice", requesting_party="party-a")
    assert done.entries == 1
    rows = [r for r in home.store.audit_rows() if r.action == "certificate.revoked"]
    assert rows[-1].actor == "aro:alice" and '"party":"party-a"' in rows[-1].details


def test_unregistered_entity_is_nobodys_own(home: Home) -> None:
    stray = issue_org(home, bytes.fromhex("90B3D51F3009FFFF"))
    with pytest.raises(SmkiError) as refused:
        revoke_organisation_certificate(home, stray.serial, 1, actor="aro:alice", requesting_party="party-a")
    assert refused.value.code == "revocation.own-certificate"


def test_revocation_needs_an_ra_operator(home: Home) -> None:
    serial = issue_org(home).serial
    for staff, code in ((None, "staff.required"), ("nobody", "staff.unknown"), ("auditor", "staff.role-required"),
                        ("approver", "staff.role-required")):
        with pytest.raises(SmkiError) as refused:
            revoke_as_operator(home, serial, 1, staff_id=staff)
        assert refused.value.code == code
    revoke_as_operator(home, serial, 1, staff_id="op")
    with pytest.raises(SmkiError) as twice:
        revoke_as_operator(home, serial, 1, staff_id="op2")
    assert twice.value.code == "revocation.already-revoked"
    assert len(_crl(home)) == 1


def test_ca_certificates_need_dual_control(home: Home, tmp_path: Path) -> None:
    oca = _ca(home, CertKind.ORGANISATION_CA)
    dca = _ca(home, CertKind.DEVICE_CA)
    with pytest.raises(SmkiError) as direct:
        revoke_as_operator(home, f"{dca.serial_number:x}", 2, staff_id="op")
    assert direct.value.code == "revocation.ca-needs-dual-control"
    with pytest.raises(SmkiError) as auditor:
        propose_ca_revocation(home, f"{dca.serial_number:x}", 2, staff_id="auditor")
    assert auditor.value.code == "staff.role-required"
    with pytest.raises(SmkiError) as not_ca:
        propose_ca_revocation(home, issue_org(home).serial, 2, staff_id="op")
    assert not_ca.value.code == "revocation.not-a-ca"

    item = propose_ca_revocation(home, f"{dca.serial_number:x}", 2, staff_id="both")
    with pytest.raises(SmkiError) as again:
        propose_ca_revocation(home, f"{dca.serial_number:x}", 2, staff_id="op")
    assert again.value.code == "revocation.already-proposed"
    with pytest.raises(SmkiError) as same:
        decide_ca_revocation(home, item, staff_id="both", approve=True)
    assert same.value.code == "ra.dual-control" and "cannot also approve" in same.value.message
    for staff in ("auditor", "op"):
        with pytest.raises(SmkiError) as role:
            decide_ca_revocation(home, item, staff_id=staff, approve=True)
        assert role.value.code == "staff.role-required"
    assert home.store.revocation_list_numbers(ARL) == [1]  # the ceremony's only
    record = home.store.certificate_by_serial(dca.serial_number)
    assert record is not None and record.status is CertStatus.IN_USE

    done = decide_ca_revocation(home, item, staff_id="approver", approve=True)
    assert done is not None and (done.kind, done.number, done.entries) == (ARL, 2, 1)
    with pytest.raises(SmkiError) as decided:
        decide_ca_revocation(home, item, staff_id="approver", approve=False)
    assert decided.value.code == "ra.already-decided"
    arl = x509.load_der_x509_crl(done.path.read_bytes())
    assert arl.issuer == _ca(home, CertKind.ROOT).subject
    assert arl.get_revoked_certificate_by_serial_number(dca.serial_number) is not None
    root = home.settings.home / "root.pem"
    arl_file = crl_pem(list_record(home, ARL).der, tmp_path / "arl.pem")
    assert openssl_crl_verify(arl_file, root).returncode == 0
    rejected = openssl_verify_with_arl(root, arl_file, home.settings.home / "device-ca.pem")
    assert rejected.returncode != 0 and "certificate revoked" in rejected.stdout + rejected.stderr
    accepted = openssl_verify_with_arl(root, arl_file, home.settings.home / "organisation-ca.pem")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr

    refused_item = propose_ca_revocation(home, f"{oca.serial_number:x}", 1, staff_id="op")
    assert decide_ca_revocation(home, refused_item, staff_id="approver", approve=False) is None
    still = home.store.certificate_by_serial(oca.serial_number)
    assert still is not None and still.status is CertStatus.IN_USE
    actions = _audit_actions(home)
    assert ("ca.revocation-proposed", f"{dca.serial_number:032x}", "staff:both") in actions
    assert ("ca.revoked", f"{dca.serial_number:032x}", "staff:approver") in actions
    assert ("ca.revocation-refused", f"{oca.serial_number:032x}", "staff:approver") in actions
    assert home.store.verify_audit().ok


def test_revoked_organisation_ca_stops_crl_but_not_arl(home: Home) -> None:
    oca = _ca(home, CertKind.ORGANISATION_CA)
    item = propose_ca_revocation(home, f"{oca.serial_number:x}", 2, staff_id="op")
    decide_ca_revocation(home, item, staff_id="approver", approve=True)
    with pytest.raises(SmkiError) as no_issuer:
        publish(home, CRL, actor="test")
    assert no_issuer.value.code == "crl.no-issuer"
    later = datetime.now(UTC) + timedelta(days=40)
    assert [p.kind for p in publish_due(home, actor="test", now=later)] == [ARL]


def test_nothing_changes_when_the_list_cannot_be_signed(home: Home) -> None:
    serial = issue_org(home).serial
    locked = replace(home, secret=None, _backend=None)
    with pytest.raises(SmkiError) as refused:
        revoke_as_operator(locked, serial, 1, staff_id="op")
    assert refused.value.code == "key.secret-missing"
    record = home.store.certificate_by_serial(serial)
    assert record is not None and record.status is CertStatus.IN_USE


def test_set_status_lifecycle(home: Home) -> None:
    populate_devices(home, 2, actor="test")
    first_ds = home.store.find_certificates(CertificateQuery(kind=CertKind.DEVICE, limit=1))[0]
    assert first_ds.status is CertStatus.IN_USE and first_ds.device_id is not None
    set_status(home, first_ds.serial, CertStatus.NOT_IN_USE, staff_id="op")
    with pytest.raises(SmkiError) as unchanged:
        set_status(home, first_ds.serial, CertStatus.NOT_IN_USE, staff_id="op")
    assert unchanged.value.code == "status.unchanged"
    assert set_status(home, first_ds.serial, CertStatus.IN_USE, staff_id="op") is CertStatus.NOT_IN_USE
    with pytest.raises(SmkiError) as to_r:
        set_status(home, first_ds.serial, CertStatus.REVOKED, staff_id="op")
    assert to_r.value.code == "status.not-settable"
    with pytest.raises(SmkiError) as auditor:
        set_status(home, first_ds.serial, CertStatus.PENDING, staff_id="auditor")
    assert auditor.value.code == "staff.role-required"
    root_serial = _ca(home, CertKind.ROOT).serial_number
    with pytest.raises(SmkiError) as ca:
        set_status(home, f"{root_serial:x}", CertStatus.NOT_IN_USE, staff_id="op")
    assert ca.value.code == "status.not-settable"
    org = issue_org(home)
    revoke_as_operator(home, org.serial, 1, staff_id="op")
    with pytest.raises(SmkiError) as revoked:
        set_status(home, org.serial, CertStatus.IN_USE, staff_id="op")
    assert revoked.value.code == "status.revoked"
    rows = [r for r in home.store.audit_rows() if r.action == "certificate.status-set"]
    assert [r.details for r in rows] == [
        '{"from":"I","kind":"device","to":"N"}', '{"from":"N","kind":"device","to":"I"}']


def test_setting_a_second_device_certificate_in_use_retires_the_first(home: Home) -> None:
    populate_devices(home, 2, actor="test")
    ds = home.store.find_certificates(CertificateQuery(kind=CertKind.DEVICE, limit=1))[0]
    assert ds.device_id is not None
    assert ds.usage is not None
    # A replacement DS certificate for the same Device, issued through the normal batch path.
    issue_device_batch(home, [BatchItem(0, "r", make_device_csr(ds.device_id, ds.usage))],
                       actor="test", batch_ref="replace", workers=0)
    certs = home.store.certificates_for_device(ds.device_id, ds.usage)
    assert [c.status for c in certs] == [CertStatus.NOT_IN_USE, CertStatus.IN_USE]
    set_status(home, ds.serial, CertStatus.IN_USE, staff_id="op")
    certs = home.store.certificates_for_device(ds.device_id, ds.usage)
    assert [c.status for c in certs] == [CertStatus.IN_USE, CertStatus.NOT_IN_USE]


def test_expiry_marks_only_organisation_certificates_past_not_after(home: Home) -> None:
    populate_devices(home, 2, actor="test")
    live, revoked = issue_org(home), issue_org(home)
    revoke_as_operator(home, revoked.serial, 1, staff_id="op")
    assert expire_due(home, actor="test") == []
    later = live.certificate.not_valid_after_utc + timedelta(seconds=1)
    assert expire_due(home, actor="test", now=later) == [live.serial]
    assert expire_due(home, actor="test", now=later) == []
    statuses = {r.serial: r.status for r in home.store.iter_certificates(CertificateQuery())}
    assert statuses[live.serial] is CertStatus.EXPIRED
    assert statuses[revoked.serial] is CertStatus.REVOKED
    assert [s for s in statuses.values() if s is CertStatus.EXPIRED] == [CertStatus.EXPIRED]
    assert [r.subject for r in home.store.audit_rows() if r.action == "certificate.expired"] == [live.serial]
    with pytest.raises(SmkiError) as back:
        set_status(home, live.serial, CertStatus.IN_USE, staff_id="op", now=later)
    assert back.value.code == "status.expired"


def test_publish_due_renews_only_lists_near_next_update(home: Home) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    assert publish_due(home, actor="test", now=now) == []  # the ceremony's lists are fresh
    assert publish_due(home, actor="test", now=now + timedelta(hours=1)) == []
    assert [p.kind for p in publish_due(home, actor="test", now=now + timedelta(hours=19))] == [CRL]
    assert [p.number for p in publish_due(home, actor="test", now=now + timedelta(days=23))] == [3, 2]


def test_bad_kind_and_reason_are_coded(home: Home) -> None:
    with pytest.raises(SmkiError) as kind:
        publish(home, "XRL", actor="test")
    assert kind.value.code == "crl.bad-kind"
    with pytest.raises(SmkiError) as reason:
        revoke_as_operator(home, issue_org(home).serial, 6, staff_id="op")  # certificateHold: not offered
    assert reason.value.code == "revocation.bad-reason"
    with pytest.raises(SmkiError) as missing:
        revoke_as_operator(home, "abcdef", 1, staff_id="op")
    assert missing.value.code == "certificate.not-found"


@given(st.text(max_size=30))
def test_parse_reason_accepts_exactly_the_offered_reasons(text: str) -> None:
    try:
        code = parse_reason(text)
    except SmkiError as exc:
        assert exc.code == "revocation.bad-reason"
        return
    assert code in REASON_CODES.values()
    cleaned = text.strip()
    assert (cleaned.isascii() and cleaned.isdigit()) or cleaned.lower() in {n.lower() for n in REASON_CODES}


def test_parse_reason_by_name_or_number() -> None:
    assert [parse_reason(n) for n in ("keyCompromise", "KEYCOMPROMISE", " 4 ", "privilegeWithdrawn")] == [1, 1, 4, 9]
    for bad in ("6", "8", "10", "hold", "", "-1", "\u00b2", "\u0661"):
        with pytest.raises(SmkiError):
            parse_reason(bad)


def test_second_usage_certificate_fixture_check(home: Home) -> None:
    """The helper issues what it says: DS by default, KA on request, both for Party A's entity."""
    ds, ka = issue_org(home), issue_org(home, usage=Usage.KA)
    assert ds.certificate.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert ka.certificate.extensions.get_extension_for_class(x509.KeyUsage).value.key_agreement
    assert {r.entity_id for r in home.store.certificates_for_entity(ENTITY_A)} == {ENTITY_A}


def test_after_its_ca_certificate_is_revoked_issuance_says_so_not_run_ca_init(home: Home) -> None:
    """With the Organisation CA revoked there is no Organisation CA certificate in force: issuing is
    refused naming the revoked certificate (``ca.not-in-force``), not as a home never initialised."""
    org_ca = _ca(home, CertKind.ORGANISATION_CA)
    serial = f"{org_ca.serial_number:032x}"
    item = propose_ca_revocation(home, serial, parse_reason("cACompromise"), staff_id="op")
    decide_ca_revocation(home, item, staff_id="approver", approve=True)
    with pytest.raises(SmkiError) as refused:
        issue_org(home)
    assert refused.value.code == "ca.not-in-force"
    assert serial in refused.value.message and "revoked" in refused.value.message
    assert "ca init" not in refused.value.message
    assert home.ca_certificate(CertKind.DEVICE_CA) is not None  # the Device CA is still in force
