"""The PKCS#11 key backend against a throw-away SoftHSM2 token (see conftest.py)."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from smki.config import Settings
from smki.keys import open_backend
from smki.keys.base import KeyBackendError
from smki.keys.pkcs11 import KEY_CHECK_SECONDS, Pkcs11KeyBackend, _libraries
from tests.keys.conftest import DOOMED_TOKEN, PIN, PIN_TOKEN, SoftHsm

pytestmark = pytest.mark.pkcs11

ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def fresh_label() -> str:
    """The token lives for the whole session; each test generates keys under its own labels."""
    return f"k-{uuid.uuid4().hex[:12]}"


def verifies(public: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public.verify(signature, data, ECDSA_SHA256)
    except Exception:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Keys and signatures


def test_generated_key_signs_der_ecdsa_that_cryptography_and_openssl_verify(
    backend: Pkcs11KeyBackend, tmp_path: Path
) -> None:
    label = fresh_label()
    assert not backend.exists(label)
    public = backend.generate(label)
    assert backend.exists(label)
    assert isinstance(public.curve, ec.SECP256R1)
    signer = backend.signer(label)
    assert signer.label == label
    assert signer.public_key() == public
    data = b"0\x82\x01\x00 a TBSCertificate would go here" * 20
    signature = signer.sign(data)
    assert signature[0] == 0x30  # DER SEQUENCE, not the token's raw r || s
    public.verify(signature, data, ECDSA_SHA256)
    assert not verifies(public, signature, data + b"x")

    (tmp_path / "pub.pem").write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "sig.der").write_bytes(signature)
    (tmp_path / "data").write_bytes(data)
    result = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", "data"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "Verified OK" in result.stdout


def test_existing_label_is_refused_and_the_key_is_kept(backend: Pkcs11KeyBackend) -> None:
    label = fresh_label()
    first = backend.generate(label)
    with pytest.raises(KeyBackendError) as info:
        backend.generate(label)
    assert info.value.code == "key.exists"
    assert backend.public_key(label) == first
    assert backend.signer(label).public_key() == first


@pytest.mark.parametrize(("label", "code"), [("../escape", "key.bad-label"), ("", "key.bad-label")])
def test_bad_labels(backend: Pkcs11KeyBackend, label: str, code: str) -> None:
    for call in (backend.exists, backend.generate, backend.signer):
        with pytest.raises(KeyBackendError) as info:
            call(label)
        assert info.value.code == code


def test_missing_key(backend: Pkcs11KeyBackend) -> None:
    with pytest.raises(KeyBackendError) as info:
        backend.signer(fresh_label())
    assert info.value.code == "key.missing"


DESTROY_PRIVATE = r"""
import sys
import pkcs11
from pkcs11 import ObjectClass

module, token, pin, label = sys.argv[1:]
with pkcs11.lib(module).get_token(token_label=token).open(rw=True, user_pin=pin) as session:
    session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label).destroy()
"""


def test_a_signer_needs_the_private_half_on_the_token(backend: Pkcs11KeyBackend, softhsm: SoftHsm) -> None:
    label = fresh_label()
    backend.generate(label)
    command = [sys.executable, "-c", DESTROY_PRIVATE, softhsm.module, softhsm.token, PIN, label]
    subprocess.run(command, check=True, timeout=60)
    assert backend.exists(label)  # the public half is still there …
    with pytest.raises(KeyBackendError) as info:
        backend.signer(label)  # … but a signer is refused up front, not at the first signature
    assert info.value.code == "key.missing"


# Run in a separate process with python-pkcs11 alone, so the check does not trust smki's code.
EXTRACTION_PROBE = r"""
import json, sys
import pkcs11
from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11

module, token, pin, label = sys.argv[1:]
out = {}
with pkcs11.lib(module).get_token(token_label=token).open(rw=True, user_pin=pin) as session:
    key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
    for name in ("SENSITIVE", "EXTRACTABLE", "ALWAYS_SENSITIVE", "NEVER_EXTRACTABLE", "TOKEN",
                 "SIGN", "DECRYPT", "DERIVE", "UNWRAP"):
        out[name] = bool(key[getattr(Attribute, name)])
    wrapper = session.generate_key(KeyType.AES, 256,
                                   capabilities=MechanismFlag.WRAP | MechanismFlag.ENCRYPT)

    def attempt(name, action):
        try:
            action()
            out[name] = "succeeded"
        except p11.PKCS11Error as exc:
            out[name] = type(exc).__name__

    attempt("read_value", lambda: key[Attribute.VALUE])
    attempt("wrap", lambda: wrapper.wrap_key(key))
    attempt("make_extractable", lambda: key.__setitem__(Attribute.EXTRACTABLE, True))
    attempt("make_readable", lambda: key.__setitem__(Attribute.SENSITIVE, False))
print(json.dumps(out))
"""


def test_private_key_is_sensitive_non_extractable_and_export_fails(
    backend: Pkcs11KeyBackend, softhsm: SoftHsm
) -> None:
    label = fresh_label()
    backend.generate(label)
    policy = backend.key_policy(label)
    assert policy.sensitive and policy.always_sensitive and policy.token and policy.private
    assert not policy.extractable and policy.never_extractable

    probe = subprocess.run(
        [sys.executable, "-c", EXTRACTION_PROBE, softhsm.module, softhsm.token, PIN, label],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    seen = json.loads(probe.stdout)
    assert seen["SENSITIVE"] is True and seen["EXTRACTABLE"] is False and seen["NEVER_EXTRACTABLE"] is True
    assert seen["TOKEN"] is True and seen["SIGN"] is True
    assert seen["DECRYPT"] is False and seen["DERIVE"] is False and seen["UNWRAP"] is False
    assert seen["read_value"] == "AttributeSensitive"
    assert seen["wrap"] == "KeyUnextractable"
    for change in ("make_extractable", "make_readable"):  # the flags only ever tighten
        assert seen[change] != "succeeded", seen


def test_open_backend_builds_the_pkcs11_backend(softhsm: SoftHsm) -> None:
    settings = Settings(key_backend="pkcs11", pkcs11_module=softhsm.module, pkcs11_token=softhsm.token)
    opened = open_backend(settings, PIN.encode())
    try:
        assert opened.name == "pkcs11"
        label = fresh_label()
        public = opened.generate(label)
        assert verifies(public, opened.signer(label).sign(b"data"), b"data")
    finally:
        assert isinstance(opened, Pkcs11KeyBackend)
        opened.close()


# --------------------------------------------------------------------------------------------
# Refusals: PIN, token, module, configuration


def test_wrong_pin_is_key_locked(softhsm: SoftHsm) -> None:
    with pytest.raises(KeyBackendError) as info:
        softhsm.backend(pin="0000-wrong")
    assert info.value.code == "key.locked"


def test_wrong_pin_is_refused_while_another_backend_is_logged_in(
    backend: Pkcs11KeyBackend, softhsm: SoftHsm
) -> None:
    # The login is shared in-process; a second backend must still prove it knows the PIN.
    with pytest.raises(KeyBackendError) as info:
        softhsm.backend(pin="0000-wrong")
    assert info.value.code == "key.locked"
    with softhsm.backend() as second:  # the right PIN joins the login
        label = fresh_label()
        second.generate(label)
    assert backend.exists(label)  # closing the second backend did not log the first one out
    assert verifies(backend.public_key(label), backend.signer(label).sign(b"d"), b"d")


@pytest.mark.parametrize(
    ("module", "token", "pin", "code"),
    [
        (None, "no-such-token", PIN, "key.token-not-found"),
        ("/nonexistent/libpkcs11.so", "smki-test", PIN, "key.module-missing"),
        ("/etc/hostname", "smki-test", PIN, "key.module-missing"),
        ("", "smki-test", PIN, "key.not-configured"),
        (None, "", PIN, "key.not-configured"),
        (None, "smki-test", "", "key.locked"),
    ],
)
def test_configuration_mistakes_are_coded(
    softhsm: SoftHsm, module: str | None, token: str, pin: str, code: str
) -> None:
    with pytest.raises(KeyBackendError) as info:
        Pkcs11KeyBackend(softhsm.module if module is None else module, token, pin.encode())
    assert info.value.code == code
    assert info.value.message and "\n" not in info.value.message


def test_closed_backend_is_refused(softhsm: SoftHsm) -> None:
    opened = softhsm.backend()
    label = fresh_label()
    opened.generate(label)
    signer = opened.signer(label)
    opened.close()
    with pytest.raises(KeyBackendError) as info:
        signer.sign(b"data")
    assert info.value.code == "key.closed"


def test_pin_never_in_repr_errors_logs_or_pickles(softhsm: SoftHsm, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with softhsm.backend() as opened:
        label = fresh_label()
        opened.generate(label)
        signer = opened.signer(label)
        signer.sign(b"data")
        texts += [repr(opened), str(opened), repr(signer), repr(vars(opened)), repr(opened.key_policy(label))]
        for thing in (opened, signer):
            with pytest.raises(KeyBackendError) as refused:
                pickle.dumps(thing)
            assert refused.value.code == "key.not-portable"
        for attempt in (lambda: softhsm.backend(pin="0000-wrong"), lambda: opened.signer("absent")):
            with pytest.raises(KeyBackendError) as info:
                attempt()
            texts += [str(info.value), repr(info.value), repr(info.value.__cause__)]
    texts.append(caplog.text)
    assert "generated P-256 key" in caplog.text  # logging did happen, and …
    for text in texts:
        assert PIN not in text, text  # … the PIN is in none of it


# --------------------------------------------------------------------------------------------
# Concurrency: threads share a session pool; processes open their own backend


def test_signatures_from_many_threads_all_verify(backend: Pkcs11KeyBackend) -> None:
    label = fresh_label()
    public = backend.generate(label)
    signer = backend.signer(label)
    messages = [f"tbs {i}".encode() * 7 for i in range(400)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        signatures = list(pool.map(signer.sign, messages))
    assert all(verifies(public, sig, msg) for sig, msg in zip(signatures, messages, strict=True))


def _open_barrier(barrier: Barrier) -> None:
    global _BARRIER
    _BARRIER = barrier


_BARRIER: Barrier | None = None


def _sign_in_worker(
    conf: str, settings: Settings, pin: bytes, label: str, count: int
) -> tuple[int, list[bytes]]:
    """A batch worker: reopen the backend in this process, as batch issuance does."""
    os.environ["SOFTHSM2_CONF"] = conf
    assert _BARRIER is not None
    _BARRIER.wait(timeout=60)  # both workers are alive at once: two processes really sign
    backend = open_backend(settings, pin)
    signer = backend.signer(label)
    return os.getpid(), [signer.sign(f"{os.getpid()} {i}".encode()) for i in range(count)]


def test_signatures_from_two_forkserver_processes_verify(backend: Pkcs11KeyBackend, softhsm: SoftHsm) -> None:
    label = fresh_label()
    public = backend.generate(label)
    settings = Settings(key_backend="pkcs11", pkcs11_module=softhsm.module, pkcs11_token=softhsm.token)
    context = multiprocessing.get_context("forkserver")
    barrier = context.Barrier(2)
    with ProcessPoolExecutor(2, mp_context=context, initializer=_open_barrier, initargs=(barrier,)) as pool:
        futures = [
            pool.submit(_sign_in_worker, str(softhsm.conf), settings, PIN.encode(), label, 50)
            for _ in range(2)
        ]
        results = [future.result(timeout=120) for future in futures]
    pids = {pid for pid, _ in results}
    assert len(pids) == 2 and os.getpid() not in pids
    for pid, signatures in results:
        assert all(verifies(public, sig, f"{pid} {i}".encode()) for i, sig in enumerate(signatures))
    assert verifies(public, backend.signer(label).sign(b"parent"), b"parent")  # parent unaffected


def test_backend_inherited_over_fork_logs_in_again_in_the_child(backend: Pkcs11KeyBackend) -> None:
    label = fresh_label()
    public = backend.generate(label)
    signer = backend.signer(label)
    signer.sign(b"warm the parent's session pool")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.write(write, signer.sign(b"child"))
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child_signature = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert verifies(public, child_signature, b"child")
    assert verifies(public, signer.sign(b"parent"), b"parent")  # the child's re-init left us alone


# --------------------------------------------------------------------------------------------
# Token failures: coded errors, never raw PKCS#11 exceptions, and resumable


# python-pkcs11 may also report, from a search object's __del__, that the module it belonged to
# was finalised ("Exception ignored in OperationContext.__del__"): noise from the library itself.
finalising = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def test_signer_whose_token_directory_disappears_raises_coded_errors(softhsm: SoftHsm) -> None:
    with softhsm.backend(token=DOOMED_TOKEN) as doomed:
        label = fresh_label()
        public = doomed.generate(label)
        signer = doomed.signer(label)
        assert verifies(public, signer.sign(b"before"), b"before")
        shutil.rmtree(softhsm.token_path(DOOMED_TOKEN))
        # A session copy of the key (the default) signs on until its next look at the token
        # object, at most KEY_CHECK_SECONDS later; whatever it signed meanwhile is valid.
        deadline = time.monotonic() + KEY_CHECK_SECONDS + 5
        while time.monotonic() < deadline:
            try:
                assert verifies(public, signer.sign(b"meanwhile"), b"meanwhile")
            except KeyBackendError as exc:
                assert exc.code.startswith("key.")
                break
            time.sleep(KEY_CHECK_SECONDS / 10)
        else:
            pytest.fail("signing went on after the token disappeared")
        for _ in range(3):  # every later call fails too
            with pytest.raises(KeyBackendError) as info:
                signer.sign(b"after")
            assert info.value.code.startswith("key.")


@finalising
def test_finalized_module_fails_the_call_cleanly_and_the_next_one_resumes(backend: Pkcs11KeyBackend) -> None:
    label = fresh_label()
    public = backend.generate(label)
    signer = backend.signer(label)
    assert verifies(public, signer.sign(b"before"), b"before")
    next(iter(_libraries.values())).lib.finalize()  # what a crashed or unplugged HSM looks like
    with pytest.raises(KeyBackendError) as info:
        signer.sign(b"during")
    assert info.value.code == "key.token-failed"
    assert verifies(public, signer.sign(b"resumed"), b"resumed")


@finalising
def test_token_failure_mid_batch_of_threads_never_leaks_raw_errors(backend: Pkcs11KeyBackend) -> None:
    label = fresh_label()
    public = backend.generate(label)
    signer = backend.signer(label)
    outcomes: list[tuple[bytes, bytes | KeyBackendError]] = []
    unexpected: list[BaseException] = []
    stop = threading.Event()

    def work(worker: int) -> None:
        i = 0
        while not stop.is_set():
            message = f"{worker}/{i}".encode()
            i += 1
            try:
                outcomes.append((message, signer.sign(message)))
            except KeyBackendError as exc:
                outcomes.append((message, exc))
            except BaseException as exc:  # a raw PKCS11Error would land here
                unexpected.append(exc)
                return

    def wait_for(count: int) -> None:
        while len(outcomes) < count and not unexpected:
            stop.wait(0.001)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(100)
        library = next(iter(_libraries.values()))
        with library.lock:  # mid-batch, between two calls into the module
            library.lib.finalize()
            finalized_at = len(outcomes)
        wait_for(finalized_at + 200)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert unexpected == []
    failures = [result for _, result in outcomes if isinstance(result, KeyBackendError)]
    signed = [(msg, result) for msg, result in outcomes if isinstance(result, bytes)]
    assert failures and all(error.code == "key.token-failed" for error in failures)
    assert all(verifies(public, sig, msg) for msg, sig in signed)  # nothing "signed" that is not valid
    assert len(signed) > finalized_at  # and signing resumed by itself once the module was back


SET_PIN = r"""
import sys
import pkcs11

module, token, old, new = sys.argv[1:]
with pkcs11.lib(module).get_token(token_label=token).open(rw=True, user_pin=old) as session:
    session.set_pin(old, new)
"""


@finalising
def test_a_pin_refused_at_re_login_is_never_retried(softhsm: SoftHsm) -> None:
    """A real HSM blocks its PIN after a few wrong tries: a long-running process must not loop."""

    def set_pin(old: str, new: str) -> None:
        subprocess.run([sys.executable, "-c", SET_PIN, softhsm.module, PIN_TOKEN, old, new], check=True)

    with softhsm.backend(token=PIN_TOKEN) as opened:
        label = fresh_label()
        public = opened.generate(label)
        signer = opened.signer(label)
        set_pin(PIN, "4242-changed")  # someone changes the PIN while smki runs …
        next(iter(_libraries.values())).lib.finalize()  # … and the HSM restarts
        try:
            with pytest.raises(KeyBackendError) as failed:
                signer.sign(b"during")
            assert failed.value.code == "key.token-failed"
            with pytest.raises(KeyBackendError) as refused:
                signer.sign(b"re-login with the old PIN")
            assert refused.value.code == "key.locked"
        finally:
            set_pin("4242-changed", PIN)
        with pytest.raises(KeyBackendError) as latched:  # PIN right again, but no new attempt
            signer.sign(b"after")
        assert latched.value.code == "key.locked"
    next(iter(_libraries.values())).lib.finalize()  # SoftHSM re-reads a changed PIN only on restart
    with softhsm.backend(token=PIN_TOKEN) as reopened:  # reopening with the PIN is the way back
        assert verifies(public, reopened.signer(label).sign(b"again"), b"again")
