"""The key-backend interface: the only code that touches CA private keys implements it.

A backend generates a P-256 key pair under a label and hands out *signers*. A signer signs the
exact bytes it is given (a TBSCertificate or TBSCertList) with ECDSA over SHA-256 and returns the
DER ``ECDSA-Sig-Value``; it never exposes the private key. Certificates are therefore built as
TBS bytes first (see ``smki.ca.der``) and signed here, the same way for files and HSMs.
"""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from smki.errors import SmkiError


class KeyBackendError(SmkiError):
    """A key is missing, locked, or the backend failed (codes ``key.*``)."""


class Signer(Protocol):
    """Signs with one CA key. Safe to use from one thread; open one per worker process."""

    @property
    def label(self) -> str: ...

    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def sign(self, data: bytes) -> bytes:
        """ECDSA-with-SHA256 over ``data``; returns the DER-encoded ECDSA-Sig-Value."""
        ...


class KeyBackend(Protocol):
    """Where CA keys live. ``spec()`` describes how a worker process reopens the same backend."""

    name: str

    def generate(self, label: str) -> ec.EllipticCurvePublicKey:
        """Create a new P-256 key pair under ``label``; refuse if the label is taken."""
        ...

    def exists(self, label: str) -> bool: ...

    def signer(self, label: str) -> Signer: ...
