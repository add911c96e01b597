"""``p256_signature_valid`` through the system's libcrypto answers exactly as ``cryptography`` does.

The batch's proof-of-possession check takes the libcrypto path when the process can load it
(``smki/ca/p256_verify.py``). These tests give both paths the same input — valid signatures, and
signatures, points and digests broken in the ways an attacker or a faulty device would break them —
and require the same answer; they also check that threads verifying at once each get their own
answer, that the setting ``csr-signature-check`` chooses the code, and that a missing or old
libcrypto leaves cryptography to answer.
"""

from __future__ import annotations

import hashlib
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from smki.ca import p256_verify
from smki.ca.p256_verify import p256_signature_valid, p256_signature_valid_cryptography
from tests.conftest import ca_home

#: The order of P-256's group and its field prime.
ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
PRIME = 2**256 - 2**224 + 2**192 + 2**96 - 1
PREHASHED = ec.ECDSA(Prehashed(hashes.SHA256()))
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_LIBCRYPTO = p256_verify._load_libcrypto()
#: The libcrypto path itself, whatever this process has chosen.
libcrypto_valid = None if _LIBCRYPTO is None else p256_verify._with_libcrypto(_LIBCRYPTO)
libcrypto_only = pytest.mark.skipif(libcrypto_valid is None,
                                    reason="the system's OpenSSL 3 libcrypto is not loadable here")


def _point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def _signed(secret: int, message: bytes) -> tuple[bytes, bytes, bytes]:
    key = ec.derive_private_key(secret, ec.SECP256R1())
    digest = hashlib.sha256(message).digest()
    return _point(key), key.sign(digest, PREHASHED), digest


def _mutations(point: bytes, signature: bytes, digest: bytes, data: st.DataObject) -> tuple[bytes, bytes, bytes]:
    """One way of breaking (or not) a valid triple, chosen by hypothesis."""
    draw = data.draw
    r, s = decode_dss_signature(signature)
    how = draw(st.sampled_from([
        "none", "signature byte", "point byte", "digest byte", "truncated", "trailing", "padded r",
        "high s", "r zero", "s order", "off curve", "x beyond p", "infinity", "compressed", "short digest",
        "random signature", "random point",
    ]))
    position = draw(st.integers(min_value=0, max_value=200))
    bit = 1 << draw(st.integers(min_value=0, max_value=7))

    def flipped(data: bytes) -> bytes:
        at = position % len(data)
        return data[:at] + bytes([data[at] ^ bit]) + data[at + 1:]

    if how == "signature byte":
        signature = flipped(signature)
    elif how == "point byte":
        point = flipped(point)
    elif how == "digest byte":
        digest = flipped(digest)
    elif how == "truncated":
        signature = signature[: position % len(signature)]
    elif how == "trailing":
        signature += b"\x00"
    elif how == "padded r":  # the same r with a needless leading zero: not DER
        r_bytes = r.to_bytes(33, "big")
        s_bytes = s.to_bytes((s.bit_length() + 8) // 8, "big")
        body = bytes([2, len(r_bytes)]) + r_bytes + bytes([2, len(s_bytes)]) + s_bytes
        signature = bytes([0x30, len(body)]) + body
    elif how == "high s":  # (r, n - s) is valid ECDSA too: both paths must accept it alike
        signature = encode_dss_signature(r, ORDER - s)
    elif how == "r zero":
        signature = encode_dss_signature(0, s)
    elif how == "s order":
        signature = encode_dss_signature(r, ORDER)
    elif how == "off curve":
        y = int.from_bytes(point[33:], "big")
        point = point[:33] + ((y + 1) % PRIME).to_bytes(32, "big")
    elif how == "x beyond p":
        x = int.from_bytes(point[1:33], "big") + PRIME
        point = b"\x04" + (x % 2**256).to_bytes(32, "big") + point[33:]
    elif how == "infinity":
        point = b"\x00"
    elif how == "compressed":
        point = bytes([2 + (point[-1] & 1)]) + point[1:33]
    elif how == "short digest":
        digest = digest[:20]
    elif how == "random signature":
        signature = draw(st.binary(min_size=0, max_size=80))
    elif how == "random point":
        point = draw(st.binary(min_size=0, max_size=70))
    return point, signature, digest


@libcrypto_only
@SETTINGS
@given(secret=st.integers(min_value=1, max_value=ORDER - 1), message=st.binary(max_size=64), data=st.data())
def test_libcrypto_answers_as_cryptography(secret: int, message: bytes, data: st.DataObject) -> None:
    point, signature, digest = _mutations(*_signed(secret, message), data)
    expected = p256_signature_valid_cryptography(point, signature, digest)
    event(f"valid: {expected}")
    assert libcrypto_valid is not None
    assert libcrypto_valid(point, signature, digest) == expected


@libcrypto_only
def test_a_valid_signature_is_valid_and_a_wrong_key_is_not() -> None:
    assert libcrypto_valid is not None
    point, signature, digest = _signed(12345, b"csr")
    other, _, _ = _signed(54321, b"csr")
    assert libcrypto_valid(point, signature, digest)
    assert not libcrypto_valid(other, signature, digest)
    assert libcrypto_valid(point, signature, digest)  # the reused key holds no state from a failure
    # Not bytes (a bytearray from a caller's buffer): answered by cryptography, the same answer.
    assert libcrypto_valid(point, bytearray(signature), digest) is True  # type: ignore[arg-type]


@libcrypto_only
def test_threads_verifying_at_once_each_get_their_own_answer() -> None:
    """Each thread sets its own key's point: a shared key would let one thread verify with another's."""
    triples = [_signed(secret, b"m%d" % secret) for secret in range(1, 9)]
    wrong: list[str] = []

    assert libcrypto_valid is not None
    valid = libcrypto_valid

    def run(index: int) -> None:
        point, signature, digest = triples[index]
        other_point = triples[(index + 1) % len(triples)][0]
        for _ in range(300):
            if not valid(point, signature, digest):
                wrong.append(f"thread {index}: a valid signature refused")
            if valid(other_point, signature, digest):
                wrong.append(f"thread {index}: accepted with another key")

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(triples))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


@pytest.fixture
def engine_restored() -> Iterator[None]:
    yield
    p256_verify.use("libcrypto")


def test_the_setting_chooses_the_code_and_both_accept_the_same(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, engine_restored: None) -> None:
    """``csr-signature-check`` (here from its environment variable) is applied as the home opens."""
    point, signature, digest = _signed(777, b"csr")
    monkeypatch.setenv("SMKI_CSR_SIGNATURE_CHECK", "cryptography")
    with ca_home(tmp_path, database_url, b"p256-verify-test-secret") as home:
        assert home.settings.csr_signature_check == "cryptography"
        assert p256_verify.engine() == "cryptography"
        assert p256_signature_valid(point, signature, digest)
        assert not p256_signature_valid(point, signature, bytes(32))
    p256_verify.use("libcrypto")
    assert p256_verify.engine() in ("libcrypto", "cryptography")  # cryptography only where libcrypto is missing
    assert p256_signature_valid(point, signature, digest)


def test_an_unknown_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="csr-signature-check"):
        p256_verify.use("openssl")
    from smki.errors import ConfigError
    from smki.settings_model import resolve

    with pytest.raises(ConfigError, match="SMKI_CSR_SIGNATURE_CHECK"):
        resolve({}, {"SMKI_CSR_SIGNATURE_CHECK": "cryptograhpy"})


def test_without_a_loadable_libcrypto_cryptography_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    def missing(name: str, *args: object, **kwargs: object) -> ctypes.CDLL:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert p256_verify._load_libcrypto() is None


class _Function:
    """A stand-in for a ctypes function: takes a ``restype``, returns a fixed value."""

    restype: object = None

    def __init__(self, value: int) -> None:
        self.value = value

    def __call__(self) -> int:
        return self.value


def test_an_old_libcrypto_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    openssl_1_1 = types.SimpleNamespace(OpenSSL_version_num=_Function(0x1010117F))
    monkeypatch.setattr(ctypes, "CDLL", lambda name, *args, **kwargs: openssl_1_1)
    assert p256_verify._load_libcrypto() is None
