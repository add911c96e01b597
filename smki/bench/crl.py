"""CRL generation time for N revoked entries, signed by the Organisation CA (file key backend).

smki bench crl [--entries 100000]
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

from cryptography.hazmat.primitives.serialization import Encoding

from smki.bench.hierarchy import throwaway_ca
from smki.ca.crl import build_crl
from smki.ca.hierarchy import ORGANISATION_CA_LABEL
from smki.ca.profiles import random_serial


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args(argv)
    with throwaway_ca() as ca:
        now = ca.now
        signer = ca.backend.signer(ORGANISATION_CA_LABEL)
        reasons = (None, 1, 4, 5)
        entries = [(random_serial(), now - timedelta(seconds=i), reasons[i % 4]) for i in range(args.entries)]
        started = time.perf_counter()
        crl = build_crl(ca.hierarchy.organisation_ca, signer, entries, 1, now, now + timedelta(hours=24))
        elapsed = time.perf_counter() - started
        size = len(crl.public_bytes(Encoding.DER))
        print(f"CRL with {args.entries} entries: {elapsed:.3f} s, {size:,} bytes DER")


if __name__ == "__main__":
    main()
