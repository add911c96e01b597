"""A refused CSR in a Portal batch → the response record's status word and DCC error code.

The Portal batch record (spec §3.2, App. F) uses four words: ``success``, ``error``, ``anomaly``,
``ineligible``. The DCC error code is the same one the Batched Device CSR web service returns for
that refusal, taken from the one mapping table in ``smki.interfaces.dcc.codec`` so the Portal
and the web service can never disagree.
"""

from __future__ import annotations

from smki.interfaces.dcc.codec import DeviceStatus, Service, dcc_error_for
from smki.services.device_issuance import DeviceOutcome

_WORDS = {
    DeviceStatus.ISSUANCE_ANOMALY: "anomaly",
    DeviceStatus.INELIGIBLE: "ineligible",
}


def classify_batch_outcome(outcome: DeviceOutcome) -> tuple[str, str]:
    """(status word, DCC ErrorCode) for a CSR that got no certificate."""
    code = outcome.error_code or "issuance.anomaly"
    result = dcc_error_for(Service.BATCH, code, outcome.error_message or code)
    status = result.status
    return _WORDS.get(status, "error") if isinstance(status, DeviceStatus) else "error", result.error.code
