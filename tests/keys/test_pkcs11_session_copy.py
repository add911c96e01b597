"""Signing with per-session copies of the CA key (issue 7), against a real SoftHSM2 token.

Session objects belong to the application: every session this process opens sees them, and no
other process ever does. So the checks below look at the token through a raw python-pkcs11
session opened in this process, on the same loaded module.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11

from smki.config import Settings
from smki.errors import ConfigError
from smki.keys import open_backend
from smki.keys import pkcs11 as backend_module
from smki.keys.base import KeyBackendError
from smki.keys.pkcs11 import KEY_CHECK_SECONDS, Pkcs11KeyBackend, _find_token, _libraries, _links
from tests.keys.conftest import PIN, SoftHsm

pytestmark = pytest.mark.pkcs11

ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
FLAGS = (Attribute.TOKEN, Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.PRIVATE, Attribute.SIGN)


def fresh_label() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


def verifies(public: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public.verify(signature, data, ECDSA_SHA256)
    except Exception:
        return False
    return True


@contextmanager
def raw_session(softhsm: SoftHsm, *, login: bool) -> Iterator[Any]:
    """A session of our own on the module smki loaded; ``login`` when no backend holds the login."""
    lib = _libraries[softhsm.module].lib
    token = _find_token(lib, softhsm.token)
    session = token.open(user_pin=PIN) if login else token.open()
    try:
        yield session
    finally:
        session.close()  # with ``login``, the last session closing logs the token out


def private_keys(session: Any, label: str) -> list[dict[Attribute, Any]]:
    """Every private-key object labelled ``label`` this process can see, token and session ones."""
    found = session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})
    return [obj.get_attributes(list(FLAGS)) for obj in found]


def signing_keys(backend: Pkcs11KeyBackend, label: str) -> list[Any]:
    """What the backend's idle pooled sessions sign ``label`` with (white-box)."""
    link = backend._live
    return [pooled.signing_keys[label][0] for pooled in link._idle if label in pooled.signing_keys]


def session_copies(softhsm: SoftHsm, label: str) -> list[dict[Attribute, Any]]:
    with raw_session(softhsm, login=False) as session:  # the backend's login covers it
        return [flags for flags in private_keys(session, label) if not flags[Attribute.TOKEN]]


def test_signatures_made_with_the_session_copy_verify_with_the_tokens_public_key(softhsm: SoftHsm) -> None:
    with softhsm.backend() as backend:
        label = fresh_label()
        public = backend.generate(label)
        signer = backend.signer(label)
        messages = [f"tbs {i}".encode() * 9 for i in range(50)]
        signatures = [signer.sign(message) for message in messages]
        assert all(verifies(public, sig, msg) for sig, msg in zip(signatures, messages, strict=True))
        assert backend.public_key(label) == public

        (key,) = signing_keys(backend, label)  # one pooled session so far, signing with its copy
        assert key.get_attributes([Attribute.TOKEN])[Attribute.TOKEN] is False


def test_the_copy_is_a_sensitive_non_extractable_session_object(softhsm: SoftHsm) -> None:
    with softhsm.backend() as backend:
        label = fresh_label()
        backend.generate(label)
        backend.signer(label).sign(b"make the copy")
        with raw_session(softhsm, login=False) as session:
            seen = private_keys(session, label)
            (token_key,) = [flags for flags in seen if flags[Attribute.TOKEN]]
            copies = [flags for flags in seen if not flags[Attribute.TOKEN]]
            assert len(copies) == 1
            for flags in (token_key, *copies):
                assert flags[Attribute.SENSITIVE] is True and flags[Attribute.EXTRACTABLE] is False
                assert flags[Attribute.PRIVATE] is True and flags[Attribute.SIGN] is True
            copy = next(
                obj
                for obj in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})
                if not obj[Attribute.TOKEN]
            )
            with pytest.raises(p11.AttributeSensitive):
                copy[Attribute.VALUE]  # the copy cannot be read out either
        # The copies do not confuse lookups that expect one object per label.
        assert backend.exists(label)
        policy = backend.key_policy(label)
        assert policy.token and policy.sensitive and not policy.extractable
        with softhsm.backend() as second:
            assert verifies(second.public_key(label), second.signer(label).sign(b"two"), b"two")


def test_no_copy_outlives_the_backend(softhsm: SoftHsm) -> None:
    label = fresh_label()
    backend = softhsm.backend()
    public = backend.generate(label)
    signer = backend.signer(label)
    messages = [f"m{i}".encode() for i in range(200)]
    with ThreadPoolExecutor(max_workers=6) as pool:  # several pooled sessions, each with its copy
        signatures = list(pool.map(signer.sign, messages))
    assert all(verifies(public, sig, msg) for sig, msg in zip(signatures, messages, strict=True))
    assert len(session_copies(softhsm, label)) == len(signing_keys(backend, label)) >= 1
    backend.close()
    assert (softhsm.module, softhsm.token) not in _links  # the last backend out logged out
    with raw_session(softhsm, login=True) as session:
        (only,) = private_keys(session, label)
        assert only[Attribute.TOKEN] is True


def test_a_reset_login_drops_the_copies_and_signing_makes_new_ones(softhsm: SoftHsm) -> None:
    with softhsm.backend() as backend:
        label = fresh_label()
        public = backend.generate(label)
        signer = backend.signer(label)
        assert verifies(public, signer.sign(b"before"), b"before")
        (old,) = signing_keys(backend, label)
        link = backend._live
        pooled = link._idle[0]
        link.reset()  # what a token fault does: every session and the login go
        assert pooled.copies == [] and pooled.signing_keys == {} and pooled.keys == {}
        assert verifies(public, signer.sign(b"after"), b"after")  # logs in again, copies again
        (new,) = signing_keys(backend, label)
        assert new is not old
        assert len(session_copies(softhsm, label)) == 1  # the old session's copy is gone


def test_session_keys_off_signs_with_the_token_object(softhsm: SoftHsm) -> None:
    settings = Settings(
        key_backend="pkcs11",
        pkcs11_module=softhsm.module,
        pkcs11_token=softhsm.token,
        pkcs11_session_keys=False,
    )
    backend = open_backend(settings, PIN.encode())
    assert isinstance(backend, Pkcs11KeyBackend)
    try:
        label = fresh_label()
        public = backend.generate(label)
        signer = backend.signer(label)
        messages = [b"a", b"b", b"c", b"d"] * 10
        with ThreadPoolExecutor(max_workers=4) as pool:
            signatures = list(pool.map(signer.sign, messages))
        assert all(verifies(public, sig, msg) for sig, msg in zip(signatures, messages, strict=True))
        assert session_copies(softhsm, label) == []
        assert signing_keys(backend, label) == []
        link = backend._live
        for pooled in link._idle:
            if label in pooled.keys:
                assert pooled.keys[label][Attribute.TOKEN] is True
    finally:
        backend.close()


def test_session_keys_must_be_a_boolean(softhsm: SoftHsm) -> None:
    settings = Settings(
        key_backend="pkcs11",
        pkcs11_module=softhsm.module,
        pkcs11_token=softhsm.token,
        pkcs11_session_keys="no",  # type: ignore[arg-type]  # as smki.toml could spell it
    )
    with pytest.raises(ConfigError) as info:
        open_backend(settings, PIN.encode())
    assert info.value.code == "config.invalid"


def test_a_refused_copy_falls_back_to_the_token_object_and_says_so_once(
    softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[int] = []

    def refuse(self: Any, attrs: Any) -> Any:  # a real HSM: CKA_COPYABLE false
        attempts.append(1)
        raise p11.PKCS11Error("Unmapped error code 0x1b")  # CKR_ACTION_PROHIBITED

    monkeypatch.setattr("pkcs11._pkcs11.Object.copy", refuse)  # what every key object inherits
    caplog.set_level(logging.INFO, logger=backend_module.__name__)
    with softhsm.backend() as backend:
        label = fresh_label()
        public = backend.generate(label)
        signer = backend.signer(label)
        messages = [f"r{i}".encode() for i in range(100)]
        with ThreadPoolExecutor(max_workers=6) as pool:
            signatures = list(pool.map(signer.sign, messages))
        assert all(verifies(public, sig, msg) for sig, msg in zip(signatures, messages, strict=True))
        keys = signing_keys(backend, label)
        assert keys and all(key[Attribute.TOKEN] is True for key in keys)
        assert len(attempts) == len(keys)  # one try per session, not per signature
        assert session_copies(softhsm, label) == []
    refusals = [r for r in caplog.records if "not a session copy" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.INFO
    assert "PKCS11Error" in refusals[0].getMessage()


def test_a_copy_that_is_not_protected_is_destroyed_and_not_used(
    softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(backend_module, "_protected_session_copy", lambda flags: False)
    with softhsm.backend() as backend:
        label = fresh_label()
        public = backend.generate(label)
        assert verifies(public, backend.signer(label).sign(b"x"), b"x")
        (key,) = signing_keys(backend, label)
        assert key[Attribute.TOKEN] is True
        assert session_copies(softhsm, label) == []  # the copy it made was destroyed at once
    warned = [r for r in caplog.records if "not a sensitive session object" in r.getMessage()]
    assert warned and warned[0].levelno == logging.WARNING


@pytest.mark.parametrize(
    ("flags", "protected"),
    [
        ({Attribute.TOKEN: False, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}, True),
        ({Attribute.TOKEN: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}, False),
        ({Attribute.TOKEN: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: False}, False),
        ({Attribute.TOKEN: False, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True}, False),
        ({Attribute.TOKEN: False, Attribute.SENSITIVE: True}, False),
        ({}, False),
    ],
)
def test_only_a_sensitive_unextractable_session_object_is_signed_with(
    flags: dict[Attribute, Any], protected: bool
) -> None:
    assert backend_module._protected_session_copy(flags) is protected


DESTROY_PRIVATE = r"""
import sys
import pkcs11
from pkcs11 import Attribute, ObjectClass

module, token, pin, label = sys.argv[1:]
with pkcs11.lib(module).get_token(token_label=token).open(rw=True, user_pin=pin) as session:
    session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label).destroy()
"""


@pytest.mark.parametrize("session_keys", [True, False])
def test_a_key_destroyed_on_the_token_stops_signing(softhsm: SoftHsm, session_keys: bool) -> None:
    """With token objects at once; with session copies at the copy's next look at the token."""
    with Pkcs11KeyBackend(softhsm.module, softhsm.token, PIN.encode(), session_keys=session_keys) as backend:
        label = fresh_label()
        public = backend.generate(label)
        signer = backend.signer(label)
        assert verifies(public, signer.sign(b"before"), b"before")
        command = [sys.executable, "-c", DESTROY_PRIVATE, softhsm.module, softhsm.token, PIN, label]
        subprocess.run(command, check=True, timeout=60)  # another application deletes the key
        started = time.monotonic()
        signed = 0
        while True:
            try:
                assert verifies(public, signer.sign(b"meanwhile"), b"meanwhile")
            except KeyBackendError as exc:
                assert exc.code == "key.missing"
                break
            signed += 1
            assert time.monotonic() - started < KEY_CHECK_SECONDS + 5, "signing went on"
        if not session_keys:
            assert signed == 0
        with pytest.raises(KeyBackendError) as info:
            signer.sign(b"after")
        assert info.value.code == "key.missing"
