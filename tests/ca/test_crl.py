"""CRLs (Organisation CA) and ARLs (Root): v2, CRL number, AKI, reasons; verified and linted."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pyasn1.codec.der import decoder
from pyasn1_alt_modules import rfc5280

from smki.ca.crl import REASONS, build_crl
from smki.ca.lint import Severity, crl_findings
from smki.ca.profiles import random_serial
from smki.errors import SmkiError
from tests.ca.conftest import NOW, DeterministicCA, FileCA, openssl

LATER = NOW + timedelta(hours=24)
ENTRIES = [
    (0x11, NOW - timedelta(days=3), None),
    (0x7F00FF, NOW - timedelta(days=2), 0),
    (random_serial(), NOW - timedelta(days=1), 1),
    (random_serial(), NOW - timedelta(hours=1), 4),
    (random_serial(), NOW, 5),
]


def _ski(cert: x509.Certificate) -> bytes:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def test_crl_fields(file_ca: FileCA) -> None:
    oca = file_ca.hierarchy.organisation_ca
    crl = build_crl(oca, file_ca.organisation_signer, ENTRIES, 42, NOW, LATER)
    assert crl.issuer == oca.subject
    assert crl.last_update_utc == NOW and crl.next_update_utc == LATER
    assert crl.is_signature_valid(oca.public_key())  # type: ignore[arg-type]
    assert [e.oid for e in crl.extensions] == [
        x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        x509.oid.ExtensionOID.CRL_NUMBER,
    ]
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _ski(oca) and aki.authority_cert_issuer is None
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 42
    assert all(not e.critical for e in crl.extensions)
    got = []
    for entry in crl:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            reason = None
        got.append((entry.serial_number, entry.revocation_date_utc, reason))
    assert got == [(s, d, REASONS.get(r or 0)) for s, d, r in ENTRIES]
    # Independent decode: v2, ecdsa-with-SHA256.
    asn1, _ = decoder.decode(crl.public_bytes(Encoding.DER), asn1Spec=rfc5280.CertificateList())
    assert int(asn1["tbsCertList"]["version"]) == 1
    assert str(asn1["signatureAlgorithm"]["algorithm"]) == "1.2.840.10045.4.3.2"


def test_openssl_verifies_crl_and_arl(file_ca: FileCA, tmp_path: Path) -> None:
    h = file_ca.hierarchy
    crl = build_crl(h.organisation_ca, file_ca.organisation_signer, ENTRIES, 1, NOW, LATER)
    arl = build_crl(
        h.root, file_ca.root_signer, [(h.device_ca.serial_number, NOW, 2)], 1, NOW, NOW + timedelta(days=30)
    )
    for name, lst, ca in (("crl", crl, "oca.pem"), ("arl", arl, "root.pem")):
        path = tmp_path / f"{name}.pem"
        path.write_bytes(lst.public_bytes(Encoding.PEM))
        result = openssl("crl", "-in", path, "-CAfile", file_ca.directory / ca, "-verify", "-noout")
        assert result.returncode == 0 and b"verify OK" in result.stdout + result.stderr, result.stderr
    # An ARL does not verify under the Organisation CA.
    wrong = openssl(
        "crl", "-in", tmp_path / "arl.pem", "-CAfile", file_ca.directory / "oca.pem", "-verify", "-noout"
    )
    assert b"verify OK" not in wrong.stdout + wrong.stderr


def test_crl_and_arl_lint_clean(file_ca: FileCA) -> None:
    h = file_ca.hierarchy
    crl = build_crl(h.organisation_ca, file_ca.organisation_signer, ENTRIES, 3, NOW, LATER)
    empty = build_crl(h.organisation_ca, file_ca.organisation_signer, [], 4, NOW, LATER)
    arl = build_crl(h.root, file_ca.root_signer, [], 1, NOW, NOW + timedelta(days=30))
    for lst, kind in ((crl, "CRL"), (empty, "CRL"), (arl, "ARL")):
        findings = crl_findings(lst.public_bytes(Encoding.DER), kind)
        assert [f for f in findings if f.severity <= Severity.ERROR] == []


@hsettings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, (1 << 159) - 1),
            st.datetimes(
                min_value=datetime(2000, 1, 1), max_value=datetime(2026, 3, 14), timezones=st.just(UTC)
            ),
            st.sampled_from([None, 0, *REASONS]),
        ),
        max_size=20,
        unique_by=lambda e: e[0],
    ),
    st.integers(0, (1 << 159) - 1),
)
def test_entries_round_trip(
    det_ca: DeterministicCA, entries: list[tuple[int, datetime, int | None]], number: int
) -> None:
    crl = build_crl(det_ca.organisation_ca, det_ca.organisation_signer, entries, number, NOW, LATER)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number
    back = {e.serial_number: e for e in crl}
    assert len(back) == len(entries)
    for serial, when, reason in entries:
        entry = back[serial]
        assert entry.revocation_date_utc == when.replace(microsecond=0)
        if reason in (None, 0):
            assert len(entry.extensions) == 0
        else:
            assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is REASONS[reason]


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"entries": [(5, NOW, None), (5, NOW, 1)]}, "ca.crl-duplicate"),
        ({"entries": [(5, NOW, 7)]}, "ca.bad-reason"),
        ({"entries": [(0, NOW, None)]}, "ca.bad-serial"),
        ({"number": -1}, "ca.bad-crl-number"),
        ({"number": 1 << 159}, "ca.bad-crl-number"),
        ({"next_update": NOW}, "ca.bad-crl-dates"),
        ({"this_update": datetime(2000, 1, 1, tzinfo=UTC), "next_update": LATER}, "ca.issuer-not-valid"),
    ],
)
def test_refusals(det_ca: DeterministicCA, kwargs: dict[str, object], code: str) -> None:
    args: dict[str, object] = {"entries": [], "number": 1, "this_update": NOW, "next_update": LATER}
    args.update(kwargs)
    with pytest.raises(SmkiError) as err:
        build_crl(det_ca.organisation_ca, det_ca.organisation_signer, **args)  # type: ignore[arg-type]
    assert err.value.code == code


def test_wrong_signer_is_refused(det_ca: DeterministicCA) -> None:
    with pytest.raises(SmkiError) as err:
        build_crl(det_ca.root, det_ca.organisation_signer, [], 1, NOW, LATER)
    assert err.value.code == "ca.wrong-signer"


@pytest.mark.slow
def test_hundred_thousand_entries_is_fast_and_linear(file_ca: FileCA) -> None:
    """Linear, judged as a ratio within one run (10,000 then 100,000 entries), so a loaded CI machine
    slows both alike; the wall-clock bound only catches a collapse (a quiet machine takes ~1.5 s)."""

    def timed(count: int) -> tuple[float, x509.CertificateRevocationList]:
        entries = [(random_serial(), NOW - timedelta(seconds=i), (None, 1, 4, 5)[i % 4]) for i in range(count)]
        started = time.perf_counter()
        crl = build_crl(file_ca.hierarchy.organisation_ca, file_ca.organisation_signer, entries, 9, NOW, LATER)
        return time.perf_counter() - started, crl

    small = min(timed(10_000)[0] for _ in range(2))
    elapsed, crl = timed(100_000)
    assert len(crl) == 100_000
    assert crl.is_signature_valid(file_ca.hierarchy.organisation_ca.public_key())  # type: ignore[arg-type]
    assert elapsed < 20 * small, f"100,000 entries took {elapsed / small:.1f} times 10,000 (linear: 10)"
    assert elapsed < 60.0, f"100,000-entry CRL took {elapsed:.2f} s"
