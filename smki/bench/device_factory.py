"""Device Certificate issuance rate on ONE core, including the ECDSA signature (file key backend).

    smki bench device-factory [--count 50000] [--slow 2000]

Keys for the requests are generated beforehand (a pool, reused round-robin): key generation is the
device's work, not the CA's. The process is pinned to one CPU where the OS allows it. Prints the
fast factory's rate and, for comparison, the ``build_device`` (CertificateBuilder) rate.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from smki.bench.hierarchy import throwaway_ca
from smki.ca.device_template import DeviceCertificateFactory
from smki.ca.hierarchy import DEVICE_CA_LABEL
from smki.ca.profiles import build_device
from smki.ca.requests import DeviceRequest
from smki.domain import Usage


def _requests(pool: int) -> list[DeviceRequest]:
    out = []
    for i in range(pool):
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        out.append(
            DeviceRequest(
                (0x00DB000000000000 + i).to_bytes(8, "big"),
                Usage.DS if i % 2 else Usage.KA,
                key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
                key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint),
            )
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=50_000, help="certificates from the fast factory")
    parser.add_argument("--slow", type=int, default=2_000, help="certificates from build_device (0: skip)")
    parser.add_argument("--pool", type=int, default=1_000, help="distinct request keys")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with throwaway_ca() as ca:
        settings, hierarchy = ca.settings, ca.hierarchy
        signer = ca.backend.signer(DEVICE_CA_LABEL)
        requests = _requests(args.pool)
        factory = DeviceCertificateFactory(hierarchy.device_ca, signer, settings)
        started = time.perf_counter()
        size = 0
        for i in range(args.count):
            size += len(factory.issue(requests[i % args.pool], datetime.now(UTC)).der)
        elapsed = time.perf_counter() - started
        print(
            f"fast factory: {args.count} certs in {elapsed:.3f} s = {args.count / elapsed:,.0f} certs/s "
            f"on one core (mean {size / args.count:.0f} bytes DER)"
        )
        if args.slow:
            started = time.perf_counter()
            for i in range(args.slow):
                build_device(
                    requests[i % args.pool], hierarchy.device_ca, signer, settings, datetime.now(UTC)
                )
            elapsed = time.perf_counter() - started
            print(f"build_device: {args.slow} certs in {elapsed:.3f} s = {args.slow / elapsed:,.0f} certs/s")


if __name__ == "__main__":
    main()
