"""smki refusals → DCC statuses and ErrorCodes: the table is total, stable and renderable."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smki.errors import SmkiError
from smki.interfaces.dcc.codec import (
    CSR_ERROR_CODES,
    DEVICE_LIMIT,
    DUPLICATE,
    RULE_CODES,
    UNKNOWN_DEVICE,
    AdHocStatus,
    BatchStatus,
    CSRBatchResult,
    DccError,
    DccFormatError,
    DeviceCertificate,
    DeviceCertificateSigningResponse,
    DeviceStatus,
    Service,
    dcc_error_for,
    dcc_error_from,
    parse_csr_batch_result,
    parse_device_csr_response,
    render_csr_batch_result,
    render_device_csr_response,
)
from tests.api.test_dcc_xml_support import Libxml2Schemas, require_xsd

#: Every code the CA's CSR checks raise (smki.ca.csr.ERROR_CODES, spec §4.4), listed here so a
#: new check without a DCC code shows up as a failing test rather than a silent CR:CC99.
CA_CSR_CODES = [
    "csr.malformed",
    "csr.too-large",
    "csr.signature-algorithm",
    "csr.key-not-p256",
    "csr.compressed-point",
    "csr.key-invalid",
    "csr.bad-signature",
    "csr.unexpected-attribute",
    "csr.unexpected-extension",
    "csr.key-usage-ambiguous",
    "csr.subject-not-empty",
    "csr.device-id-missing",
    "csr.device-id-invalid",
    "csr.subject-invalid",
    "csr.role-invalid",
    "csr.entity-id-invalid",
]
SPEC_RULES = [
    "device.evidence-of-need",
    "device.uept-completed",
    "device.gateway-channel",
    "any.srept-passed",
    "channel.device-via-gateway",
    "channel.spoti-organisation-only",
    "subscriber.authorised-for-policy",
    "org.entity-belongs-to-party",
    "org.role-permitted",
]
DCC_SYNTAX = re.compile(r"[A-Z]{2}:[A-Za-z0-9]+")


@pytest.fixture
def xsd() -> Libxml2Schemas:
    return require_xsd()


def test_every_csr_check_has_its_own_valid_cr_code() -> None:
    for code in CA_CSR_CODES:
        assert code in CSR_ERROR_CODES, f"{code} has no DCC code"
    dcc_codes = list(CSR_ERROR_CODES.values())
    assert len(set(dcc_codes)) == len(dcc_codes), "two smki codes share a DCC code"
    for dcc in dcc_codes:
        assert DCC_SYNTAX.fullmatch(dcc) and len(dcc) <= 10 and dcc.startswith("CR:")


def test_the_spec_codes_are_where_the_spec_puts_them() -> None:
    assert CSR_ERROR_CODES["csr.signature-algorithm"] == "CR:CC1"  # "wrong CSR OID"
    assert CSR_ERROR_CODES[DUPLICATE] == "CR:9999"
    assert CSR_ERROR_CODES[DEVICE_LIMIT] == "CR:CL1"


def test_every_spec_rule_has_an_in_code() -> None:
    for rule in SPEC_RULES:
        assert DCC_SYNTAX.fullmatch(RULE_CODES[rule]) and RULE_CODES[rule].startswith("IN:")
    assert len(set(RULE_CODES.values())) == len(RULE_CODES)


@pytest.mark.parametrize("service", list(Service))
@pytest.mark.parametrize("code", [*CA_CSR_CODES, DUPLICATE, DEVICE_LIMIT])
def test_csr_refusals_are_csr_errors(service: Service, code: str) -> None:
    outcome = dcc_error_for(service, code, "the reason")
    assert outcome.status == "CSR_ERROR"
    assert outcome.error.code == CSR_ERROR_CODES[code]
    assert outcome.error.text == f"{code}: the reason"


def test_a_future_csr_code_still_maps() -> None:
    assert dcc_error_for(Service.BATCH, "csr.something-new", "x").error.code == "CR:CC99"


def test_ra_refusals_list_every_rule() -> None:
    rules = ["subscriber.authorised-for-policy", "channel.device-via-gateway"]
    batch = dcc_error_for(Service.BATCH, "ra.refused", "refused", rules)
    assert batch.status is DeviceStatus.INELIGIBLE
    listed = "refused by RA rule(s): subscriber.authorised-for-policy, channel.device-via-gateway"
    assert batch.error == DccError("IN:SU1", listed)
    adhoc = dcc_error_for(Service.AD_HOC, "ra.refused", "refused", rules)
    assert adhoc.status is AdHocStatus.WORKFLOW_ERROR  # the Ad Hoc service has no INELIGIBLE
    assert adhoc.error.code == "WF:RA1" and "channel.device-via-gateway" in adhoc.error.text
    assert dcc_error_for(Service.BATCH, "ra.refused", "x", ["some.new-rule"]).error.code == "IN:RA1"


def test_the_other_families() -> None:
    unknown = dcc_error_for(Service.AD_HOC, UNKNOWN_DEVICE, "no certificate yet for 00-DB-12-34-56-78-90-01")
    assert (unknown.status, unknown.error.code) == (AdHocStatus.UNKNOWN_DEVICE, "UD:AA1")
    assert dcc_error_for(Service.BATCH, UNKNOWN_DEVICE, "x").status is DeviceStatus.WORKFLOW_ERROR
    fm = dcc_error_from(Service.AD_HOC, DccFormatError("FM:AA1", "not well-formed XML"))
    assert (fm.status, fm.error.code) == (AdHocStatus.FORMAT_ERROR, "FM:AA1")
    ca = dcc_error_from(Service.BATCH, SmkiError("key.locked", "the Device CA key is locked"))
    assert (ca.status, ca.error.code) == (DeviceStatus.CA_ERROR, "CA:AA1")
    anomaly = dcc_error_for(Service.AD_HOC, "issuance.anomaly", "threshold")
    assert (anomaly.status, anomaly.error.code) == (AdHocStatus.ISSUANCE_ANOMALY, "CA:IA1")
    capacity = dcc_error_for(Service.AD_HOC, "capacity.adhoc-rate", "1 per 0.8 s")
    assert (capacity.status, capacity.error.code) == (AdHocStatus.WORKFLOW_ERROR, "WF:AA1")
    other = dcc_error_for(Service.BATCH, "store.busy", "x")
    assert (other.status, other.error.code) == (DeviceStatus.WORKFLOW_ERROR, "WF:AA9")


@given(
    st.sampled_from(list(Service)),
    st.text(max_size=30),
    st.text(max_size=2000),
    st.lists(st.text(st.characters(codec="ascii", categories=("Ll", "Pd", "Po")), max_size=40), max_size=5),
)
def test_every_outcome_renders_into_a_valid_response(
    service: Service, code: str, message: str, rules: list[str]
) -> None:
    """Whatever smki refuses with, the mapped status and Error make a response that renders and reads back."""
    outcome = dcc_error_for(service, code, message, rules)
    assert "\n" not in outcome.error.text and len(outcome.error.text) <= 600
    xsd: Libxml2Schemas = require_xsd()
    if service is Service.AD_HOC:
        assert isinstance(outcome.status, AdHocStatus)
        response = DeviceCertificateSigningResponse("r", 1, outcome.status, error=outcome.error)
        body = render_device_csr_response(response)
        assert parse_device_csr_response(body) == response
        assert xsd.errors_for("device-csr-adhoc.xsd", body) == []
    else:
        assert isinstance(outcome.status, DeviceStatus)
        result = CSRBatchResult(BatchStatus.COMPLETED, (DeviceCertificate("a", outcome.status, error=outcome.error),))
        body = render_csr_batch_result(result)
        assert parse_csr_batch_result(body) == result
        assert xsd.errors_for("device-csr-batch.xsd", body) == []


def test_every_table_code_renders_in_both_services(xsd: Libxml2Schemas) -> None:
    """Each code smki can send appears, byte for byte, in a schema-valid response of its service."""
    batch_entries = []
    for n, code in enumerate([*CSR_ERROR_CODES, "csr.new", "issuance.anomaly", "key.locked", "capacity.x", "x.y"]):
        adhoc = dcc_error_for(Service.AD_HOC, code, "reason")
        body = render_device_csr_response(DeviceCertificateSigningResponse("r", 1, adhoc.status, error=adhoc.error))
        assert f"<ErrorCode>{adhoc.error.code}</ErrorCode>".encode() in body
        assert xsd.errors_for("device-csr-adhoc.xsd", body) == []
        outcome = dcc_error_for(Service.BATCH, code, "reason")
        batch_entries.append(DeviceCertificate(f"c{n}", outcome.status, error=outcome.error))  # type: ignore[arg-type]
    for n, rule in enumerate(RULE_CODES):
        outcome = dcc_error_for(Service.BATCH, "ra.refused", "x", [rule])
        batch_entries.append(DeviceCertificate(f"r{n}", outcome.status, error=outcome.error))  # type: ignore[arg-type]
    for code in (UNKNOWN_DEVICE,):
        adhoc = dcc_error_for(Service.AD_HOC, code, "reason")
        body = render_device_csr_response(DeviceCertificateSigningResponse("r", 1, adhoc.status, error=adhoc.error))
        assert b"<Status>UNKNOWN_DEVICE</Status><Error><ErrorCode>UD:AA1</ErrorCode>" in body
    body = render_csr_batch_result(CSRBatchResult(BatchStatus.COMPLETED, tuple(batch_entries)))
    assert xsd.errors_for("device-csr-batch.xsd", body) == []
    sent = {entry.error.code for entry in parse_csr_batch_result(body).certificates if entry.error}
    assert set(CSR_ERROR_CODES.values()) | set(RULE_CODES.values()) <= sent


def test_issuance_anomaly_and_ca_error_carry_the_ca_prefix() -> None:
    """Spec §7.2: "ISSUANCE_ANOMALY uses the error prefix CA:, like CA_ERROR" — in the bytes sent,
    on both services, and a response pairing either status with another prefix cannot be built."""
    for code in ("issuance.anomaly", "key.locked"):
        adhoc = dcc_error_for(Service.AD_HOC, code, "signing kept failing")
        body = render_device_csr_response(DeviceCertificateSigningResponse("r", 1, adhoc.status, error=adhoc.error))
        assert re.search(rb"<Status>(ISSUANCE_ANOMALY|CA_ERROR)</Status><Error><ErrorCode>CA:[A-Za-z0-9]+</ErrorCode>",
                         body), body
        batch = dcc_error_for(Service.BATCH, code, "signing kept failing")
        body = render_csr_batch_result(
            CSRBatchResult(BatchStatus.COMPLETED, (DeviceCertificate("a", batch.status, error=batch.error),)))
        assert re.search(rb"<Status>(ISSUANCE_ANOMALY|CA_ERROR)</Status><Error><ErrorCode>CA:[A-Za-z0-9]+</ErrorCode>",
                         body), body
    assert dcc_error_for(Service.BATCH, "issuance.anomaly", "x").error.code != \
        dcc_error_for(Service.BATCH, "key.locked", "x").error.code  # the status and the code both tell them apart
    for status in (AdHocStatus.ISSUANCE_ANOMALY, AdHocStatus.CA_ERROR):
        with pytest.raises(ValueError, match="starts with CA:"):
            DeviceCertificateSigningResponse("r", 1, status, error=DccError("IA:AA1", "x"))
    for entry_status in (DeviceStatus.ISSUANCE_ANOMALY, DeviceStatus.CA_ERROR):
        with pytest.raises(ValueError, match="starts with CA:"):
            DeviceCertificate("a", entry_status, error=DccError("WF:AA1", "x"))
