"""A revocation refused by a rule is an audit record (``revocation.refused``) naming the rule, the
actor and the certificate, as every other refusal (``request.refused``, ``access.refused``) is."""

from __future__ import annotations

import pytest

from smki.domain import CertKind, CertStatus
from smki.errors import SmkiError
from smki.services.context import Home
from smki.services.populate import populate_devices
from smki.services.revocation import (
    propose_ca_revocation,
    revoke_as_operator,
    revoke_organisation_certificate,
)
from smki.store import CertificateQuery
from tests.revocation.conftest import ENTITY_B, issue_org


def _refusals(home: Home, since: int) -> list[tuple[str, str, object]]:
    return [(row.actor, row.subject, row.details_dict.get("code")) for row in home.store.audit_rows(since + 1)
            if row.action == "revocation.refused"]


def test_every_refused_revocation_is_audited_with_its_rule(home: Home) -> None:
    populate_devices(home, 1, actor="test")
    device = home.store.find_certificates(CertificateQuery(kind=CertKind.DEVICE, limit=1))[0].serial
    theirs = issue_org(home, ENTITY_B).serial
    mine = issue_org(home).serial
    revoke_as_operator(home, mine, 1, staff_id="op")
    dca = f"{home.ca_certificate(CertKind.DEVICE_CA).serial_number:032x}"
    since = home.store.audit_head()[0]

    attempts = [
        (lambda: revoke_as_operator(home, device, 1, staff_id="op"), "revocation.device-certificate"),
        (lambda: revoke_as_operator(home, mine, 1, staff_id="op"), "revocation.already-revoked"),
        (lambda: revoke_as_operator(home, dca, 1, staff_id="op"), "revocation.ca-needs-dual-control"),
        (lambda: revoke_organisation_certificate(home, theirs, 1, actor="aro:a1", requesting_party="party-a"),
         "revocation.own-certificate"),
        (lambda: propose_ca_revocation(home, theirs, 1, staff_id="op"), "revocation.not-a-ca"),
    ]
    for attempt, code in attempts:
        with pytest.raises(SmkiError) as refused:
            attempt()
        assert refused.value.code == code
    assert _refusals(home, since) == [
        ("staff:op", device, "revocation.device-certificate"),
        ("staff:op", mine, "revocation.already-revoked"),
        ("staff:op", dca, "revocation.ca-needs-dual-control"),
        ("aro:a1", theirs, "revocation.own-certificate"),
        ("staff:op", theirs, "revocation.not-a-ca"),
    ]
    record = home.store.certificate_by_serial(theirs)
    assert record is not None and record.status is CertStatus.IN_USE
    assert home.store.verify_audit().ok
