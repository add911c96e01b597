"""Whether an ECDSA P-256 signature verifies with a key given as its uncompressed point: the
proof-of-possession check of every CSR of a batch, answered without making a key object.

``cryptography`` verifies only with a key object, and making one from a point
(``EllipticCurvePublicKey.from_encoded_point``) costs about as much again as a fifth of the
verification itself: ~10 µs to make it and more at its first use, once per CSR, because each CSR
has its own key (``smki bench p256-verify`` times both ways). ``openssl speed``, the limit the
batch benchmarks are measured against, never makes keys. OpenSSL's own C interface can verify
with one reusable key whose point is set for each CSR (``EC_POINT_oct2point``, which checks the
point is on the curve, then ``ECDSA_verify``): the same OpenSSL code for the same check — strict
DER, ``r`` and ``s`` in range — with no key made.

So :func:`p256_signature_valid` uses the system's ``libcrypto`` (OpenSSL 3, through
:mod:`ctypes`) when the process can load it, and ``cryptography`` otherwise; both answer exactly
the same (``tests/ca/test_p256_verify.py`` compares them on valid, mutated and off-curve input,
with hypothesis). It answers only "valid" or "not": callers that must say *why* a CSR is refused
(not a point on the curve, or a signature that does not verify) take ``cryptography``'s path for
a CSR this one did not accept, so every refusal is still worded by one code path.

The setting ``csr-signature-check`` (``SMKI_CSR_SIGNATURE_CHECK``) chooses: ``libcrypto`` (the
default) or ``cryptography`` alone; every process that checks CSRs applies it with :func:`use`
(``open_home``, and each signing worker as it starts).
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ctypes

__all__ = ["ENGINES", "engine", "p256_signature_valid", "p256_signature_valid_cryptography", "use"]

log = logging.getLogger(__name__)

#: OpenSSL's NID for P-256 (``NID_X9_62_prime256v1``): part of its stable ABI.
_NID_P256 = 415
#: The oldest libcrypto whose ``ECDSA_verify`` refuses non-DER signatures and whose
#: ``EC_POINT_oct2point`` refuses points off the curve, as ``cryptography``'s bundled OpenSSL does.
_OPENSSL_3 = 0x30000000


def p256_signature_valid_cryptography(point: bytes, signature: bytes, digest: bytes) -> bool:
    """The reference answer: ``cryptography`` makes the key from ``point`` and verifies.

    It imports ``cryptography`` when first called: a command that opens a home and checks no CSR
    (``smki party show``) loads none of it (``tests/cli/test_scriptable.py``)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point).verify(signature, digest, _prehashed())
    except (ValueError, InvalidSignature):
        return False
    return True


@functools.cache
def _prehashed() -> Any:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    return ec.ECDSA(Prehashed(hashes.SHA256()))


class _Libcrypto:
    """The few functions of the system's libcrypto this module calls, and one reusable key per thread."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        import ctypes

        p, size, integer = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
        self._key_new = lib.EC_KEY_new_by_curve_name
        self._key_new.argtypes, self._key_new.restype = [integer], p
        self._key_free = lib.EC_KEY_free
        self._key_free.argtypes, self._key_free.restype = [p], None
        self._group_of = lib.EC_KEY_get0_group
        self._group_of.argtypes, self._group_of.restype = [p], p
        self._point_new = lib.EC_POINT_new
        self._point_new.argtypes, self._point_new.restype = [p], p
        self._point_free = lib.EC_POINT_free
        self._point_free.argtypes, self._point_free.restype = [p], None
        self.oct2point = lib.EC_POINT_oct2point
        self.oct2point.argtypes, self.oct2point.restype = [p, p, ctypes.c_char_p, size, p], integer
        self.set_public_key = lib.EC_KEY_set_public_key
        self.set_public_key.argtypes, self.set_public_key.restype = [p, p], integer
        self.verify = lib.ECDSA_verify
        self.verify.argtypes = [integer, ctypes.c_char_p, integer, ctypes.c_char_p, integer, p]
        self.verify.restype = integer
        self.clear_errors = lib.ERR_clear_error
        self.clear_errors.argtypes, self.clear_errors.restype = [], None
        self._local = threading.local()

    def key(self) -> tuple[int, int, int]:
        """This thread's (key, group, point), made at its first use and freed with the thread."""
        made = getattr(self._local, "made", None)
        if made is None:
            key = self._key_new(_NID_P256)
            if not key:
                raise MemoryError("EC_KEY_new_by_curve_name failed")
            group = self._group_of(key)
            point = self._point_new(group)
            if not point:
                self._key_free(key)
                raise MemoryError("EC_POINT_new failed")
            made = self._local.made = _Made((key, group, point))
            # Freed when the thread ends; not at exit, when there is nothing left to free it for.
            weakref.finalize(made, self._free, key, point).atexit = False
        return made.parts

    def _free(self, key: int, point: int) -> None:
        self._point_free(point)
        self._key_free(key)


class _Made:
    """A thread's key, group and point (an object, so that a finalizer can free them)."""

    __slots__ = ("__weakref__", "parts")

    def __init__(self, parts: tuple[int, int, int]) -> None:
        self.parts = parts


def _load_libcrypto() -> _Libcrypto | None:
    """The system's OpenSSL 3 libcrypto, or None (not installed, or too old)."""
    import ctypes

    for name in ("libcrypto.so.3", "libcrypto.3.dylib"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            lib.OpenSSL_version_num.restype = ctypes.c_ulong
            if lib.OpenSSL_version_num() < _OPENSSL_3:
                return None
            return _Libcrypto(lib)
        except (AttributeError, MemoryError):  # a library of that name without these functions
            return None
    return None


def _with_libcrypto(lib: _Libcrypto) -> Callable[[bytes, bytes, bytes], bool]:
    oct2point, set_public_key, verify, clear_errors = lib.oct2point, lib.set_public_key, lib.verify, lib.clear_errors

    def p256_signature_valid(point: bytes, signature: bytes, digest: bytes) -> bool:
        """Whether ``signature`` (DER ECDSA-Sig-Value) verifies over ``digest`` (SHA-256) with the
        P-256 key whose encoded point is ``point``; False too when the point is not on the curve."""
        if (type(point) is not bytes or type(signature) is not bytes or type(digest) is not bytes
                or len(digest) != 32 or len(point) != 65 or point[0] != 4):
            return p256_signature_valid_cryptography(point, signature, digest)
        key, group, ec_point = lib.key()
        if oct2point(group, ec_point, point, 65, None) != 1 or set_public_key(key, ec_point) != 1:
            clear_errors()
            return False
        if verify(0, digest, 32, signature, len(signature), key) == 1:
            return True
        clear_errors()
        return False

    return p256_signature_valid


#: The setting's value in this process (:func:`use`).
_WANTED = "libcrypto"
#: The function that answers for it, made at the first check (loading libcrypto and :mod:`ctypes`
#: costs ~10 ms, which a command that checks no CSR should not pay).
_CHOSEN: Callable[[bytes, bytes, bytes], bool] | None = None
_LIBCRYPTO: Callable[[bytes, bytes, bytes], bool] | None = None
_CHOOSING = threading.Lock()
#: The ``csr-signature-check`` setting's values.
ENGINES = ("libcrypto", "cryptography")


def use(name: str) -> None:
    """Answer with ``name``'s code from now on in this process: the setting ``csr-signature-check``,
    "libcrypto" (which falls back to cryptography where the system's libcrypto cannot be loaded) or
    "cryptography"."""
    global _WANTED, _CHOSEN
    if name not in ENGINES:
        raise ValueError(f"csr-signature-check is one of {', '.join(ENGINES)}, not {name!r}")
    with _CHOOSING:
        if name != _WANTED:
            _WANTED, _CHOSEN = name, None


def _chosen() -> Callable[[bytes, bytes, bytes], bool]:
    global _CHOSEN, _LIBCRYPTO
    with _CHOOSING:
        if _CHOSEN is None:
            if _WANTED == "libcrypto" and _LIBCRYPTO is None:
                lib = _load_libcrypto()
                if lib is None:
                    log.warning("csr-signature-check is libcrypto, but no OpenSSL 3 libcrypto can be loaded: "
                                "cryptography verifies CSRs' self-signatures (~20 µs more per CSR)")
                _LIBCRYPTO = p256_signature_valid_cryptography if lib is None else _with_libcrypto(lib)
            _CHOSEN = _LIBCRYPTO if _WANTED == "libcrypto" else p256_signature_valid_cryptography
        assert _CHOSEN is not None
        return _CHOSEN


def p256_signature_valid(point: bytes, signature: bytes, digest: bytes) -> bool:
    """Whether ``signature`` (a DER ECDSA-Sig-Value) verifies over ``digest`` (a SHA-256 digest)
    with the P-256 key whose X9.62 encoding is ``point``. False also when ``point`` is not a point
    on the curve, or the signature is not strict DER."""
    return (_CHOSEN or _chosen())(point, signature, digest)


def engine() -> str:
    """Which code answers in this process: "libcrypto" (the system's OpenSSL) or "cryptography"
    (chosen, or the fallback where libcrypto cannot be loaded)."""
    return "cryptography" if (_CHOSEN or _chosen()) is p256_signature_valid_cryptography else "libcrypto"
