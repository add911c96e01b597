"""Key backends: the only code that touches CA private keys (file: encrypted PKCS#8; pkcs11: HSM)."""

from __future__ import annotations

from smki.config import Settings
from smki.keys.base import KeyBackend, KeyBackendError, Signer

__all__ = ["KeyBackend", "KeyBackendError", "Signer", "open_backend"]


def open_backend(settings: Settings, secret: bytes) -> KeyBackend:
    """Open the configured backend. ``secret`` is the file passphrase or the token PIN."""
    if settings.key_backend == "file":
        from smki.keys.file import FileKeyBackend

        return FileKeyBackend(settings.keys_dir, secret)
    if settings.key_backend == "pkcs11":
        from smki.keys.pkcs11 import Pkcs11KeyBackend  # type: ignore[import-not-found,unused-ignore]

        return Pkcs11KeyBackend(settings.pkcs11_module, settings.pkcs11_token, secret)  # type: ignore[no-any-return,unused-ignore]
    raise KeyBackendError("key.unknown-backend", f"unknown key backend {settings.key_backend!r}")
