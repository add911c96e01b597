"""The PKCS#11 backend's pure parts: raw-to-DER signatures, error codes, labels (no token needed)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given
from hypothesis import strategies as st
from pkcs11 import exceptions as p11

from smki.keys.base import KeyBackendError
from smki.keys.file import FileKeyBackend
from smki.keys.pkcs11 import check_label, der_signature, translate

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
SCALARS = st.integers(min_value=1, max_value=P256_ORDER - 1)
PKCS11_ERRORS = sorted(
    (cls for _, cls in inspect.getmembers(p11, inspect.isclass) if issubclass(cls, p11.PKCS11Error)),
    key=lambda cls: cls.__name__,
)


@given(SCALARS, SCALARS)
def test_raw_r_s_becomes_the_der_ecdsa_sig_value_of_the_same_integers(r: int, s: int) -> None:
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    der = der_signature(raw)
    assert decode_dss_signature(der) == (r, s)
    assert der[0] == 0x30 and der[1] == len(der) - 2  # one short-form DER SEQUENCE, nothing after


def test_a_raw_signature_verifies_once_converted() -> None:
    # What the token does, done in software: sign, split DER into r || s, convert back.
    key = ec.generate_private_key(ec.SECP256R1())
    r, s = decode_dss_signature(key.sign(b"tbs", ec.ECDSA(hashes.SHA256())))
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    key.public_key().verify(der_signature(raw), b"tbs", ec.ECDSA(hashes.SHA256()))


@given(st.binary(max_size=200).filter(lambda raw: len(raw) != 64))
def test_a_raw_signature_of_the_wrong_length_is_a_coded_error(raw: bytes) -> None:
    with pytest.raises(KeyBackendError) as info:
        der_signature(raw)
    assert info.value.code == "key.token-failed"


@pytest.mark.parametrize("error", PKCS11_ERRORS, ids=lambda cls: cls.__name__)
def test_every_pkcs11_exception_maps_to_a_key_code(error: type[p11.PKCS11Error]) -> None:
    translated = translate(error("detail from the module, never shown"), "signing with key 'root'")
    assert isinstance(translated, KeyBackendError)
    assert translated.code.startswith("key.")
    assert translated.message.startswith("signing with key 'root': ")
    assert "never shown" not in translated.message and "\n" not in translated.message


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (p11.PinIncorrect, "key.locked"),
        (p11.PinLocked, "key.locked"),
        (p11.PinLenRange, "key.locked"),
        (p11.NoSuchToken, "key.token-failed"),
        (p11.DeviceRemoved, "key.token-failed"),
        (p11.TokenNotPresent, "key.token-failed"),
        (p11.SessionHandleInvalid, "key.token-failed"),
        (p11.GeneralError, "key.token-failed"),
        (p11.PKCS11Error, "key.token-failed"),
        (p11.ObjectHandleInvalid, "key.missing"),
        (p11.MechanismInvalid, "key.unsupported"),
    ],
)
def test_codes_users_act_on(error: type[p11.PKCS11Error], code: str) -> None:
    assert translate(error(), "x").code == code


def test_a_token_absent_at_open_is_a_configuration_error_not_a_failure() -> None:
    assert translate(p11.NoSuchToken(), "x", no_token="key.token-not-found").code == "key.token-not-found"


FILE_BACKEND = FileKeyBackend(Path("/nonexistent-smki-keys"), b"a long enough passphrase")


@given(st.text(max_size=20))
def test_labels_follow_the_file_backends_rule(label: str) -> None:
    """A deployment can move between backends: both accept and refuse the same labels."""
    try:
        FILE_BACKEND.exists(label)
        file_ok = True
    except KeyBackendError:
        file_ok = False
    try:
        check_label(label)
        pkcs11_ok = True
    except KeyBackendError as exc:
        assert exc.code == "key.bad-label"
        pkcs11_ok = False
    assert pkcs11_ok == file_ok
