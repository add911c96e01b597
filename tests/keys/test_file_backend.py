"""The file key backend: encrypted, 0600, never overwritten, useless without the passphrase."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from smki.keys.base import KeyBackendError
from smki.keys.file import FileKeyBackend

PASS = b"correct horse battery"


def test_generated_key_signs_verifiably_and_is_stored_encrypted(tmp_path: Path) -> None:
    backend = FileKeyBackend(tmp_path / "keys", PASS)
    public = backend.generate("device-ca")
    signature = backend.signer("device-ca").sign(b"tbs bytes")
    public.verify(signature, b"tbs bytes", ec.ECDSA(hashes.SHA256()))
    path = tmp_path / "keys" / "device-ca.key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in text
    assert PASS not in text


def test_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    backend = FileKeyBackend(tmp_path, PASS)
    first = backend.generate("root")
    with pytest.raises(KeyBackendError) as info:
        backend.generate("root")
    assert info.value.code == "key.exists"
    assert backend.signer("root").public_key() == first


def test_wrong_passphrase_is_a_coded_error(tmp_path: Path) -> None:
    FileKeyBackend(tmp_path, PASS).generate("root")
    with pytest.raises(KeyBackendError) as info:
        FileKeyBackend(tmp_path, b"not the passphrase").signer("root")
    assert info.value.code == "key.locked"


@pytest.mark.parametrize(("label", "code"), [("../escape", "key.bad-label"), ("missing", "key.missing")])
def test_bad_or_missing_labels(tmp_path: Path, label: str, code: str) -> None:
    with pytest.raises(KeyBackendError) as info:
        FileKeyBackend(tmp_path, PASS).signer(label)
    assert info.value.code == code


def test_short_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyBackendError) as info:
        FileKeyBackend(tmp_path, b"short")
    assert info.value.code == "key.passphrase-too-short"


def test_repr_shows_no_key_material(tmp_path: Path) -> None:
    backend = FileKeyBackend(tmp_path, PASS)
    backend.generate("root")
    assert PASS.decode() not in repr(backend)
    assert "PRIVATE" not in repr(backend.signer("root"))
