"""Secrets every process of every node shares: the Portal's form-token key (issue 11, point 3).

The Portal binds each form to the signed-in identity with an HMAC (``portal.form-expired`` when it
does not match). With a key per process, a form rendered by one process and posted to another —
``--workers N``, or two nodes behind a load balancer — was refused at random. The key now lives in
the database all nodes share (:mod:`smki.store.secrets`), made on first use.

Rotation (``smki portal rotate-form-key``): the new key signs every form from then on; the previous
key is still accepted, so forms already on someone's screen still post. Each process re-reads the
keys at most ``CACHE_SECONDS`` after a rotation; rotating twice within that time (or twice in a
row) retires the key before the last one, expiring every open form: the way to cut off a key that
may have leaked.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime

from smki.audit import AuditEvent
from smki.services.context import Home
from smki.store.secrets import rotate_secret, secrets_reader

FORM_KEY = "portal-form-key"
CACHE_SECONDS = 30.0
KEY_BYTES = 32

_cache: dict[tuple[str, str], tuple[float, tuple[bytes, ...]]] = {}
_lock = threading.Lock()


def _url(home: Home) -> str:
    return str(home.store.engine.url)


def form_token_keys(home: Home) -> tuple[bytes, ...]:
    """The keys forms are checked against, the one to sign new forms with first."""
    key = (_url(home), FORM_KEY)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(key)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
    secret = secrets_reader(home.store.engine).secret_or_new(FORM_KEY, os.urandom(KEY_BYTES), datetime.now(UTC))
    keys = (secret.value,) if secret.previous is None else (secret.value, secret.previous)
    with _lock:
        _cache[key] = (now, keys)
    return keys


def rotate_form_key(home: Home, *, actor: str) -> datetime:
    """A new form-token key for every node (audited); the previous one is still accepted."""
    now = datetime.now(UTC)
    with home.store.transaction() as tx:
        rotate_secret(tx, FORM_KEY, os.urandom(KEY_BYTES), now)
        tx.append_audit([AuditEvent(actor, "secret.rotated", FORM_KEY, {"name": FORM_KEY})])
    with _lock:
        _cache.pop((_url(home), FORM_KEY), None)
    return now
