"""A revocation recorded but never published (the process died, or signing failed, between the two
transactions) is caught up by the next scheduled step, at once, not at the list's nextUpdate."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from smki.domain import CertKind, CertStatus
from smki.errors import SmkiError
from smki.services import revocation
from smki.services.context import Home
from smki.services.revocation import (
    ARL,
    CRL,
    RevocationListScheduler,
    decide_ca_revocation,
    list_record,
    propose_ca_revocation,
    publish_due,
    revoke_as_operator,
    unpublished_revocations,
)
from tests.revocation.conftest import issue_org


class _Died(BaseException):
    """Stands for the process dying (SIGKILL, power) after the revocation's transaction committed."""


def _die(*_args: object, **_kwargs: object) -> object:
    raise _Died


def _lists(home: Home, kind: str, serial: str) -> bool:
    crl = x509.load_der_x509_crl(list_record(home, kind).der)
    return crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None


def _unpublished_gauge(home: Home) -> dict[tuple[str, ...], float]:
    """``smki_revocations_unpublished`` as the admin listener's /metrics reads it."""
    from smki.services.health import gauges

    return dict(next(g for g in gauges(home) if g.name == "smki_revocations_unpublished").samples)


def _revoke_and_die(home: Home, serial: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(revocation, "publish", _die)
        with pytest.raises(_Died):
            revoke_as_operator(home, serial, 1, staff_id="op")


def test_publish_due_catches_up_a_revocation_whose_crl_was_never_signed(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC).replace(microsecond=0)  # the ceremony published CRL and ARL #1 just now
    serial = issue_org(home).serial
    _revoke_and_die(home, serial, monkeypatch)
    record = home.store.certificate_by_serial(serial)
    assert record is not None and record.status is CertStatus.REVOKED
    assert not _lists(home, CRL, serial) and unpublished_revocations(home, CRL) == 1
    assert _unpublished_gauge(home) == {("CRL",): 1.0, ("ARL",): 0.0}

    # a minute later the CRL is far from its nextUpdate, yet the revocation is missing from it
    done = publish_due(home, actor="test", now=now + timedelta(minutes=1))
    assert [(p.kind, p.number, p.entries) for p in done] == [(CRL, 2, 1)]
    assert _lists(home, CRL, serial) and unpublished_revocations(home, CRL) == 0
    assert publish_due(home, actor="test", now=now + timedelta(minutes=2)) == []
    assert _unpublished_gauge(home) == {("CRL",): 0.0, ("ARL",): 0.0}


def test_publish_due_catches_up_an_approved_ca_revocation_whose_arl_was_never_signed(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    dca = f"{home.ca_certificate(CertKind.DEVICE_CA).serial_number:032x}"
    item = propose_ca_revocation(home, dca, 2, staff_id="op")
    with monkeypatch.context() as patched:
        patched.setattr(revocation, "publish", _die)
        with pytest.raises(_Died):
            decide_ca_revocation(home, item, staff_id="approver", approve=True)
    assert unpublished_revocations(home, ARL) == 1
    done = publish_due(home, actor="test", now=now + timedelta(minutes=1))
    assert [(p.kind, p.entries) for p in done] == [(ARL, 1)] and _lists(home, ARL, dca)


def test_a_server_starting_after_the_crash_publishes_the_missing_revocation(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    serial = issue_org(home).serial
    _revoke_and_die(home, serial, monkeypatch)
    scheduler = RevocationListScheduler(home, interval=3600)
    scheduler.start()
    try:
        deadline = time.monotonic() + 20
        while not scheduler.published and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.stop()
    assert [p.kind for p in scheduler.published] == [CRL]
    assert _lists(home, CRL, serial)


def test_a_failed_publication_says_the_certificate_is_revoked_and_how_the_list_catches_up(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    serial = issue_org(home).serial

    def refuse(*_args: object, **_kwargs: object) -> object:
        raise SmkiError("key.backend-unavailable", "the token went away")

    with monkeypatch.context() as patched:
        patched.setattr(revocation, "publish", refuse)
        with pytest.raises(SmkiError) as failed:
            revoke_as_operator(home, serial, 1, staff_id="op")
    assert failed.value.code == "revocation.list-not-published"
    assert f"{serial} is revoked" in failed.value.message and "key.backend-unavailable" in failed.value.message
    assert "smki crl publish" in failed.value.message
    record = home.store.certificate_by_serial(serial)
    assert record is not None and record.status is CertStatus.REVOKED
    assert [p.kind for p in publish_due(home, actor="test")] == [CRL] and _lists(home, CRL, serial)


def test_a_list_whose_file_cannot_be_written_is_published_and_says_so(home: Home) -> None:
    """``<home>/crl`` made a file (or the disk full): the list is recorded and served, so the error
    says it is published and only its file is missing, rather than an OSError that reads as though
    nothing was; a revocation then says it stands, as for any other failure to publish."""
    serial = issue_org(home).serial
    crl_dir = home.settings.home / "crl"
    for path in crl_dir.iterdir():
        path.unlink()
    crl_dir.rmdir()
    crl_dir.write_text("not a directory")
    before = list_record(home, CRL).number
    with pytest.raises(SmkiError) as failed:
        revoke_as_operator(home, serial, 1, staff_id="op")
    assert failed.value.code == "revocation.list-not-published"
    assert f"{serial} is revoked" in failed.value.message and "crl.file-not-written" in failed.value.message
    newest = list_record(home, CRL)
    assert newest.number == before + 1 and _lists(home, CRL, serial)  # published all the same
    with pytest.raises(SmkiError) as again:
        revocation.publish(home, CRL, actor="test")
    assert again.value.code == "crl.file-not-written" and f"CRL {before + 2} is published" in again.value.message
    crl_dir.unlink()
    crl_dir.mkdir()
    (crl_dir / "organisation-ca.crl").mkdir()  # the newest list's name taken by a directory: cannot be replaced
    with pytest.raises(SmkiError) as blocked:
        revocation.publish(home, CRL, actor="test")
    assert blocked.value.code == "crl.file-not-written"
    assert sorted(p.name for p in crl_dir.iterdir()) == [f"organisation-ca-{before + 3}.crl", "organisation-ca.crl"]


def test_a_publication_that_fails_unexpectedly_still_says_the_certificate_is_revoked(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    serial = issue_org(home).serial

    def overflow(*_args: object, **_kwargs: object) -> object:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(revocation, "publish", overflow)
    with pytest.raises(SmkiError) as failed:
        revoke_as_operator(home, serial, 1, staff_id="op")
    assert failed.value.code == "revocation.list-not-published"
    assert "internal: OverflowError: date value out of range" in failed.value.message
    record = home.store.certificate_by_serial(serial)
    assert record is not None and record.status is CertStatus.REVOKED
