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


def _single_read_ahead(home: Home, csr: bytes, ref: str, *, guess_right: bool) -> DeviceOutcome:
    """One CSR as the web services issue it: the Device's count, the issuer and the key register's
    answer read ahead together (``Store.single_device_reads``), the answers handed to the issuance;
    with ``guess_right`` False the read-ahead is for some other key, as if the guess missed."""
    from smki.ca.csr import peek_device_id
    from smki.ca.keyid import peek_key_fingerprint
    from smki.services.device_issuance import ReadAhead

    device, fingerprint = peek_device_id(csr), peek_key_fingerprint(csr)
    assert device is not None and fingerprint is not None
    reads = home.store.single_device_reads(device, fingerprint if guess_right else bytes(16))
    keys = {fingerprint if guess_right else bytes(16): reads.key_certified_as}
    outcomes: list[DeviceOutcome] = []
    issue_device_batch(home, [BatchItem(0, "i0", csr)], actor="test", batch_ref=ref, workers=0,
                       on_chunk=outcomes.extend, read_ahead=ReadAhead(reads.device_ca_der, keys))
    (outcome,) = outcomes
    return outcome


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.sampled_from(list(Usage)), st.booleans()),
                min_size=1, max_size=8))
def test_single_csrs_with_their_reads_ahead_refuse_a_certified_key_as_the_screen_does(
        home: Home, requests: list[tuple[int, int, Usage, bool]]) -> None:
    """The key register's answer read ahead with a single CSR's other reads decides as the screen's
    own look-up would: a key's first CSR is issued, by the Device CA certificate read ahead, and
    every later one refused ``csr.duplicate`` naming that certificate — also when the read-ahead
    was for some other key (the screen then reads the register itself)."""
    tag = datetime.now(UTC).strftime("%H%M%S%f")
    first: dict[int, str] = {}
    issuer = home.ca_certificate(CertKind.DEVICE_CA)
    for number, (key, device, usage, guess_right) in enumerate(requests):
        csr = make_device_csr(_device(device), usage, KEYS[key])
        taken = first.get(key) or next(iter(_known_serials(home, key)), None)  # an earlier example's
        outcome = _single_read_ahead(home, csr, f"r-{tag}-{number}", guess_right=guess_right)
        if taken is None:
            assert outcome.ok and outcome.der is not None, outcome
            x509.load_der_x509_certificate(outcome.der).verify_directly_issued_by(issuer)
            assert outcome.serial is not None
            first[key] = outcome.serial
        else:
            assert not outcome.ok and outcome.error_code == "csr.duplicate"
            assert taken in (outcome.error_message or "")
    points = _all_points(home)
    assert len(points) == len(set(points))


def _known_serials(home: Home, key: int) -> list[str]:
    """Serials already certified for ``KEYS[key]`` (an earlier example of the same test's home)."""
    from smki.ca.keyid import key_fingerprint
    from smki.store.certified_keys import certified_key_reads

    fingerprint = key_fingerprint(_point(KEYS[key]))
    return list(certified_key_reads(home.store).serials([fingerprint]).values())
