"""Whether this process can sign right now: what a running server learns when a CA key goes away.

The server checks every key before it starts (:mod:`smki.services.preflight`), but a key can become
unusable while it runs (an HSM token removed, a key file moved away). The first batch that meets it
reports it here; from then on this process refuses new batches and Device CSRs with the key's own
code (``key.*``/``hsm.*``: HTTP 503, the DCC services' CA/workflow error) rather than accepting work
and charging capacity for CSRs it cannot sign, and ``healthy()`` is False (for a readiness probe).
The batch runner probes the key every ``PROBE_SECONDS`` and clears the fault when it opens again.

Per process: with ``--workers N`` each process learns it from its own first failure (or probe).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from smki.errors import SmkiError

PROBE_SECONDS = 5.0


@dataclass(frozen=True)
class KeyFault:
    code: str
    message: str
    since: float


_lock = threading.Lock()
_fault: KeyFault | None = None


def is_key_fault(code: str) -> bool:
    """A refusal that means the CA cannot sign (rather than a fault of the request)."""
    return code.startswith(("key.", "hsm."))


def report_unusable(code: str, message: str) -> None:
    global _fault
    with _lock:
        if _fault is None or _fault.code != code:
            _fault = KeyFault(code, message, time.monotonic())


def report_usable() -> None:
    global _fault
    with _lock:
        _fault = None


def fault() -> KeyFault | None:
    return _fault


def healthy() -> bool:
    return _fault is None


def refuse_if_unusable() -> None:
    """Raise the key's own code while a CA key is known to be unusable in this process."""
    found = _fault
    if found is not None:
        raise SmkiError(found.code, f"the CA cannot sign now ({found.message}); no request is accepted until "
                                    "the key is back")
