"""PKCS#11 key backend: CA keys are generated inside an HSM and never leave it.

Why it is built this way:

* **Keys.** Each CA key is a P-256 key pair of *token* objects labelled (``CKA_LABEL`` and
  ``CKA_ID``) with the key label; the private half is ``CKA_SENSITIVE``, not ``CKA_EXTRACTABLE``
  and may only sign, so neither smki nor anyone holding the PIN can read or wrap it out
  (``key_policy`` reports the flags the token enforces, for the ceremony record).
* **Signing.** We hash with SHA-256 here and sign the 32-byte digest with ``CKM_ECDSA``: every
  PKCS#11 module that does EC has it (SoftHSM 2.6 has no ``CKM_ECDSA_SHA256``) and only the digest
  crosses to the HSM. The token returns raw ``r || s``; ``encode_dss_signature`` turns it into the
  DER ``ECDSA-Sig-Value`` a certificate carries.
* **Session copies of the key.** Each pooled session signs with its own copy of the private key
  made with ``C_CopyObject`` and ``CKA_TOKEN=False``: a session object, inside the token, gone
  with the session, and (PKCS#11 forbids a copy from relaxing them, and we check) still
  sensitive and not extractable. SoftHSM re-reads a token object's file on every operation and
  not a session object's, so this makes its signing 1.4-1.8 times as fast. A token refusing the copy
  is used through its token object (logged once); ``pkcs11-session-keys = false`` turns it off.
  Lookups by label only ever see token objects; a copy re-checks its token object every
  ``KEY_CHECK_SECONDS``, so a key or token that goes away still stops the signing.
* **Sessions.** A PKCS#11 session runs one operation at a time, so a pool lends each thread its own.
  Login belongs to the application and token, not to a session: one *anchor* session logs in with
  the PIN, the pooled sessions inherit it, and closing the anchor logs everyone out. All backends in
  one process that name the same module and token therefore share one login (a second backend must
  present the same PIN, or it is refused with ``key.locked``).
* **Threads.** python-pkcs11 initialises the module with ``C_Initialize(NULL)``, which promises the
  module that the application will not call it from several threads at once (SoftHSM then turns
  its own locks off). So calls into one module are serialised per process; threads still overlap
  their Python work (building TBS bytes, checking CSRs) with the HSM's signing.
* **Processes.** Real HSM parallelism comes from worker processes, each building its own backend
  from ``(module, token, PIN)`` (``open_backend``). Nothing PKCS#11 survives ``fork``: a child that
  finds the module loaded by its parent finalises and re-initialises it and logs in again, and a
  backend refuses to be pickled, so the PIN never travels inside one.
* **Errors.** Every PKCS#11 exception becomes a ``KeyBackendError`` with a ``key.*`` code and a
  message naming the failure, never data. After a token-level failure the whole login is dropped,
  so the call that failed fails cleanly and the next one logs in afresh: a batch can be resumed
  once the HSM is back. The PIN is therefore held in this process's memory (as the file backend
  holds its passphrase) and never written, logged or shown in a ``repr``. A PIN the token refuses
  at such a re-login is not tried again: HSMs block a PIN after a few wrong attempts.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pkcs11
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from smki.keys.base import KeyBackendError

log = logging.getLogger(__name__)

DEFAULT_MAX_SESSIONS = 4
SESSION_WAIT_SECONDS = 60.0
HOST_LOCK_WAIT_SECONDS = 30.0
P256_COORDINATE_BYTES = 32
# How often a session copy of a key checks that the key is still on the token (see _session_key).
KEY_CHECK_SECONDS = 0.1

_PIN_ERRORS = (
    p11.PinIncorrect,
    p11.PinInvalid,
    p11.PinLenRange,
    p11.PinExpired,
    p11.PinLocked,
    p11.UserPinNotInitialized,
)
_KEY_ERRORS = (p11.NoSuchKey, p11.KeyHandleInvalid, p11.ObjectHandleInvalid)
_UNSUPPORTED_ERRORS = (
    p11.MechanismInvalid,
    p11.MechanismParamInvalid,
    p11.FunctionNotSupported,
    p11.DomainParamsInvalid,
    p11.TemplateInconsistent,
    p11.AttributeValueInvalid,
    p11.AttributeTypeInvalid,
)


def translate(exc: p11.PKCS11Error, doing: str, *, no_token: str = "key.token-failed") -> KeyBackendError:
    """Map a PKCS#11 exception to a stable ``key.*`` code; the message names the failure only.

    ``no_token`` is the code for "no such token": ``key.token-not-found`` when opening the backend
    (a configuration mistake), ``key.token-failed`` once the token had been found (it went away).
    """
    name = type(exc).__name__
    if isinstance(exc, p11.PinLocked):
        return KeyBackendError("key.locked", f"{doing}: the token's PIN is blocked ({name})")
    if isinstance(exc, _PIN_ERRORS):
        return KeyBackendError("key.locked", f"{doing}: the token refused the PIN ({name})")
    if isinstance(exc, p11.NoSuchToken):
        return KeyBackendError(no_token, f"{doing}: no token with that label is present ({name})")
    if isinstance(exc, p11.MultipleTokensReturned):
        return KeyBackendError("key.token-ambiguous", f"{doing}: several tokens carry that label")
    if isinstance(exc, _KEY_ERRORS):
        return KeyBackendError("key.missing", f"{doing}: the key is not on the token ({name})")
    if isinstance(exc, _UNSUPPORTED_ERRORS):
        return KeyBackendError("key.unsupported", f"{doing}: the token does not support this ({name})")
    return KeyBackendError("key.token-failed", f"{doing}: the token failed ({name})")


def der_signature(raw: bytes) -> bytes:
    """PKCS#11 ECDSA output (``r || s``, 32 bytes each for P-256) as a DER ``ECDSA-Sig-Value``."""
    if len(raw) != 2 * P256_COORDINATE_BYTES:
        raise KeyBackendError("key.token-failed", f"the token returned a {len(raw)}-byte ECDSA signature")
    r = int.from_bytes(raw[:P256_COORDINATE_BYTES], "big")
    s = int.from_bytes(raw[P256_COORDINATE_BYTES:], "big")
    return encode_dss_signature(r, s)


def check_label(label: str) -> str:
    """Same label rule as the file backend, so a deployment can move between backends."""
    if not label or not all(c.isalnum() or c in "-_" for c in label):
        raise KeyBackendError("key.bad-label", f"key label {label!r} must be letters, digits, '-' or '_'")
    return label


@dataclass(frozen=True)
class KeyPolicy:
    """The protection flags the token reports for a private key (what a ceremony records)."""

    sensitive: bool
    extractable: bool
    always_sensitive: bool
    never_extractable: bool
    token: bool
    private: bool


# --------------------------------------------------------------------------------------------
# One loaded module per path and process


@dataclass
class _Library:
    """A loaded module. Kept for the life of the process: dropping a ``pkcs11.lib`` finalises it."""

    path: str
    lib: Any  # pkcs11.lib
    pid: int
    lock: threading.RLock = field(default_factory=threading.RLock)
    # Bumped whenever we start the module again after it was finalised under us. Session and
    # object handles are plain numbers that a restarted module hands out afresh, so a handle from
    # an older epoch may now name another thread's session or another key: never use or close it.
    epoch: int = 0
    # Set when a token went away or lost keys under us (see ``_TokenLink.note_fault``): the next
    # login starts the module afresh, since a module only rescans its tokens when initialised.
    faulted: bool = False


_registry_lock = threading.Lock()
_libraries: dict[str, _Library] = {}
_links: dict[tuple[str, str], _TokenLink] = {}


_host_guard = threading.Lock()


def _after_fork_in_child() -> None:
    """A lock held by a parent thread at ``fork`` would never be released in the child."""
    global _registry_lock, _host_guard
    _registry_lock = threading.Lock()
    _host_guard = threading.Lock()
    _links.clear()  # the parent's sessions and login are not ours; never close them from here


@contextmanager
def _host_lock(module: str) -> Iterator[None]:
    """Serialise module start-up and login across the smki processes on this host.

    SoftHSM rewrites its token file on every login and reads it when initialised, without
    reliable locking: batch workers starting together then see a broken token (``GeneralError``,
    or no token at all for the life of the process). Both happen once per process, so taking an
    advisory lock around them costs nothing. ``lockf`` locks belong to the process and are not
    inherited over ``fork``; the thread lock covers threads of this process. The lock only helps:
    if it cannot be had (another user's file, a holder that never lets go) we go on without it.
    """
    name = hashlib.sha256(module.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"smki-pkcs11-{name}.lock"
    with _host_guard:
        fd: int | None = None
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            deadline = time.monotonic() + HOST_LOCK_WAIT_SECONDS
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        log.warning("%s stayed locked; starting the PKCS#11 module without it", path)
                        break
                    time.sleep(0.005)
        except OSError:
            pass
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)  # releases the lock


os.register_at_fork(after_in_child=_after_fork_in_child)


def _library(path: str) -> _Library:
    """Load (once per process) the PKCS#11 module at ``path``; re-initialise it after ``fork``."""
    if not path:
        raise KeyBackendError("key.not-configured", "no PKCS#11 module configured (pkcs11-module)")
    with _registry_lock:
        loaded = _libraries.get(path)
        if loaded is not None and loaded.pid == os.getpid():
            return loaded
        try:
            with _host_lock(path):
                if loaded is None:
                    lib = pkcs11.lib(path)
                else:  # inherited over fork: same module in memory, the parent's state inside it
                    lib = loaded.lib
                    lib.reinitialize()
        except p11.PKCS11Error as exc:
            raise _module_error(path, exc) from exc
        loaded = _Library(path, lib, os.getpid())
        _libraries[path] = loaded
        return loaded


def _module_error(path: str, exc: p11.PKCS11Error) -> KeyBackendError:
    """Why the module at ``path`` cannot be used: three faults with three different fixes.

    python-pkcs11 reports a failed ``dlopen`` as a bare ``PKCS11Error`` "OS exception while loading
    <path>: <dlerror>"; a module that loads but whose ``C_Initialize`` fails raises the PKCS#11
    error it returned (its own configuration: ``SOFTHSM2_CONF``, the vendor client's files).
    """
    text = str(exc)
    if type(exc) is p11.PKCS11Error and text.startswith("OS exception"):
        reason = text.rsplit(": ", 1)[-1].strip()[:200] or "unknown"
        if "C_GetFunctionList" in text:
            reason = "not a PKCS#11 module (no C_GetFunctionList)"
        elif "invalid ELF header" in text or "file too short" in text:
            reason = f"not a shared library ({reason})"
        return KeyBackendError("key.module-missing", f"cannot load the PKCS#11 module {path!r}: {reason}")
    return KeyBackendError("key.module-failed", f"the PKCS#11 module {path!r} loads but will not start "
                           f"({type(exc).__name__}): check its own configuration (e.g. SOFTHSM2_CONF, the "
                           "HSM client's configuration and its connection to the HSM)")


def _find_token(lib: Any, label: str) -> Any:
    """The one token labelled ``label``, skipping slots that fail to answer.

    ``pkcs11.lib.get_token`` gives up on the first slot whose token errors, so one broken token
    (SoftHSM: a deleted token directory) would hide every healthy token in the same module.
    """
    found: list[Any] = []
    for slot in lib.get_slots(token_present=True):
        try:
            token = slot.get_token()
        except p11.PKCS11Error:
            continue
        if token.label == label:
            found.append(token)
    if not found:
        raise p11.NoSuchToken(label)
    if len(found) > 1:
        raise p11.MultipleTokensReturned(label)
    return found[0]


# --------------------------------------------------------------------------------------------
# One login per token and process, with its pool of sessions


@dataclass
class _Pooled:
    """A pooled session and the key objects it has found or made (valid only in this session)."""

    session: Any  # pkcs11.Session
    generation: int  # which login it was opened under (see ``reset``)
    epoch: int  # which start of the module (see ``_Library.epoch``)
    keys: dict[str, Any] = field(default_factory=dict)  # label -> the token's pkcs11.PrivateKey
    # label -> (what to sign with when session keys are on, when to check the token key again):
    # this session's copy of the key, or the token object itself when the token refused the copy
    # (see ``_TokenLink.session_copy`` and ``Pkcs11KeyBackend._session_key``)
    signing_keys: dict[str, tuple[Any, float]] = field(default_factory=dict)
    copies: list[Any] = field(default_factory=list)  # session-object copies made in this session


class _TokenLink:
    """The login to one token and the sessions opened under it; shared by backends in a process."""

    def __init__(self, library: _Library, token_label: str, pin: str, max_sessions: int, serialize: bool):
        self.library = library
        self.token_label = token_label
        self._pin = pin
        self.max_sessions = max(1, max_sessions)
        self._serialize = serialize
        self._pool = threading.Condition(threading.Lock())
        self._idle: list[_Pooled] = []
        self._open = 0
        self._generation = 0
        self._anchor: Any = None  # pkcs11.Session holding the login
        self._anchor_epoch = 0
        self._token: Any = None  # pkcs11.Token found at login
        self._ever_logged_in = False
        self._pin_refused = False
        self._login_lock = threading.Lock()
        self.users = 0
        self.ceremony = threading.Lock()
        self._copy_reported: set[str] = set()  # labels whose refused session copy was logged
        self._report_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"_TokenLink(module={self.library.path!r}, token={self.token_label!r})"

    def __reduce__(self) -> NoReturn:
        _refuse_pickle()

    def pin_matches(self, pin: str) -> bool:
        return hmac.compare_digest(pin.encode("utf-8"), self._pin.encode("utf-8"))

    def calls(self) -> AbstractContextManager[object]:
        """Serialise calls into the module unless told the module is thread-safe."""
        return self.library.lock if self._serialize else nullcontext()

    def _logged_in(self) -> bool:
        return self._anchor is not None and self._anchor_epoch == self.library.epoch and not self.library.faulted

    def note_fault(self, error: KeyBackendError) -> None:
        """A token that failed, vanished or lost its keys: the next login restarts the module.

        SoftHSM reads its token directory only in ``C_Initialize``, and an HSM client that lost
        its connection may likewise need starting again: logging in afresh in the same process
        would find no token (or an empty one) for ever, and a server would stay unready until
        restarted by hand. Restarting costs one ``C_Finalize``/``C_Initialize`` per fault; the
        epoch keeps every session and handle from before it unused.
        """
        if error.code in ("key.token-failed", "key.token-not-found", "key.missing"):
            self.library.faulted = True

    def login(self) -> None:
        """Open the anchor session and log in; every pooled session inherits the login."""
        if self._logged_in():  # the common case, without queueing on the module lock
            return
        with self._login_lock, self.calls():
            if self._logged_in():
                return
            if self._anchor is not None:  # a login from before a module restart: drop it unused
                self.reset()
            doing = f"logging in to token {self.token_label!r}"
            if self._pin_refused:  # never burn the token's PIN retry counter in a loop
                raise KeyBackendError(
                    "key.locked", f"{doing}: the token refused the PIN; reopen with the right one"
                )
            no_token = "key.token-failed" if self._ever_logged_in else "key.token-not-found"
            lib = self.library.lib
            try:
                with _host_lock(self.library.path), self.library.lock:
                    if self.library.faulted and lib.initialized:  # rescan the tokens (note_fault)
                        log.warning("PKCS#11 module %r: restarting it after a token fault", self.library.path)
                        lib.finalize()
                    if not lib.initialized:  # finalised under us (or above): start the module again
                        lib.initialize()
                        self.library.epoch += 1
                    self.library.faulted = False
                    token = _find_token(lib, self.token_label)
                    self._anchor = token.open(rw=True, user_pin=self._pin)
                    self._anchor_epoch = self.library.epoch
                self._token = token
            except p11.PKCS11Error as exc:
                error = translate(exc, doing, no_token=no_token)
                self._pin_refused = error.code == "key.locked"
                self.note_fault(error)
                raise error from exc
            self._ever_logged_in = True

    @contextmanager
    def session(self, doing: str) -> Iterator[_Pooled]:
        """Lend a pooled session, holding the module lock while it is used.

        A PKCS#11 failure inside becomes a ``KeyBackendError``; a session from before a module
        restart is refused (and dropped) before anything touches it.
        """
        pooled = self._acquire(doing)
        try:
            with self.calls():
                if pooled.epoch != self.library.epoch:
                    raise _Stale(doing)
                yield pooled
        except _Stale:
            self._discard(pooled, whole_login=True)
            raise KeyBackendError("key.token-failed", f"{doing}: the PKCS#11 module was restarted") from None
        except p11.PKCS11Error as exc:
            error = translate(exc, doing)
            self.note_fault(error)
            self._discard(pooled, whole_login=error.code == "key.token-failed")
            raise error from exc
        except BaseException:
            self._release(pooled)
            raise
        self._release(pooled)

    def _acquire(self, doing: str) -> _Pooled:
        while True:
            self.login()
            with self._pool:
                while not self._idle and self._open >= self.max_sessions:
                    if not self._pool.wait(SESSION_WAIT_SECONDS):
                        raise KeyBackendError("key.busy", f"{doing}: no token session became free")
                if self._idle:
                    return self._idle.pop()
                self._open += 1
                generation = self._generation
            session = None
            try:
                with self.calls():
                    epoch = self.library.epoch
                    if self._anchor is not None and generation == self._generation:
                        session = self._token.open(rw=True)
            except p11.PKCS11Error as exc:
                self._unreserve(generation)
                self.reset(generation)
                error = translate(exc, doing)
                self.note_fault(error)
                raise error from exc
            if session is not None:
                return _Pooled(session, generation, epoch)
            self._unreserve(generation)  # the login was dropped meanwhile: log in again first

    def _unreserve(self, generation: int) -> None:
        with self._pool:
            if generation == self._generation:
                self._open -= 1
            self._pool.notify()

    def _release(self, pooled: _Pooled) -> None:
        with self._pool:
            current = pooled.generation == self._generation
            if current:
                self._idle.append(pooled)
            self._pool.notify()
        if not current:  # lent out before a reset: its login is gone
            self._close_pooled(pooled)

    def _discard(self, pooled: _Pooled, whole_login: bool) -> None:
        self._close_pooled(pooled)
        self._unreserve(pooled.generation)
        if whole_login:
            self.reset(pooled.generation)

    def _close_pooled(self, pooled: _Pooled) -> None:
        """Destroy the session's key copies, then close it; it is never lent again.

        The copies would vanish with the session anyway; destroying them first also covers a
        module that keeps session objects longer. The cached handles are dropped either way, so
        nothing can sign with them after this, whatever happened to the session.
        """
        copies, pooled.copies = pooled.copies, []
        pooled.keys.clear()
        pooled.signing_keys.clear()
        try:
            with self.calls():
                if pooled.epoch == self.library.epoch:  # else the handles may name others' objects
                    for copy in copies:
                        _destroy_quietly(copy)
        finally:
            self._close_quietly(pooled.session, pooled.epoch)

    def _close_quietly(self, session: Any, epoch: int) -> None:
        try:
            with self.calls():
                if epoch == self.library.epoch:  # else its handle may be someone else's session now
                    session.close()
        except p11.PKCS11Error:
            pass  # the token is gone or the session already died with it

    def reset(self, generation: int | None = None) -> None:
        """Drop every session and the login; the next use logs in again.

        With ``generation``, only if no reset happened since that generation's sessions were
        opened: a failure that is the echo of an earlier reset must not tear down the new login.
        """
        with self._pool:
            if generation is not None and generation != self._generation:
                return
            idle, self._idle = self._idle, []
            self._generation += 1
            self._open = 0
            anchor, self._anchor = self._anchor, None
            anchor_epoch = self._anchor_epoch
            self._pool.notify_all()
        if generation is not None:
            log.warning("PKCS#11 token %r failed; dropping its sessions and login", self.token_label)
        for pooled in idle:
            self._close_pooled(pooled)
        if anchor is not None:
            self._close_quietly(anchor, anchor_epoch)  # last: closing the anchor logs the token out

    def session_copy(self, pooled: _Pooled, label: str, token_key: Any) -> Any:
        """A session-object copy of ``token_key`` made in ``pooled``'s session, or ``token_key``.

        ``C_CopyObject`` with ``CKA_TOKEN=False``: the copy lives inside the token, only as long
        as this session, and PKCS#11 forbids a copy from dropping ``CKA_SENSITIVE`` or gaining
        ``CKA_EXTRACTABLE``; we check that anyway and destroy a copy that is not so. Signing with
        it spares SoftHSM its per-operation check of the token's object file. A token that will
        not copy (``CKA_COPYABLE`` false, an HSM policy, any error) gets its token object used by
        this session (each new session tries again: one call, and a fault may have passed).
        Called with the module lock held, inside ``session``.
        """
        try:
            copy = token_key.copy({Attribute.TOKEN: False})
        except p11.PKCS11Error as exc:
            self._refuse_copy(label, f"the token refused to copy it ({type(exc).__name__})")
            return token_key
        pooled.copies.append(copy)  # destroyed with the session, whatever happens next
        try:
            flags = copy.get_attributes([Attribute.TOKEN, Attribute.SENSITIVE, Attribute.EXTRACTABLE])
        except p11.PKCS11Error as exc:
            flags = {}
            problem = f"its attributes cannot be read ({type(exc).__name__})"
        else:
            problem = "" if _protected_session_copy(flags) else "the copy is not a sensitive session object"
        if problem:
            if _destroy_quietly(copy):
                pooled.copies = [kept for kept in pooled.copies if kept is not copy]
            elif flags.get(Attribute.TOKEN):
                log.warning("PKCS#11 token %r: a stray copy of key %r is left on it", self.token_label, label)
            self._refuse_copy(label, problem, warn=True)
            return token_key
        return copy

    def _refuse_copy(self, label: str, why: str, *, warn: bool = False) -> None:
        with self._report_lock:  # once per label and login link, not once per session
            if label in self._copy_reported:
                return
            self._copy_reported.add(label)
        log.log(
            logging.WARNING if warn else logging.INFO,
            "PKCS#11 token %r: signing with the token object of key %r, not a session copy: %s",
            self.token_label,
            label,
            why,
        )


def _protected_session_copy(flags: dict[Any, Any]) -> bool:
    """A copy we may sign with: a session object, still sensitive and not extractable."""
    return (
        flags.get(Attribute.TOKEN) is False
        and flags.get(Attribute.SENSITIVE) is True
        and flags.get(Attribute.EXTRACTABLE) is False
    )


def _destroy_quietly(obj: Any) -> bool:
    try:
        obj.destroy()
    except p11.PKCS11Error:
        return False  # the session (and with it a session object) is gone, or the token is
    return True


class _Stale(Exception):
    """A pooled session from before the module was restarted (internal; never escapes)."""


def _link(module: str, token_label: str, pin: str, max_sessions: int, serialize: bool) -> _TokenLink:
    library = _library(module)
    key = (module, token_label)
    with _registry_lock:
        link = _links.get(key)
        if link is not None and link.library is library and link.library.pid == os.getpid():
            if not link.pin_matches(pin):
                raise KeyBackendError("key.locked", f"wrong PIN for token {token_label!r}")
            link.users += 1
            return link
        link = _TokenLink(library, token_label, pin, max_sessions, serialize)
        link.users = 1
        _links[key] = link
    try:
        link.login()  # check the PIN now: a wrong PIN fails the command, not the first signature
    except KeyBackendError:
        _unlink(link)
        raise
    return link


def _unlink(link: _TokenLink) -> None:
    with _registry_lock:
        link.users -= 1
        if link.users > 0:
            return
        key = (link.library.path, link.token_label)
        if _links.get(key) is link:
            del _links[key]
    if link.library.pid == os.getpid():
        link.reset()


def _refuse_pickle() -> NoReturn:
    raise KeyBackendError(
        "key.not-portable",
        "a PKCS#11 key backend cannot be sent to another process; open it there with open_backend()",
    )


# --------------------------------------------------------------------------------------------
# The public backend and signer


class Pkcs11Signer:
    """Signs with one private key inside the token; holds only its label and public key."""

    def __init__(self, backend: Pkcs11KeyBackend, label: str, public_key: ec.EllipticCurvePublicKey):
        self._backend = backend
        self._label = label
        self._public_key = public_key

    @property
    def label(self) -> str:
        return self._label

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public_key

    def sign(self, data: bytes) -> bytes:
        digest = hashlib.sha256(data).digest()
        return der_signature(self._backend.sign_digest(self._label, digest))

    def __repr__(self) -> str:
        return f"Pkcs11Signer(label={self._label!r})"

    def __reduce__(self) -> NoReturn:
        _refuse_pickle()


class Pkcs11KeyBackend:
    """CA keys in a PKCS#11 token; see the module docstring. Close it (or use ``with``) when done.

    ``max_sessions`` bounds the pool of sessions lent to threads. ``serialize=False`` lets threads
    call the module concurrently: only for a module documented as thread-safe even when
    initialised with ``C_Initialize(NULL)`` (SoftHSM is not). ``session_keys`` (the default) signs
    with a per-session, non-extractable session-object copy of the key where the token allows it
    (see ``_TokenLink.session_copy`` and docs/hsm.md); ``False`` signs with the token object.
    """

    name = "pkcs11"

    def __init__(
        self,
        module: str,
        token_label: str,
        pin: bytes,
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        serialize: bool = True,
        session_keys: bool = True,
    ) -> None:
        if not token_label:
            raise KeyBackendError("key.not-configured", "no PKCS#11 token label configured (pkcs11-token)")
        try:
            pin_text = pin.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise KeyBackendError("key.locked", "the token PIN is not valid UTF-8") from exc
        if not pin_text:
            raise KeyBackendError("key.locked", "no token PIN given (SMKI_PKCS11_PIN or the prompt)")
        self._module = module
        self._token_label = token_label
        self._options = (max_sessions, serialize)
        self._session_keys = session_keys
        self._link: _TokenLink | None = _link(module, token_label, pin_text, max_sessions, serialize)

    def __repr__(self) -> str:
        return f"Pkcs11KeyBackend(module={self._module!r}, token={self._token_label!r})"

    def __reduce__(self) -> NoReturn:
        _refuse_pickle()

    def __enter__(self) -> Pkcs11KeyBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Give back this backend's share of the login; the last one out logs the token out."""
        link, self._link = self._link, None
        if link is not None:
            _unlink(link)

    @property
    def _live(self) -> _TokenLink:
        link = self._link
        if link is None:
            raise KeyBackendError("key.closed", "this PKCS#11 key backend has been closed")
        if link.library.pid != os.getpid():  # inherited over fork: log in again in this process
            self._link = link = _link(self._module, self._token_label, link._pin, *self._options)
        return link

    def _objects(self, session: Any, label: str, object_class: ObjectClass | None = None) -> list[Any]:
        """The token objects labelled ``label``: never the session copies made for signing, which
        every session of this process sees too."""
        attrs: dict[Attribute, Any] = {Attribute.LABEL: label, Attribute.TOKEN: True}
        if object_class is not None:
            attrs[Attribute.CLASS] = object_class
        return list(session.get_objects(attrs))

    def _one(self, session: Any, label: str, object_class: ObjectClass) -> Any:
        found = self._objects(session, label, object_class)
        if len(found) == 1:
            return found[0]
        if not found:
            error = KeyBackendError("key.missing", f"no key labelled {label!r} on token {self._token_label!r}")
            if self._link is not None:
                self._link.note_fault(error)  # SoftHSM: a token whose files went away looks empty
            raise error
        raise KeyBackendError("key.ambiguous", f"{len(found)} objects labelled {label!r}; expected one")

    def exists(self, label: str) -> bool:
        check_label(label)
        link = self._live
        with link.session(f"looking for key {label!r}") as pooled:
            return bool(self._objects(pooled.session, label))

    def generate(self, label: str) -> ec.EllipticCurvePublicKey:
        check_label(label)
        link = self._live
        with link.ceremony, link.session(f"generating key {label!r}") as pooled:
            session = pooled.session
            if self._objects(session, label):
                raise KeyBackendError("key.exists", f"a key labelled {label!r} already exists on the token")
            params = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
            )
            public, _private = params.generate_keypair(
                store=True,
                label=label,
                id=label.encode("utf-8"),
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                public_template={Attribute.TOKEN: True, Attribute.PRIVATE: False},
                private_template={
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.SIGN: True,
                    Attribute.DERIVE: False,
                    Attribute.DECRYPT: False,
                    Attribute.UNWRAP: False,
                },
            )
            key = _public_key(public)
        log.info("generated P-256 key %r on PKCS#11 token %r", label, self._token_label)
        return key

    def public_key(self, label: str) -> ec.EllipticCurvePublicKey:
        check_label(label)
        link = self._live
        with link.session(f"reading public key {label!r}") as pooled:
            return _public_key(self._one(pooled.session, label, ObjectClass.PUBLIC_KEY))

    def key_policy(self, label: str) -> KeyPolicy:
        """The private key's protection flags as the token reports them."""
        check_label(label)
        link = self._live
        names = [
            Attribute.SENSITIVE,
            Attribute.EXTRACTABLE,
            Attribute.ALWAYS_SENSITIVE,
            Attribute.NEVER_EXTRACTABLE,
            Attribute.TOKEN,
            Attribute.PRIVATE,
        ]
        with link.session(f"reading key {label!r}") as pooled:
            values = self._one(pooled.session, label, ObjectClass.PRIVATE_KEY).get_attributes(names)
        return KeyPolicy(*(bool(values[name]) for name in names))

    def signer(self, label: str) -> Pkcs11Signer:
        """A signer for ``label``; both halves must be on the token now, not at the first signature."""
        check_label(label)
        link = self._live
        with link.session(f"opening key {label!r}") as pooled:
            public = _public_key(self._one(pooled.session, label, ObjectClass.PUBLIC_KEY))
            private = self._one(pooled.session, label, ObjectClass.PRIVATE_KEY)
            known = pooled.keys.get(label)
            if known is None or known.handle != private.handle:  # new, or replaced on the token
                self._forget(pooled, label)
                pooled.keys[label] = private
            if self._session_keys:
                self._session_key(link, pooled, label)  # make this session's copy now
        return Pkcs11Signer(self, label, public)

    def sign_digest(self, label: str, digest: bytes) -> bytes:
        """Raw ``CKM_ECDSA`` over a SHA-256 ``digest`` with the key ``label`` (``r || s``)."""
        link = self._live
        with link.session(f"signing with key {label!r}") as pooled:
            if self._session_keys:
                entry = pooled.signing_keys.get(label)
                if entry is None or entry[1] <= time.monotonic():  # first use, or time to re-check
                    entry = self._session_key(link, pooled, label)
                key = entry[0]
            else:
                key = self._token_key(pooled, label)
            raw: bytes = key.sign(digest, mechanism=Mechanism.ECDSA)
            return raw

    def _token_key(self, pooled: _Pooled, label: str) -> Any:
        key = pooled.keys.get(label)
        if key is None:
            key = pooled.keys[label] = self._one(pooled.session, label, ObjectClass.PRIVATE_KEY)
        return key

    def _session_key(self, link: _TokenLink, pooled: _Pooled, label: str) -> tuple[Any, float]:
        """What ``pooled``'s session signs ``label`` with, and when to look at the token key again.

        The session copy where the token makes one, else the token object. A copy goes on
        signing whatever happens to the token object, so every ``KEY_CHECK_SECONDS`` one read of
        the token object checks it is still there: a key deleted from the token, or a token that
        went away, stops the signing within that time, with the error signing with the token
        object would have raised (SoftHSM: ``ObjectHandleInvalid``, so ``key.missing``).
        """
        token_key = self._token_key(pooled, label)
        entry = pooled.signing_keys.get(label)
        if entry is None:
            key = link.session_copy(pooled, label, token_key)
        else:
            key = entry[0]
            token_key.get_attributes([Attribute.CLASS])  # raises if the token object is gone
        due = time.monotonic() + KEY_CHECK_SECONDS if key is not token_key else math.inf
        entry = pooled.signing_keys[label] = (key, due)
        return entry

    @staticmethod
    def _forget(pooled: _Pooled, label: str) -> None:
        """Drop ``label``'s cached objects in this session, destroying its copy (module lock held)."""
        pooled.keys.pop(label, None)
        entry = pooled.signing_keys.pop(label, None)
        if entry is not None and any(copy is entry[0] for copy in pooled.copies):
            pooled.copies = [copy for copy in pooled.copies if copy is not entry[0]]
            _destroy_quietly(entry[0])


def _public_key(obj: Any) -> ec.EllipticCurvePublicKey:
    """CKA_EC_POINT (a DER OCTET STRING around the point) and CKA_EC_PARAMS as a P-256 key."""
    try:
        key = serialization.load_der_public_key(encode_ec_public_key(obj))
    except (ValueError, TypeError) as exc:
        raise KeyBackendError("key.wrong-type", "the token's public key is not a valid EC key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyBackendError("key.wrong-type", "the token's key is not a P-256 key")
    return key
