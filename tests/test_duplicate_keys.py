"""Duplicate keys (issue 13 point 5): smki certifies a public key once, by any path (csr.duplicate → CR:9999).

Real issuance through the services into a migrated store; what was issued is parsed to check keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.ca.devcsr import make_device_csr, make_organisation_csr
from smki.domain import CertKind, RemotePartyRole, Usage
from smki.errors import SmkiError
from smki.interfaces.dcc.codec import Service, dcc_error_for
from smki.services.batch_sources import BatchItem
from smki.services.context import Home
from smki.services.device_issuance import DeviceOutcome, issue_device_batch
from smki.services.org_issuance import issue_organisation
from smki.store import CertificateQuery
from tests.conftest import ca_home

SECRET = b"duplicate-keys-test-passphrase"
KEYS = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]
ENTITY = bytes.fromhex("90b3d51f30010000")


@pytest.fixture
def home(tmp_path: Path, database_url: str) -> Iterator[Home]:
    with ca_home(tmp_path, database_url, SECRET) as opened:
        yield opened


def _batch(home: Home, csrs: list[bytes], ref: str) -> list[DeviceOutcome]:
    outcomes: list[DeviceOutcome] = []
    items = [BatchItem(i, f"i{i}", der) for i, der in enumerate(csrs)]
    issue_device_batch(home, items, actor="test", batch_ref=ref, workers=0, on_chunk=outcomes.extend)
    return sorted(outcomes, key=lambda o: o.index)


def _device(n: int) -> bytes:
    return (0x00DB123400000000 + n).to_bytes(8, "big")


def _point(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def _all_points(home: Home) -> list[bytes]:
    records = home.store.find_certificates(CertificateQuery(limit=1000))
    return [_point(x509.load_der_x509_certificate(r.der).public_key()) for r in records]  # type: ignore[arg-type]


def test_the_same_device_csr_sent_three_times_gets_one_certificate(home: Home) -> None:
    csr = make_device_csr(_device(1), Usage.DS, KEYS[0])
    results = [_batch(home, [csr], f"again-{n}")[0] for n in range(3)]
    assert results[0].ok
    for refused in results[1:]:
        assert not refused.ok and refused.error_code == "csr.duplicate"
        assert results[0].serial in (refused.error_message or "")
    assert len(home.store.certificates_for_device(_device(1))) == 1


def test_one_key_for_two_devices_or_usages_is_refused_also_within_one_batch(home: Home) -> None:
    first = _batch(home, [make_device_csr(_device(2), Usage.DS, KEYS[1])], "x")
    assert first[0].ok
    other_device = _batch(home, [make_device_csr(_device(3), Usage.KA, KEYS[1])], "y")
    assert other_device[0].error_code == "csr.duplicate"
    # In one batch: the first CSR with a key is issued, the later one refused; other CSRs unaffected.
    mixed = _batch(home, [make_device_csr(_device(4), Usage.DS, KEYS[2]), make_device_csr(_device(5), Usage.KA),
                          make_device_csr(_device(4), Usage.KA, KEYS[2])], "z")
    assert [o.ok for o in mixed] == [True, True, False] and mixed[2].error_code == "csr.duplicate"
    assert "earlier CSR of this batch" in (mixed[2].error_message or "")
    points = _all_points(home)
    assert len(points) == len(set(points))
    # The DCC's answer for it.
    outcome = dcc_error_for(Service.BATCH, "csr.duplicate", mixed[2].error_message or "")
    assert outcome.error.code == "CR:9999"


def test_an_organisation_csr_sent_twice_gets_one_certificate(home: Home) -> None:
    csr = make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS, key=KEYS[0])
    issued = issue_organisation(home, csr, actor="test")
    with pytest.raises(SmkiError) as caught:
        issue_organisation(home, csr, actor="test")
    assert caught.value.code == "csr.duplicate" and issued.serial in caught.value.message
    # Nor may that key become a Device's, nor a Device key an Organisation's.
    device = _batch(home, [make_device_csr(_device(6), Usage.DS, KEYS[0])], "org-key")
    assert device[0].error_code == "csr.duplicate"
    assert _batch(home, [make_device_csr(_device(7), Usage.DS, KEYS[3])], "dev-key")[0].ok
    with pytest.raises(SmkiError) as caught:
        issue_organisation(home, make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS, key=KEYS[3]),
                           actor="test")
    assert caught.value.code == "csr.duplicate"


def test_an_expired_organisation_certificate_is_reissued_for_the_same_key_and_subject(home: Home) -> None:
    """Spec §7.6: the DCC re-issues expired Organisation Certificates for the same keys."""
    csr = make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.KA, key=KEYS[1])
    first = issue_organisation(home, csr, actor="test")
    later = first.certificate.not_valid_after_utc + timedelta(days=1)
    # Expiry is by date: past notAfter, the same CSR is re-issued ...
    cap = home.ca_certificate(CertKind.ORGANISATION_CA).not_valid_after_utc
    assert later < cap
    second = issue_organisation(home, csr, actor="test", now=later)
    assert second.serial != first.serial
    assert _point(second.certificate.public_key()) == _point(KEYS[1])  # type: ignore[arg-type]
    # ... but never for another subject or usage with that key,
    for role, usage in ((RemotePartyRole.OTHER, Usage.KA), (RemotePartyRole.SUPPLIER, Usage.DS)):
        with pytest.raises(SmkiError) as caught:
            issue_organisation(home, make_organisation_csr(ENTITY, role, usage, key=KEYS[1]), actor="test",
                               now=later + timedelta(days=1))
        assert caught.value.code == "csr.duplicate"
    # ... and not while the newest certificate for it is still valid.
    with pytest.raises(SmkiError):
        issue_organisation(home, csr, actor="test", now=later + timedelta(days=2))


def test_reissue_for_the_same_key_can_be_switched_off(home: Home) -> None:
    csr = make_organisation_csr(ENTITY, RemotePartyRole.SUPPLIER, Usage.DS, key=KEYS[2])
    first = issue_organisation(home, csr, actor="test")
    strict = replace(home, settings=replace(home.settings, reissue_organisation_same_key=False))
    with pytest.raises(SmkiError) as caught:
        issue_organisation(strict, csr, actor="test", now=first.certificate.not_valid_after_utc + timedelta(days=1))
    assert caught.value.code == "csr.duplicate"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.sampled_from(list(Usage))),
                         min_size=1, max_size=6), min_size=1, max_size=3))
def test_invariant_no_key_is_certified_twice(home: Home, batches: list[list[tuple[int, int, Usage]]]) -> None:
    """Whatever batches of CSRs drawn from a few keys and Devices arrive, every certificate in the
    store has its own key, and each key drawn got exactly one certificate."""
    tag = datetime.now(UTC).strftime("%H%M%S%f")
    for number, batch in enumerate(batches):
        _batch(home, [make_device_csr(_device(device), usage, KEYS[key]) for key, device, usage in batch],
               f"h-{tag}-{number}")
    points = _all_points(home)
    assert len(points) == len(set(points))
