"""DCC-compatible XML codecs for the Repository and Device CSR web services (spec §3.1, §3.2).

Pure functions, no I/O, no web framework: ``parse_*`` turns a body (bytes, or an iterable of
chunks) into a frozen dataclass or raises :class:`DccFormatError` (``.code`` is the DCC code,
e.g. ``FM:AA1``); ``render_*`` turns a dataclass into UTF-8 bytes with an XML declaration, and
:func:`iter_csr_batch_result` streams the one large answer. The messages live in
``repository_messages`` and ``csr_messages``; the safe parser in ``safe_xml``. This module is
the import point and holds the one table that turns smki's refusals into DCC statuses and
``ErrorCode``s, so the mapping is reviewed in one place (and documented in
``docs/dcc-web-services.md``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from smki.errors import SmkiError
from smki.interfaces.dcc.csr_messages import (
    BUILD,
    DEFAULT_BATCH_MAX_BYTES,
    MAX_BATCH_CSRS,
    STATUS_PREFIX,
    TOO_MANY_CSRS_TEXT,
    VERSION,
    AdHocStatus,
    BatchStatus,
    CSRBatchResult,
    DccError,
    DeviceCertificate,
    DeviceCertificateSigningRequest,
    DeviceCertificateSigningResponse,
    DeviceCSR,
    DeviceStatus,
    SubmitCSRBatch,
    SubmitCSRBatchStatus,
    SubmitStatus,
    iter_csr_batch_result,
    parse_csr_batch_result,
    parse_device_csr_request,
    parse_device_csr_response,
    parse_submit_csr_batch,
    parse_submit_csr_batch_status,
    render_csr_batch_result,
    render_device_csr_request,
    render_device_csr_response,
    render_submit_csr_batch,
    render_submit_csr_batch_status,
)
from smki.interfaces.dcc.repository_messages import (
    CertificateDataRequest,
    CertificateDataResponse,
    CertificateRecord,
    CertificateSearchRequest,
    CertificateSearchResponse,
    InvalidSearchParameters,
    SearchBy,
    parse_certificate_data_request,
    parse_certificate_data_response,
    parse_certificate_search_request,
    parse_certificate_search_response,
    render_certificate_data_request,
    render_certificate_data_response,
    render_certificate_search_request,
    render_certificate_search_response,
    serial_hex,
)
from smki.interfaces.dcc.safe_xml import (
    DEFAULT_MAX_BYTES,
    FM_INVALID_XML,
    FM_TOO_MANY_CSRS,
    FM_UNKNOWN_BATCH,
    DccFormatError,
    MessageTooLarge,
)

__all__ = [
    "BATCH_REJECTED_CODE",
    "BUILD",
    "CSR_ERROR_CODES",
    "DEFAULT_BATCH_MAX_BYTES",
    "DEFAULT_MAX_BYTES",
    "DEVICE_LIMIT",
    "DUPLICATE",
    "FM_INVALID_XML",
    "FM_TOO_MANY_CSRS",
    "FM_UNKNOWN_BATCH",
    "MAX_BATCH_CSRS",
    "RULE_CODES",
    "STATUS_PREFIX",
    "TOO_MANY_CSRS_TEXT",
    "UNKNOWN_DEVICE",
    "VERSION",
    "AdHocStatus",
    "BatchStatus",
    "CSRBatchResult",
    "CertificateDataRequest",
    "CertificateDataResponse",
    "CertificateRecord",
    "CertificateSearchRequest",
    "CertificateSearchResponse",
    "DccError",
    "DccFormatError",
    "DccOutcome",
    "DeviceCSR",
    "DeviceCertificate",
    "DeviceCertificateSigningRequest",
    "DeviceCertificateSigningResponse",
    "DeviceStatus",
    "InvalidSearchParameters",
    "MessageTooLarge",
    "SearchBy",
    "Service",
    "SubmitCSRBatch",
    "SubmitCSRBatchStatus",
    "SubmitStatus",
    "dcc_error_for",
    "dcc_error_from",
    "iter_csr_batch_result",
    "parse_certificate_data_request",
    "parse_certificate_data_response",
    "parse_certificate_search_request",
    "parse_certificate_search_response",
    "parse_csr_batch_result",
    "parse_device_csr_request",
    "parse_device_csr_response",
    "parse_submit_csr_batch",
    "parse_submit_csr_batch_status",
    "rejected_error",
    "render_certificate_data_request",
    "render_certificate_data_response",
    "render_certificate_search_request",
    "render_certificate_search_response",
    "render_csr_batch_result",
    "render_device_csr_request",
    "render_device_csr_response",
    "render_submit_csr_batch",
    "render_submit_csr_batch_status",
    "rule_refusal",
    "rules_text",
    "serial_hex",
]

# --------------------------------------------------------------------------------------------
# smki refusal codes → DCC ErrorCodes

#: smki codes the services raise for refusals that have no ``csr.*`` code of the CA's own.
DUPLICATE = "csr.duplicate"  # a certificate already exists for this CSR's key (the DCC's CR:9999)
DEVICE_LIMIT = "csr.device-limit"  # 100 Device Certificates already issued for this Device ID
UNKNOWN_DEVICE = "device.unknown"  # Ad Hoc: no certificate issued yet for this Device ID
INELIGIBLE_DEVICE = "ra.ineligible"  # SEC L3.16: the Party may not request this Device's certificates

#: ``csr.*`` (CA CSR checks, see ``smki.ca.csr.ERROR_CODES``) → ``CR:`` code. ``CR:CC1`` "wrong
#: CSR OID" and ``CR:9999`` "duplicate" are the DCC's; the rest are smki's, stable once released.
CSR_ERROR_CODES: dict[str, str] = {
    "csr.signature-algorithm": "CR:CC1",  # wrong signature algorithm OID
    "csr.key-not-p256": "CR:CC2",  # wrong public-key algorithm or curve OID
    "csr.malformed": "CR:CC3",
    "csr.too-large": "CR:CC4",
    "csr.bad-signature": "CR:CC5",  # no proof of possession
    "csr.compressed-point": "CR:CC6",
    "csr.key-invalid": "CR:CC7",
    "csr.unexpected-attribute": "CR:CC8",
    "csr.unexpected-extension": "CR:CC9",
    "csr.key-usage-ambiguous": "CR:CC10",
    "csr.subject-not-empty": "CR:CC11",
    "csr.device-id-missing": "CR:CC12",
    "csr.device-id-invalid": "CR:CC13",
    "csr.subject-invalid": "CR:CC14",
    "csr.role-invalid": "CR:CC15",
    "csr.entity-id-invalid": "CR:CC16",
    "csr.hw-type": "CR:CC17",  # an hwType not in the configured list (spec §7.4)
    "csr.role-usage": "CR:CC18",  # a usage the Remote Party Role does not have (spec §7.3)
    DEVICE_LIMIT: "CR:CL1",
    DUPLICATE: "CR:9999",
}
#: Any other ``csr.*`` code (a check added later) until it gets its own entry.
CSR_OTHER = "CR:CC99"

#: RA rule ids (spec §2.1) → ``IN:`` code; the ErrorText lists every failing rule id.
RULE_CODES: dict[str, str] = {
    "device.evidence-of-need": "IN:AP1",
    "device.uept-completed": "IN:AP2",
    "device.gateway-channel": "IN:AP3",
    "any.srept-passed": "IN:AP4",
    "channel.device-via-gateway": "IN:CH1",
    "channel.spoti-organisation-only": "IN:CH2",
    "subscriber.authorised-for-policy": "IN:SU1",
    "org.entity-belongs-to-party": "IN:OR1",
    "org.role-permitted": "IN:OR2",
}
#: A failing rule with no entry of its own.
RULE_OTHER = "IN:RA1"

UNKNOWN_DEVICE_CODE = "UD:AA1"
INELIGIBLE_DEVICE_CODE = "IN:EL1"  # a CSR whose Device the requester is not an Eligible Subscriber for
BATCH_REJECTED_CODE = "WF:RJ1"  # a batch the RA rejected (REJECTED); ErrorText is the RA's reason
ANOMALY_CODE = "CA:IA1"  # issuance anomaly: prefix CA:, like CA_ERROR (spec §7.2); the suffix is smki's
CA_CODE = "CA:AA1"  # the CA could not sign (key backend, HSM); prefix CA: (spec §7.2)
WORKFLOW_CODE = "WF:AA1"  # capacity limits and other refusals of the request as a whole
#: An RA refusal of a request as a whole: on the Ad Hoc service (which has no INELIGIBLE status), of a
#: SubmitCSRBatch, and of a CSRBatchResult asked for over SPOTI (``channel.spoti-organisation-access``).
RA_WORKFLOW_CODE = "WF:RA1"
OTHER_CODE = "WF:AA9"  # any refusal code not listed here

#: Refusal code prefixes that mean the CA (signing) failed rather than the request.
_CA_PREFIXES = ("ca.", "key.", "keys.", "hsm.")
#: Refusal code prefixes that are workflow refusals (limits, batch state).
_WORKFLOW_PREFIXES = ("capacity.", "batch.", "workflow.")
_ANOMALY = "issuance.anomaly"


class Service(StrEnum):
    """Which web service a status is for: their status sets differ (no INELIGIBLE on Ad Hoc)."""

    AD_HOC = "ad-hoc"
    BATCH = "batch"


@dataclass(frozen=True, slots=True)
class DccOutcome:
    """The status and Error to put in a response for one refused CSR."""

    status: AdHocStatus | DeviceStatus
    error: DccError


def dcc_error_for(
    service: Service,
    code: str,
    message: str,
    rules: Iterable[str] = (),
) -> DccOutcome:
    """Map one smki refusal (``SmkiError.code`` / ``.message``, RA rule ids) to a DCC status and Error.

    * ``csr.*`` → CSR_ERROR with the ``CR:`` code from :data:`CSR_ERROR_CODES`;
    * RA refusals (``rules`` non-empty) → INELIGIBLE (batch) or WORKFLOW_ERROR ``WF:RA1`` (Ad Hoc,
      which has no INELIGIBLE), code from the first rule, ErrorText listing every rule id;
    * :data:`UNKNOWN_DEVICE` → UNKNOWN_DEVICE ``UD:AA1`` (Ad Hoc only; WORKFLOW_ERROR on batches);
    * ``FM:`` codes (a :class:`DccFormatError`) → FORMAT_ERROR (Ad Hoc only);
    * ``ca.*``/``key.*``/``hsm.*`` → CA_ERROR; ``issuance.anomaly`` → ISSUANCE_ANOMALY;
    * anything else → WORKFLOW_ERROR (``WF:AA1`` for known workflow prefixes, ``WF:AA9`` otherwise).
    """
    ad_hoc = service is Service.AD_HOC
    text = _one_line(message)
    coded = _one_line(f"{code}: {message}")
    rule_ids = [rule for rule in rules if rule]
    if rule_ids:
        listed = rules_text(rule_ids)
        if ad_hoc:
            return DccOutcome(AdHocStatus.WORKFLOW_ERROR, DccError(RA_WORKFLOW_CODE, listed))
        return DccOutcome(DeviceStatus.INELIGIBLE, DccError(RULE_CODES.get(rule_ids[0], RULE_OTHER), listed))
    if code == INELIGIBLE_DEVICE:
        if ad_hoc:
            return DccOutcome(AdHocStatus.WORKFLOW_ERROR, DccError(RA_WORKFLOW_CODE, text))
        return DccOutcome(DeviceStatus.INELIGIBLE, DccError(INELIGIBLE_DEVICE_CODE, text))
    if code.startswith("csr."):
        status = AdHocStatus.CSR_ERROR if ad_hoc else DeviceStatus.CSR_ERROR
        return DccOutcome(status, DccError(CSR_ERROR_CODES.get(code, CSR_OTHER), coded))
    if code == UNKNOWN_DEVICE and ad_hoc:
        return DccOutcome(AdHocStatus.UNKNOWN_DEVICE, DccError(UNKNOWN_DEVICE_CODE, text))
    if code.startswith("FM:") and ad_hoc:
        return DccOutcome(AdHocStatus.FORMAT_ERROR, DccError(code, text))
    if code == _ANOMALY:
        status = AdHocStatus.ISSUANCE_ANOMALY if ad_hoc else DeviceStatus.ISSUANCE_ANOMALY
        return DccOutcome(status, DccError(ANOMALY_CODE, text))
    if code.startswith(_CA_PREFIXES):
        status = AdHocStatus.CA_ERROR if ad_hoc else DeviceStatus.CA_ERROR
        return DccOutcome(status, DccError(CA_CODE, coded))
    workflow = AdHocStatus.WORKFLOW_ERROR if ad_hoc else DeviceStatus.WORKFLOW_ERROR
    known = code.startswith(_WORKFLOW_PREFIXES) or code in {UNKNOWN_DEVICE}
    return DccOutcome(workflow, DccError(WORKFLOW_CODE if known else OTHER_CODE, coded))


def rules_text(rule_ids: Iterable[str]) -> str:
    """ErrorText for a refusal by RA rules: every failing rule id, in one line."""
    return _one_line("refused by RA rule(s): " + ", ".join(rule_ids))


def rule_refusal(rule_ids: Iterable[str]) -> DccError:
    """The Error for a whole request refused by RA rules (a SubmitCSRBatch, a CSRBatchResult over
    SPOTI): a WORKFLOW_ERROR's code must be ``WF:``, so ``WF:RA1``, with the rules in ErrorText."""
    return DccError(RA_WORKFLOW_CODE, rules_text(rule_ids))


def rejected_error(reason: str | None) -> DccError:
    """The optional Error of a REJECTED ``CSRBatchResult``: ``WF:RJ1`` with the RA's reason.

    The reason was typed at a terminal or into a form and stored as given; a control character in
    it (a pasted escape sequence) is text XML 1.0 cannot carry, so it is flattened as every
    ErrorText is rather than making the answer impossible to build."""
    return DccError(BATCH_REJECTED_CODE, _one_line(reason or "") or "rejected by the Registration Authority")


def dcc_error_from(service: Service, error: SmkiError, rules: Iterable[str] = ()) -> DccOutcome:
    """:func:`dcc_error_for` for a raised :class:`SmkiError`."""
    return dcc_error_for(service, error.code, error.message, rules)


def _one_line(message: str) -> str:
    """ErrorText is one line of printable text, at most 500 characters, with no edge whitespace.

    Edge whitespace would not survive a round trip (readers strip values), so it is never sent.
    """
    flat = " ".join(message.split())
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in flat).strip()
    return cleaned if len(cleaned) <= 500 else cleaned[:499] + "…"
