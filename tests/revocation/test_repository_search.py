"""Repository search: every criterion, combined, against a plain-Python oracle; pagination; the CLI."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.domain import CertKind, CertStatus, RemotePartyRole, Usage
from smki.services.context import Home
from smki.services.populate import FIRST_DEVICE, populate_devices
from smki.services.revocation import revoke_as_operator, set_status
from smki.store import CertificateQuery, CertificateRecord
from tests.cli.helpers import smki, smki_env
from tests.revocation.conftest import ENTITY_A, ENTITY_B, issue_org

DEVICES = [(FIRST_DEVICE + i).to_bytes(8, "big") for i in range(4)]


def _stocked(home: Home) -> list[CertificateRecord]:
    """Device records (some N), Organisation Certificates for two entities (one revoked), the CAs."""
    populate_devices(home, 40, actor="test")
    first = home.store.find_certificates(CertificateQuery(kind=CertKind.DEVICE, limit=3))
    set_status(home, first[0].serial, CertStatus.NOT_IN_USE, staff_id="op")
    set_status(home, first[2].serial, CertStatus.PENDING, staff_id="op")
    org = [issue_org(home, ENTITY_A), issue_org(home, ENTITY_A, Usage.KA), issue_org(home, ENTITY_B)]
    revoke_as_operator(home, org[1].serial, 1, staff_id="op")
    return list(home.store.iter_certificates(CertificateQuery()))


def _oracle(records: list[CertificateRecord], q: CertificateQuery) -> list[CertificateRecord]:
    return [r for r in records if r.id > q.after_id
            and (q.kind is None or r.kind is q.kind) and (q.status is None or r.status is q.status)
            and (q.usage is None or r.usage is q.usage) and (q.device_id is None or r.device_id == q.device_id)
            and (q.entity_id is None or r.entity_id == q.entity_id) and (q.role is None or r.role == q.role)
            and (q.issued_from is None or r.issued_at >= q.issued_from)
            and (q.issued_before is None or r.issued_at < q.issued_before)][: q.limit]


def test_search_matches_the_oracle_for_any_combination(home: Home) -> None:
    records = _stocked(home)
    now = datetime.now(UTC)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        kind=st.none() | st.sampled_from(CertKind),
        status=st.none() | st.sampled_from(CertStatus),
        usage=st.none() | st.sampled_from(Usage),
        device=st.none() | st.sampled_from(DEVICES),
        entity=st.none() | st.sampled_from([ENTITY_A, ENTITY_B]),
        role=st.none() | st.sampled_from([int(RemotePartyRole.SUPPLIER), int(RemotePartyRole.OTHER)]),
        issued_from=st.none() | st.sampled_from([now - timedelta(days=1), now + timedelta(days=1)]),
        issued_before=st.none() | st.sampled_from([now - timedelta(days=1), now + timedelta(days=1)]),
        after=st.integers(0, 50),
        limit=st.integers(1, 60),
    )
    def check(**kw: object) -> None:
        query = CertificateQuery(
            kind=kw["kind"], status=kw["status"], usage=kw["usage"], device_id=kw["device"],  # type: ignore[arg-type]
            entity_id=kw["entity"], role=kw["role"], issued_from=kw["issued_from"],  # type: ignore[arg-type]
            issued_before=kw["issued_before"], after_id=kw["after"], limit=kw["limit"],  # type: ignore[arg-type]
        )
        assert home.store.find_certificates(query) == _oracle(records, query)

    check()


def test_pages_cover_every_match_once_in_order(home: Home) -> None:
    records = _stocked(home)
    seen: list[CertificateRecord] = []
    after = 0
    while page := home.store.find_certificates(CertificateQuery(kind=CertKind.DEVICE, after_id=after, limit=7)):
        seen += page
        after = page[-1].id
    assert seen == [r for r in records if r.kind is CertKind.DEVICE]
    assert len(seen) == 40


def test_lookups_by_serial_and_device(home: Home) -> None:
    records = _stocked(home)
    for record in records[::9]:
        assert home.store.certificate_by_serial(record.serial) == record
        assert home.store.certificate_by_serial(int(record.serial, 16)) == record
    assert [r.usage for r in home.store.certificates_for_device(DEVICES[1])] == [Usage.DS, Usage.KA]
    assert home.store.certificates_for_device(DEVICES[1], Usage.KA)[0].device_id == DEVICES[1]
    assert home.store.certificate_by_serial("7" * 32) is None


def test_cli_search_by_each_criterion(home: Home, database_url: str, tmp_path: Path) -> None:
    records = _stocked(home)
    env = smki_env(database_url)
    h = ["--home", str(home.settings.home)]

    def serials(*args: str) -> list[str]:
        result = smki(["cert", "search", *args, *h], env)
        assert result.code in (0, 1), result.err
        return re.findall(r"\b[0-9a-f]{32}\b", result.out)

    target = records[5]
    assert serials("--serial", target.serial.lstrip("0").upper()) == [target.serial]
    assert serials("--device", "00-DB-00-00-00-00-00-02") == [r.serial for r in records if r.device_id == DEVICES[2]]
    assert serials("--entity", ENTITY_A.hex(), "--usage", "KA", "--status", "R") == [
        r.serial for r in records if r.entity_id == ENTITY_A and r.status is CertStatus.REVOKED]
    assert serials("--role", "2", "--kind", "org") == [r.serial for r in records if r.role == 2]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert len(serials("--issued-before", tomorrow, "--kind", "device")) == 40
    first = smki(["cert", "search", "--kind", "device", "--limit", "15", *h], env)
    cursor = re.search(r"more: --after (\d+)", first.out)
    assert cursor is not None
    page_two = serials("--kind", "device", "--limit", "15", "--after", cursor.group(1))
    devices = [r.serial for r in records if r.kind is CertKind.DEVICE]
    assert page_two == devices[15:30]
    none = smki(["cert", "search", "--device", "00DBFFFFFFFFFFFF", *h], env)
    assert none.code == 1 and "0 certificate(s)" in none.out
    bad = smki(["cert", "search", "--device", "not-an-eui", *h], env)
    assert bad.code == 1 and bad.err.startswith("error: ") and "Traceback" not in bad.err
