"""A CA key file an operator damaged, replaced or left readable: one line naming what is wrong.

An unattended service refuses to start (and a signing command to sign) with ``error: <code>:
<message>`` and exit status 1. Before these tests, several distinct faults all read "wrong
passphrase?", which sends an operator after the wrong problem (keys-qa).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.cli.conftest import Run
from tests.cli.helpers import Result


def _one_line(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


def _issue(run: Run, tmp_path: Path) -> Result:
    csr = tmp_path / "d.csr"
    if not csr.exists():
        assert run("dev", "make-csr", "device", "--device-id", "00DB000000000001", "--out", str(csr)).code == 0
    return run("issue", "device", str(csr), "--out", str(tmp_path / "out"))


def _key(run: Run, label: str = "device-ca") -> Path:
    return run.home / "keys" / f"{label}.key.pem"


def _refused(run: Run, tmp_path: Path, code: str) -> str:
    result = _issue(run, tmp_path)
    line = _one_line(result)
    assert result.code == 1 and line.startswith(f"error: {code}: "), result.err
    assert not (tmp_path / "out").exists()
    return line


def test_an_unencrypted_key_file_is_refused_as_such_not_as_a_wrong_passphrase(run: Run, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    _key(run).write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    line = _refused(run, tmp_path, "key.unencrypted")
    assert "device-ca" in line and "passphrase?" not in line


def test_a_certificate_in_place_of_the_key_is_not_a_private_key(run: Run, tmp_path: Path) -> None:
    _key(run).write_bytes((run.home / "device-ca.pem").read_bytes())
    line = _refused(run, tmp_path, "key.corrupt")
    assert "CERTIFICATE" in line


def test_a_damaged_key_the_passphrase_opened_before_is_corrupt_not_locked(run: Run, tmp_path: Path) -> None:
    path = _key(run)
    text = bytearray(path.read_bytes())
    body = text.index(b"\n") + 150  # inside the base64 of the ciphertext
    text[body] = ord("A") if text[body] != ord("A") else ord("B")
    path.write_bytes(bytes(text))
    line = _refused(run, tmp_path, "key.corrupt")
    assert "device-ca" in line


def test_a_wrong_passphrase_is_still_key_locked(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMKI_KEY_PASSPHRASE", "not-the-passphrase")
    _refused(run, tmp_path, "key.locked")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_key_file_others_can_read_or_write_is_refused(run: Run, tmp_path: Path, mode: int) -> None:
    os.chmod(_key(run), mode)
    line = _refused(run, tmp_path, "key.permissions")
    assert str(_key(run)) in line and "chmod 600" in line


def test_a_passphrase_that_is_not_utf8_is_a_coded_refusal_not_an_internal_error(
        run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMKI_KEY_PASSPHRASE", os.fsdecode(b"\xff\xfe-not-utf-8-passphrase"))
    _refused(run, tmp_path, "key.locked")


@pytest.mark.parametrize("fault", ["passphrase", "mismatch"])
def test_a_batch_refused_for_its_key_leaves_no_audit_record_of_a_batch(
        run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    """A key that cannot sign is found before the batch is named in the audit log: no
    ``batch.started``/``batch.failed`` pair for a batch that never could start."""
    from smki.store import Store

    if fault == "passphrase":
        monkeypatch.setenv("SMKI_KEY_PASSPHRASE", "not-the-passphrase")
    else:
        _key(run).write_bytes(_key(run, "organisation-ca").read_bytes())
    store = Store.open(os.environ["SMKI_DATABASE_URL"])
    try:
        before = len(list(store.audit_rows()))
        _refused(run, tmp_path, "key.locked" if fault == "passphrase" else "key.mismatch")
        actions = [row.action for row in store.audit_rows()][before:]
    finally:
        store.close()
    assert actions == [], actions
