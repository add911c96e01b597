"""File key backend: each CA key is an encrypted PKCS#8 PEM file, mode 0600, under ``<home>/keys``.

A key file that others may read or write (any group or other permission bit) is refused
(``key.permissions``), as ssh refuses such a private key: encrypted or not, a copy is open to offline
guessing of the passphrase, and the file says nothing about who has taken one.

The passphrase is given to the backend by the caller (the CLI reads ``SMKI_KEY_PASSPHRASE`` or
prompts); it is held in memory only and never written anywhere. Files are created atomically with
O_EXCL so a crash never leaves a half-written key and an existing key is never overwritten.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from smki.keys.base import KeyBackendError

MIN_PASSPHRASE_LENGTH = 8
#: OpenSSL's PEM password buffer: a longer passphrase cannot encrypt a key file (cryptography refuses it).
MAX_PASSPHRASE_BYTES = 1023


class FileSigner:
    """A signer over a decrypted in-memory key; the key object never leaves this class."""

    def __init__(self, label: str, key: ec.EllipticCurvePrivateKey) -> None:
        self._label = label
        self._key = key
        self._algorithm = ec.ECDSA(Prehashed(hashes.SHA256()))

    @property
    def label(self) -> str:
        return self._label

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        """ECDSA with SHA-256 over ``data``, DER-encoded.

        The digest is taken with :mod:`hashlib` and signed as prehashed: the same signature, but
        letting OpenSSL hash costs a digest fetch per call (~3.5 µs, a sixth of a Device
        Certificate's signature; ``smki/bench/device_factory.py``).
        """
        return self._key.sign(hashlib.sha256(data).digest(), self._algorithm)

    def __repr__(self) -> str:  # never show key material, even by accident in a log
        return f"FileSigner(label={self._label!r})"


class FileKeyBackend:
    """Encrypted PKCS#8 files; see the module docstring."""

    name = "file"

    def __init__(self, directory: Path, passphrase: bytes) -> None:
        if len(passphrase) < MIN_PASSPHRASE_LENGTH:
            raise KeyBackendError(
                "key.passphrase-too-short",
                f"the key passphrase must be at least {MIN_PASSPHRASE_LENGTH} characters",
            )
        if len(passphrase) > MAX_PASSPHRASE_BYTES:
            raise KeyBackendError(
                "key.passphrase-too-long",
                f"the key passphrase must be at most {MAX_PASSPHRASE_BYTES} bytes (OpenSSL's limit for a key file's)",
            )
        self._directory = directory
        self._passphrase = passphrase

    def __repr__(self) -> str:
        return f"FileKeyBackend(directory={str(self._directory)!r})"

    def _path(self, label: str) -> Path:
        if not label or not all(c.isalnum() or c in "-_" for c in label):
            raise KeyBackendError("key.bad-label", f"key label {label!r} must be letters, digits, '-' or '_'")
        return self._directory / f"{label}.key.pem"

    def exists(self, label: str) -> bool:
        return self._path(label).exists()

    def generate(self, label: str) -> ec.EllipticCurvePublicKey:
        path = self._path(label)
        self._directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self._directory, 0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._passphrase),
        )
        tmp = path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise KeyBackendError("key.busy", f"{tmp} exists: another key ceremony is running?") from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)  # fails if the key exists: never overwrite a CA key
            except FileExistsError as exc:
                raise KeyBackendError("key.exists", f"a key labelled {label!r} already exists") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return key.public_key()

    def signer(self, label: str) -> FileSigner:
        path = self._path(label)
        try:
            with open(path, "rb") as handle:
                mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
                pem = handle.read()
        except FileNotFoundError as exc:
            raise KeyBackendError("key.missing", f"no key labelled {label!r} in {self._directory}") from exc
        if mode & 0o077:  # as ssh does: an encrypted key others can copy is open to offline guessing
            raise KeyBackendError("key.permissions", f"the key file {path} is accessible to others (mode "
                                  f"{mode:04o}): run 'chmod 600 {path}' (and check who may have copied it)")
        if b"-----BEGIN " not in pem or b"-----END " not in pem:  # no passphrase would open it
            raise KeyBackendError("key.corrupt", f"the key file {path} is not a PEM private key (empty, truncated "
                                  "or overwritten): restore it from a backup")
        kind = pem[pem.index(b"-----BEGIN ") + 11:].split(b"-----", 1)[0].decode("ascii", "replace")
        if not kind.endswith("PRIVATE KEY"):
            raise KeyBackendError("key.corrupt", f"the key file {path} holds a PEM {kind[:40]!r}, not a private "
                                  "key: restore it from a backup")
        try:
            key = serialization.load_pem_private_key(pem, password=self._passphrase)
        except TypeError as exc:  # "password was given but private key is not encrypted"
            raise KeyBackendError("key.unencrypted", f"the key file {path} is not encrypted: a CA key must be "
                                  "stored under the passphrase; restore it from a backup") from exc
        except ValueError as exc:
            raise self._undecryptable(label, path) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise KeyBackendError("key.wrong-type", f"key {label!r} is not a P-256 key")
        return FileSigner(label, key)

    def _undecryptable(self, label: str, path: Path) -> KeyBackendError:
        """A key that does not decrypt: a wrong passphrase, unless the same passphrase opens another
        CA key in this directory — then this file is damaged (or was encrypted under another
        passphrase), and "wrong passphrase?" would send the operator after the wrong fault."""
        for other in sorted(self._directory.glob("*.key.pem")):
            if other == path:
                continue
            try:
                serialization.load_pem_private_key(other.read_bytes(), password=self._passphrase)
            except (OSError, ValueError, TypeError):
                continue
            opened = other.name.removesuffix(".key.pem")
            return KeyBackendError("key.corrupt", f"cannot decrypt key {label!r} although the passphrase opens key "
                                   f"{opened!r}: the file {path} is damaged or under another passphrase; restore "
                                   "it from a backup")
        return KeyBackendError("key.locked", f"cannot decrypt key {label!r}: wrong passphrase?")
