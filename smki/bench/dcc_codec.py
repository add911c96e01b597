"""Measure the batch codecs at the SEC's maximum: ``smki bench codec``.

Why it exists: a ``SubmitCSRBatch`` of 50,000 CSRs is ~20-30 MB and a ``CSRBatchResult`` of
50,000 certificates is larger; the figures in ``docs/dcc-web-services.md`` come from this command,
so they can be re-measured on any machine. It uses real P-256 CSRs and certificates (a few
distinct ones, cycled: the codec's cost does not depend on which CSR it carries).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import gc
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

from smki.interfaces.dcc.codec import (
    MAX_BATCH_CSRS,
    BatchStatus,
    DeviceCertificate,
    DeviceStatus,
    iter_csr_batch_result,
    parse_submit_csr_batch,
)

_T = TypeVar("_T")
_HW_MODULE_NAME = ObjectIdentifier("1.3.6.1.5.5.7.8.4")
_HW_TYPE = bytes.fromhex("060d2a863a0001848fb90f01020201")


def _csr(n: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    body = _HW_TYPE + b"\x04\x08" + bytes([0, 0xDB, 0x12, 0x34, 0x56, 0x78, 0x90, n])
    san = x509.SubjectAlternativeName([x509.OtherName(_HW_MODULE_NAME, b"\x30" + bytes([len(body)]) + body)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).add_extension(san, critical=True)
    return csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "E357")])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def batch_body(count: int) -> bytes:
    """A ``SubmitCSRBatch`` of ``count`` real CSRs with 12-character IDs."""
    csrs = [base64.b64encode(_csr(n)).decode() for n in range(8)]
    entries = "".join(f'<DeviceCSR ID="CSR-{n:08d}">{csrs[n % 8]}</DeviceCSR>' for n in range(count))
    return f'<SubmitCSRBatch ID="bench"><Version>1.0</Version>{entries}</SubmitCSRBatch>'.encode()


def _measure(func: Callable[[], _T]) -> tuple[_T, float, int]:
    """(result, best-of-3 seconds, traced peak bytes of one more run)."""
    best = float("inf")
    result: _T | None = None
    for _ in range(3):
        gc.collect()
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
        del result
    gc.collect()
    tracemalloc.start()
    result = func()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, best, peak


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=MAX_BATCH_CSRS)
    args = parser.parse_args(argv)
    count: int = args.count

    body = batch_body(count)
    batch, seconds, peak = _measure(lambda: parse_submit_csr_batch(body))
    der_bytes = sum(len(csr.csr_der) for csr in batch.csrs)
    print(f"SubmitCSRBatch parse: {count} CSRs, body {len(body) / 1e6:.1f} MB")
    print(f"  time {seconds:.2f} s ({count / seconds:,.0f} CSRs/s, {len(body) / seconds / 1e6:.0f} MB/s)")
    print(f"  peak traced memory {peak / 1e6:.1f} MB (of which the parsed CSRs' DER {der_bytes / 1e6:.1f} MB)")

    from xml.etree import ElementTree  # comparison only: it holds the whole tree

    _, seconds, peak = _measure(lambda: ElementTree.fromstring(body))
    print(f"  for comparison, xml.etree tree of the same body: {seconds:.2f} s, peak {peak / 1e6:.1f} MB")

    cert = _certificate()

    def entries() -> Iterator[DeviceCertificate]:
        for n in range(count):
            yield DeviceCertificate(f"CSR-{n:08d}", DeviceStatus.SUCCESS, cert)

    def stream() -> tuple[int, int]:
        total = chunks = 0
        for chunk in iter_csr_batch_result(BatchStatus.COMPLETED, entries()):
            total += len(chunk)
            chunks += 1
        return total, chunks

    (total, chunks), seconds, peak = _measure(stream)
    print(f"CSRBatchResult render (streamed): {count} certificates, {total / 1e6:.1f} MB in {chunks} chunks")
    print(f"  time {seconds:.2f} s ({count / seconds:,.0f} entries/s); peak traced memory {peak / 1e6:.2f} MB")


if __name__ == "__main__":  # pragma: no cover
    main()
