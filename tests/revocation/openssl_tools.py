"""``openssl`` checks shared by the revocation tests (the independent verifier)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding


def crl_pem(der: bytes, path: Path) -> Path:
    path.write_bytes(x509.load_der_x509_crl(der).public_bytes(Encoding.PEM))
    return path


def cert_pem(der: bytes, path: Path) -> Path:
    path.write_bytes(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM))
    return path


def openssl_crl_verify(crl: Path, issuer: Path) -> subprocess.CompletedProcess[str]:
    """``openssl crl -verify``: the list's signature checks against ``issuer``."""
    return subprocess.run(["openssl", "crl", "-in", str(crl), "-CAfile", str(issuer), "-verify", "-noout"],
                          capture_output=True, text=True)


def openssl_verify_with_crl(root: Path, intermediate: Path, crl: Path, leaf: Path) -> subprocess.CompletedProcess[str]:
    """``openssl verify -crl_check``: the leaf's chain, and the leaf against the CRL."""
    return subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(root), "-untrusted", str(intermediate),
                           "-CRLfile", str(crl), str(leaf)], capture_output=True, text=True)


def openssl_verify_with_arl(root: Path, crl: Path, ca: Path) -> subprocess.CompletedProcess[str]:
    """``openssl verify -crl_check`` of a CA certificate directly under the Root, against the ARL."""
    return subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(root), "-CRLfile", str(crl), str(ca)],
                          capture_output=True, text=True)
