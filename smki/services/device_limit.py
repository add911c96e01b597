"""At most 100 Device Certificates per Device ID: the DCC's ``CR:CL1`` (smki's ``csr.device-limit``).

Every route that issues Device Certificates (the web services — Ad Hoc, JSON, batched XML —, the
Portal's single CSRs and ZIP batches, ``smki request``, and the CA operator's own ``smki issue``:
the spec has no exception for it) refuses a Device CSR whose Device ID already has
``DEVICE_LIMIT`` certificates, counting every certificate ever issued for it, whatever its status
(spec §3.2). :func:`smki.services.requests.request_device_batch` applies
:class:`DeviceLimitScreen` to every chunk, between the signing workers' checking and signing
passes, so a CSR over the limit is never signed — and the Device ID it is counted under is the one
the full CSR checks read, not a guess from the raw bytes. The web services' single CSRs are also
checked against the store's count up front (:func:`smki.services.batch_jobs.request_single_device`).
``smki issue`` passes :func:`device_limit_screen` to the batch issuance itself. Only the benchmarks
(``smki bench``, random Device IDs, a throw-away home) run without it.

The decision itself is the RA's rule ``csr.device-limit`` (:func:`smki.ra.rules.device_limit_refusal`,
pure: a Device ID and its count in, a refusal or None out); this module only counts — the store's
count, read once per Device per batch, plus the batch's own — and turns refusals into entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from smki.ra import DEVICE_LIMIT, device_limit_refusal
from smki.services.context import Home
from smki.services.key_register import Entry

DEVICE_LIMIT_CODE = "csr.device-limit"
"""The refusal's code: the id of the RA rule that decides it (``smki.ra.rules.device_limit``)."""
__all__ = ["DEVICE_LIMIT", "DEVICE_LIMIT_CODE", "DeviceLimitScreen", "device_limit_screen"]


class DeviceLimitScreen:
    """A batch's per-Device limit, one chunk of checked CSRs at a time (a ``Screen``).

    A Device's count is the store's (read once per batch, in one look-up per chunk for the Devices
    the batch has not named before) plus the CSRs of this batch already let through for it. Chunks
    are screened in batch order, so when a Device is over the limit, its later CSRs are the ones
    refused. A CSR let through here and then refused by a later screen (a duplicate key) still
    counts: the limit errs on the side of refusing.
    """

    def __init__(self, counts_of: Callable[[Sequence[bytes]], dict[bytes, int]],
                 on_refused: Callable[[int], None] | None = None) -> None:
        self._counts_of = counts_of
        self._counts: dict[bytes, int] = {}
        self._on_refused = on_refused

    def __call__(self, entries: list[Entry]) -> list[Entry]:
        counts = self._counts
        fresh = {entry[2] for entry in entries if len(entry) != 4 and entry[2] not in counts}
        if fresh:
            found = self._counts_of(sorted(fresh))
            counts.update({device: found.get(device, 0) for device in fresh})
        out: list[Entry] = []
        refused = 0
        for entry in entries:
            if len(entry) != 4:
                device = entry[2]  # a checked entry: its Device ID
                count = counts[device]
                refusal = device_limit_refusal(device, count)  # the RA's decision: once per CSR, as before
                if refusal is not None:
                    out.append((entry[0], entry[1], DEVICE_LIMIT_CODE, refusal))
                    refused += 1
                    continue
                counts[device] = count + 1
            out.append(entry)
        if refused and self._on_refused is not None:
            self._on_refused(refused)
        return out


def device_limit_screen(home: Home) -> DeviceLimitScreen:
    """The per-Device limit for one request or batch (subscriber or CA operator), counting its refusals in the
    ``smki_csrs_total`` metric."""
    from smki.observability.metrics import csr_refused

    return DeviceLimitScreen(home.store.device_certificate_counts,
                             on_refused=lambda n: csr_refused(DEVICE_LIMIT_CODE, n))
