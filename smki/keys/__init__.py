"""Key backends: the only code that touches CA private keys (file: encrypted PKCS#8; pkcs11: HSM)."""

from __future__ import annotations

from smki.config import Settings
from smki.errors import ConfigError
from smki.keys.base import KeyBackend, KeyBackendError, Signer

__all__ = ["KeyBackend", "KeyBackendError", "Signer", "open_backend"]


def open_backend(settings: Settings, secret: bytes) -> KeyBackend:
    """Open the configured backend. ``secret`` is the file passphrase or the token PIN."""
    if settings.key_backend == "file":
        from smki.keys.file import FileKeyBackend

        return FileKeyBackend(settings.keys_dir, secret)
    if settings.key_backend == "pkcs11":
        from smki.keys.pkcs11 import Pkcs11KeyBackend  # type: ignore[import-not-found,unused-ignore]

        session_keys = settings.pkcs11_session_keys
        if not isinstance(session_keys, bool):  # smki.toml values are not type-checked on reading
            raise ConfigError("config.invalid", "pkcs11-session-keys must be true or false")
        return Pkcs11KeyBackend(  # type: ignore[no-any-return,unused-ignore]
            settings.pkcs11_module, settings.pkcs11_token, secret, session_keys=session_keys
        )
    raise KeyBackendError("key.unknown-backend", f"unknown key backend {settings.key_backend!r}")
