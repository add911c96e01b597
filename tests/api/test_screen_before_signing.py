"""Batches screen CSRs between checking and signing (issue 13 points 2 and 5): an ineligible Device's
CSR or a CSR whose key is already certified (or is an earlier CSR's of the batch) is refused before
anything is signed for it.

The screened path is checked against a model of the rules, CSR by CSR in batch order, and the
in-process path (``workers=0``) against the signing pool's (two worker passes per chunk, screened
in between, several chunks in flight): same outcome for every CSR. The invariants — no key
certified twice, no certificate for an ineligible Device, no signature for a refused CSR — hold
whatever the batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.ca.devcsr import make_device_csr
from smki.ca.device_template import DeviceCertificateFactory
from smki.ca.keyid import key_fingerprint
from smki.domain import SmiStatus, Usage
from smki.ra.rules import DEFAULT_ELIGIBILITY, Eligible
from smki.services.batch_sources import BatchItem
from smki.services.context import Home
from smki.services.device_issuance import DeviceOutcome, SigningPool, issue_device_batch
from smki.services.device_register import put_device
from smki.services.eligibility import eligibility_screen
from smki.store import CertificateQuery
from smki.store.certified_keys import certified_key_reads
from tests.api.conftest import OTHER_PARTY, PARTY

STATUSES = ["unknown", *(s.value for s in SmiStatus)]
_runs = itertools.count()

#: One CSR of a plan: None is junk; else (key: one of 3 shared keys or None for a fresh one,
#: Device 0-4, usage).
_step = st.one_of(st.none(), st.tuples(st.one_of(st.none(), st.integers(0, 2)), st.integers(0, 4),
                                       st.sampled_from(list(Usage))))


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def _eligible(status: str, supplier: str | None) -> bool:
    allowed = DEFAULT_ELIGIBILITY[status]
    return Eligible.ANY in allowed or (Eligible.SUPPLIER in allowed and supplier == PARTY)


@pytest.fixture
def pool(home: Home) -> Iterator[SigningPool]:
    with SigningPool.for_home(home, workers=1) as made:
        yield made


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(_step, min_size=1, max_size=9),
       register=st.lists(st.tuples(st.sampled_from(STATUSES), st.sampled_from([PARTY, OTHER_PARTY, None])),
                         min_size=5, max_size=5),
       chunk=st.integers(1, 3))
def test_the_screened_paths_agree_with_the_rules_csr_by_csr(home: Home, pool: SigningPool,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            plan: list[tuple[int | None, int, Usage] | None],
                                                            register: list[tuple[str, str | None]],
                                                            chunk: int) -> None:
    run = next(_runs)
    signatures = [0]
    certificate = DeviceCertificateFactory.certificate  # what signs, for ``sign`` and batches alike

    def counted(self: DeviceCertificateFactory, tbs: bytes) -> bytes:
        signatures[0] += 1
        return certificate(self, tbs)

    monkeypatch.setattr(DeviceCertificateFactory, "certificate", counted)
    seen: dict[str, list[tuple[bool, str | None]]] = {}
    for path in ("in-process", "pool"):
        base = 0x00DB5C0000000000 + (run * 2 + (path == "pool")) * 16
        devices = [(base + n).to_bytes(8, "big") for n in range(5)]
        for device, (status, supplier) in zip(devices, register, strict=True):
            if status != "unknown":
                put_device(home, {"device_id": device.hex(), "device_type": "ESME", "smi_status": status,
                                  "import_supplier": supplier}, actor="test")
        keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
        items, fingerprints = [], []
        for index, step in enumerate(plan):
            if step is None:
                items.append(BatchItem(index, f"c{index}", b"junk"))
                fingerprints.append(None)
                continue
            key = keys[step[0]] if step[0] is not None else ec.generate_private_key(ec.SECP256R1())
            items.append(BatchItem(index, f"c{index}", make_device_csr(devices[step[1]], step[2], key)))
            fingerprints.append(key_fingerprint(_point(key.public_key())))
        known = set(certified_key_reads(home.store).serials([f for f in fingerprints if f is not None]))
        # The model: junk is refused by the CSR checks; then eligibility; then duplicate keys.
        expected: list[tuple[bool, str | None]] = []
        for step, fingerprint in zip(plan, fingerprints, strict=True):
            if step is None or fingerprint is None:
                expected.append((False, "csr"))
            elif not _eligible(*register[step[1]]):
                expected.append((False, "ra.ineligible"))
            elif fingerprint in known:
                expected.append((False, "csr.duplicate"))
            else:
                known.add(fingerprint)
                expected.append((True, None))
        outcomes: list[DeviceOutcome] = []
        signatures[0] = 0
        issue_device_batch(home, items, actor="test", batch_ref=f"screen-{run}-{path}", chunk_size=chunk,
                           on_chunk=outcomes.extend, screen=eligibility_screen(home, PARTY),
                           **({"workers": 0} if path == "in-process" else {"pool": pool}))
        outcomes.sort(key=lambda o: o.index)
        got = [(o.ok, o.error_code if o.error_code is None or not o.error_code.startswith("csr.")
                or o.error_code == "csr.duplicate" else "csr") for o in outcomes]
        assert got == expected, path
        if path == "in-process":  # the workers' signatures are in their own processes
            assert signatures[0] == sum(ok for ok, _ in got)
        seen[path] = got
        for outcome in outcomes:
            if outcome.ok:
                assert outcome.device_id is not None
                status, supplier = register[devices.index(outcome.device_id)]
                assert _eligible(status, supplier)
            else:
                assert outcome.serial is None and outcome.der is None
    assert seen["in-process"] == seen["pool"]
    # No key certified twice, by any path, ever.
    points = [_point(x509.load_der_x509_certificate(r.der).public_key())  # type: ignore[arg-type]
              for r in home.store.find_certificates(CertificateQuery(limit=1000))]
    assert len(points) == len(set(points))
