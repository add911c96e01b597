"""The data generator, long-CRL linting and the streamed Repository extract."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.ca.crl import build_crl
from smki.ca.hierarchy import ORGANISATION_CA_LABEL
from smki.ca.keyid import certificate_key_fingerprint
from smki.ca.lint import Severity, crl_findings
from smki.domain import CertKind, CertStatus, Usage
from smki.errors import SmkiError
from smki.eui64 import eui64_hyphenated
from smki.repository.describe import certificate_facts
from smki.repository.extract import COLUMNS, write_extract
from smki.services.context import Home
from smki.services.crl_lint import FULL_LINT_LIMIT, publication_findings, sample_crl
from smki.services.populate import FIRST_DEVICE, populate_devices, populate_revoked_organisation
from smki.services.revocation import CRL, list_record, publish, revoke_as_operator
from smki.store import MAX_PAGE, CertificateQuery, Store
from smki.store.certified_keys import certified_key_reads
from tests.revocation.conftest import issue_org
from tests.revocation.openssl_tools import crl_pem, openssl_crl_verify


def _devices(home: Home) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(r.der)
            for r in home.store.iter_certificates(CertificateQuery(kind=CertKind.DEVICE))]


def test_populate_adds_real_device_certificates_signed_by_the_device_ca(home: Home) -> None:
    progress: list[int] = []
    summary = populate_devices(home, 1_001, actor="test", chunk_size=400, on_progress=progress.append)
    assert progress == [400, 800, 1_001]
    assert summary.records == 1_001 and summary.first_device == FIRST_DEVICE.to_bytes(8, "big")
    assert summary.last_device == (FIRST_DEVICE + 500).to_bytes(8, "big")
    records = list(home.store.iter_certificates(CertificateQuery(kind=CertKind.DEVICE)))
    assert len(records) == 1_001
    assert {r.status for r in records} == {CertStatus.IN_USE}
    assert len({r.serial for r in records}) == 1_001
    # As issuance leaves them: every key its own, each in the key register under its certificate's serial.
    fingerprints = [certificate_key_fingerprint(r.der) for r in records]
    assert len(set(fingerprints)) == 1_001
    assert certified_key_reads(home.store).serials(fingerprints) == {
        fingerprint: r.serial for fingerprint, r in zip(fingerprints, records, strict=True)}
    # Random serials, as drawn for every certificate: not a run of consecutive numbers.
    ordered = sorted(int(r.serial, 16) for r in records)
    assert ordered[-1] - ordered[0] > 1 << 100  # a run of 1,001 consecutive serials would span 1,000
    dca = home.ca_certificate(CertKind.DEVICE_CA)
    for index, record in enumerate(records):
        cert = x509.load_der_x509_certificate(record.der)
        facts = certificate_facts(cert)  # the Repository's own reading of the DER agrees with the row
        assert (facts.device_id, facts.usage, facts.serial) == (record.device_id, record.usage, record.serial)
        assert record.device_id == (FIRST_DEVICE + index // 2).to_bytes(8, "big")
        assert record.usage is (Usage.DS, Usage.KA)[index % 2]
        assert len(cert.serial_number.to_bytes(16, "big").lstrip(b"\0")) == 16
        if index % 97 == 0:
            cert.verify_directly_issued_by(dca)
    audit = [r for r in home.store.audit_rows() if r.action == "dev.populated"]
    assert [json.loads(r.details)["count"] for r in audit] == [400, 400, 201]
    assert json.loads(audit[0].details) == {
        "count": 400, "batch": summary.batch_id, "first_device": summary.first_device.hex(),
        "last_device": (FIRST_DEVICE + 199).to_bytes(8, "big").hex()}
    assert {r.batch_id for r in records} == {summary.batch_id}
    assert home.store.verify_audit().ok

    again = populate_devices(home, 4, actor="test")  # continues after the highest Device ID
    assert again.first_device == (FIRST_DEVICE + 501).to_bytes(8, "big")
    assert home.store.count_device_certificates(again.first_device) == 2


def test_populate_in_worker_processes_matches_in_process(home: Home) -> None:
    summary = populate_devices(home, 600, actor="test", chunk_size=100, workers=1)
    certs = _devices(home)
    assert len(certs) == 600 and summary.records == 600
    dca = home.ca_certificate(CertKind.DEVICE_CA)
    certs[0].verify_directly_issued_by(dca)
    certs[-1].verify_directly_issued_by(dca)
    fingerprints = [certificate_key_fingerprint(c.public_bytes(Encoding.DER)) for c in certs]
    assert len(certified_key_reads(home.store).serials(fingerprints)) == len(set(fingerprints)) == 600


def test_populate_refuses_bad_counts(home: Home) -> None:
    for count in (0, -1, 100_000_001):
        with pytest.raises(SmkiError) as refused:
            populate_devices(home, count, actor="test")
        assert refused.value.code == "populate.bad-count"


def test_revoked_organisation_records_make_a_long_crl(home: Home, tmp_path: Path) -> None:
    populate_revoked_organisation(home, 2_500, actor="test", chunk_size=1_000)
    oca = home.ca_certificate(CertKind.ORGANISATION_CA)
    sample = home.store.find_certificates(CertificateQuery(kind=CertKind.ORGANISATION, limit=3))
    for record in sample:
        assert record.status is CertStatus.REVOKED and record.revocation_reason == 1
        x509.load_der_x509_certificate(record.der).verify_directly_issued_by(oca)
    done = publish(home, CRL, actor="test")
    assert done.entries == 2_500
    der = list_record(home, CRL).der
    crl = x509.load_der_x509_crl(der)
    assert len(crl) == 2_500 and crl.is_signature_valid(oca.public_key())  # type: ignore[arg-type]
    serials = [entry.serial_number for entry in crl]
    # random 16-octet serials, as the factory draws them (not a run's prefix and a counter)
    assert all(serial.bit_length() > 120 and serial.bit_length() <= 127 for serial in serials)
    assert len({serial >> 64 for serial in serials}) == 2_500
    assert openssl_crl_verify(crl_pem(der, tmp_path / "crl.pem"), home.settings.home / "organisation-ca.pem"
                              ).returncode == 0


def _long_crl(home: Home, count: int) -> bytes:
    now = datetime.now(UTC).replace(microsecond=0)
    reasons = (None, 1, 3, 4, 5, 9)
    entries = [((1 << 120) + i, now - timedelta(minutes=i), reasons[i % len(reasons)]) for i in range(count)]
    entries.append((5, now, 1))  # a short serial: a different entry shape
    crl = build_crl(home.ca_certificate(CertKind.ORGANISATION_CA), home.backend().signer(ORGANISATION_CA_LABEL),
                    entries, 7, now, now + timedelta(hours=24))
    return crl.public_bytes(Encoding.DER)


def test_long_crl_is_linted_on_one_entry_of_each_shape(home: Home) -> None:
    der = _long_crl(home, FULL_LINT_LIMIT + 500)
    sampled, kept = sample_crl(der)
    full = x509.load_der_x509_crl(der)
    cut = x509.load_der_x509_crl(sampled)
    assert kept == len(cut) == 7  # 6 reasons + the short serial (also the last entry)
    assert cut.tbs_certlist_bytes != full.tbs_certlist_bytes
    assert (cut.issuer, cut.last_update_utc, cut.next_update_utc) == (full.issuer, full.last_update_utc,
                                                                      full.next_update_utc)
    assert list(cut.extensions) == list(full.extensions) and cut.signature == full.signature
    seen = {e.serial_number for e in cut}
    assert {5, (1 << 120)} <= seen
    reasons = {e.extensions.get_extension_for_class(x509.CRLReason).value.reason if len(e.extensions) else None
               for e in cut}
    assert len(reasons) == 6
    assert [f for f in publication_findings(der, "CRL") if f.severity <= Severity.ERROR] == []
    short = _long_crl(home, 10)
    assert sample_crl(short) == (short, 11)  # short lists are linted whole


def test_sampled_lint_still_sees_a_bad_list_header(home: Home) -> None:
    """The sample keeps the real header: a CRL without its CRL number is refused, long or short."""
    der = _long_crl(home, FULL_LINT_LIMIT + 10)
    marker = bytes.fromhex("0603551d14")  # OID 2.5.29.20 cRLNumber
    assert marker in der
    broken = der.replace(marker, bytes.fromhex("0603551d01"))  # an obsolete extension instead
    findings = publication_findings(broken, "CRL")
    assert any("crl_number" in f.code.lower() or "crlnumber" in f.code.lower() for f in findings), findings
    assert findings == crl_findings(sample_crl(broken)[0], "CRL")


class _Sink(io.StringIO):
    """Counts what is written; records how many rows the store had returned at the first data row."""

    def __init__(self, fetched: list[int]) -> None:
        super().__init__()
        self.fetched = fetched
        self.at_first_row: int | None = None
        self.chars = 0

    def write(self, text: str) -> int:
        if not text.startswith(COLUMNS[0]) and self.at_first_row is None:
            self.at_first_row = sum(self.fetched)
        self.chars += len(text)
        return len(text)


def test_extract_streams_a_page_at_a_time(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    populate_devices(home, 2 * MAX_PAGE + 300, actor="test", chunk_size=5_000)
    fetched: list[int] = []
    original = Store._certificates

    def spy(self: Store, stmt: object) -> object:
        rows = original(self, stmt)  # type: ignore[arg-type]
        fetched.append(len(rows))
        return rows

    monkeypatch.setattr(Store, "_certificates", spy)
    for name in ("certificates_for_device", "certificates_for_entity"):  # whole-result reads: never used
        monkeypatch.setattr(Store, name, lambda *a, **k: pytest.fail("extract used a whole-result read"))
    sink = _Sink(fetched)
    count = write_extract(home.store, sink)
    assert count == 2 * MAX_PAGE + 300 + 3  # + the three CA certificates
    assert max(fetched) <= MAX_PAGE and len(fetched) == 3
    assert sink.at_first_row is not None and sink.at_first_row <= MAX_PAGE  # written before page 2 is read


def _extract_peak(store: Store) -> int:
    tracemalloc.start()
    try:
        write_extract(store, _Sink([]))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_extract_memory_is_flat_in_the_number_of_records(home: Home) -> None:
    populate_devices(home, 2_500, actor="test", chunk_size=5_000)
    small = _extract_peak(home.store)
    populate_devices(home, 7_500, actor="test", chunk_size=5_000)
    large = _extract_peak(home.store)
    assert large < small * 1.5 + 256 * 1024, (small, large)  # 4x the records, about the same peak


def test_increment_carries_new_certificates_and_status_changes(home: Home) -> None:
    populate_devices(home, 10, actor="test")
    org = issue_org(home)
    since = datetime.now(UTC) + timedelta(seconds=1)
    import time

    time.sleep(1.2)
    revoke_as_operator(home, org.serial, 4, staff_id="op")
    out = io.StringIO()
    assert write_extract(home.store, out, since=since) == 1
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["CertificateSerial"], r["CertificateStatus"], r["RevocationReason"]) for r in rows] == [
        (org.serial, "R", "4")]
    assert rows[0]["CertificateSubjectName"] == eui64_hyphenated(bytes.fromhex("90B3D51F30010000"))
    full = io.StringIO()
    assert write_extract(home.store, full) == 10 + 1 + 3
