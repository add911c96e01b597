"""What ``smki serve`` checks before it binds a port: everything it will need to serve, opened once.

An operator who starts the server with a wrong passphrase, an unplugged token, an unreachable
database or a database migrated by a newer smki must learn it at once, as one coded line, with
nothing listening — not from a batch that is accepted and then fails every CSR. So before binding:

1. the database opens and is at the schema revision this smki ships (``smki db upgrade`` moves an
   older one on; a newer one is refused);
2. every CA key opens (file passphrase or PKCS#11 PIN), matches its certificate and signs — the
   Root (ARLs), the Organisation CA, the Device CA and the credentials CA (the listeners' and
   clients' credentials);
3. the listeners' server credential is there (issued on first use) and loads as a TLS context.

Each failure is an :class:`~smki.errors.SmkiError`; anything else the drivers raise is turned into
one here, so the CLI prints ``error: <code>: <message>`` and exits non-zero.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from smki.ca.credentials import CREDENTIALS_CA_LABEL
from smki.domain import CertKind
from smki.errors import SmkiError
from smki.services.context import Home, open_home

PROBE = b"smki serve: preflight signature"

T = TypeVar("T")


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def open_database(home_path: Path | str, secret: bytes | None) -> Home:
    """The home with its store open at this smki's schema revision (``store.*`` codes: unreachable,
    not initialised, outdated — upgrading is ``smki db upgrade``, never a side effect of a start —
    or newer than this smki)."""
    try:
        return open_home(home_path, secret)
    except SmkiError:
        raise
    except Exception as exc:  # the driver's own error: say what it means, in one line
        raise SmkiError("store.unavailable", f"cannot open the database: {_short(exc)}") from exc


def check_ca_keys(home: Home) -> list[str]:
    """Open every CA key this server signs with; each must match its certificate and sign.

    The three CA keys as the readiness probe checks them (:func:`smki.services.health.check_keys`),
    and the credentials CA's. Returns the labels checked. Codes: ``key.secret-missing``,
    ``key.locked`` (wrong passphrase), ``key.missing``, ``hsm.*`` (token absent, wrong PIN),
    ``ca.not-initialised``, ``ca.not-in-force`` (its certificate revoked), ``key.mismatch``.
    """
    from smki.services.credentials import credentials_ca
    from smki.services.health import CA_KEYS, check_keys

    ok, detail = check_keys(home)
    if not ok:
        raise SmkiError("key.mismatch", detail)
    labels = list(CA_KEYS.values())
    credentials = _guard(lambda: credentials_ca(home))
    if credentials is not None:  # made on the first start otherwise (ensure_server_credential)
        public = credentials.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        try:
            public.verify(home.backend().signer(CREDENTIALS_CA_LABEL).sign(PROBE), PROBE, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise SmkiError("key.mismatch", f"key {CREDENTIALS_CA_LABEL!r} does not match the credentials CA") from None
        labels.append(CREDENTIALS_CA_LABEL)
    return labels


def check_signing_key(home: Home, kind: CertKind) -> None:
    """The CA key a command is about to sign with opens, matches its certificate and signs.

    Checked before a CLI batch is named in the audit log or writes anything: a wrong passphrase, a
    damaged or swapped key file or an absent token is one line with nothing recorded, not a
    ``batch.started``/``batch.failed`` pair for a batch that never could start."""
    from smki.services.health import CA_KEYS

    certificate = _guard(lambda: home.ca_certificate(kind))
    public = certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    label = CA_KEYS[kind]
    try:
        public.verify(home.backend().signer(label).sign(PROBE), PROBE, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SmkiError("key.mismatch", f"key {label!r} does not match the {kind.value} certificate") from None


def check_listener_context(make: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """The listeners' TLS context, or ``listener.credential-invalid``."""
    try:
        return make()
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise SmkiError("listener.credential-invalid",
                        f"the listener credential cannot be loaded: {_short(exc)}") from exc


def _guard(call: Callable[[], T]) -> T:
    try:
        return call()
    except SmkiError:
        raise
    except Exception as exc:
        raise SmkiError("store.unavailable", f"cannot read the database: {_short(exc)}") from exc


@contextmanager
def preflight_home(home_path: Path | str, secret: bytes | None) -> Iterator[Home]:
    """The checked home for the parent's remaining preparation; closed (with the key backend) after."""
    home = open_database(home_path, secret)
    try:
        check_ca_keys(home)
        yield home
    finally:
        backend = home._backend
        close = getattr(backend, "close", None)
        if close is not None:
            close()
        home.close()
