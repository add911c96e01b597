"""Ad Hoc Device CSR messages (spec §3.2): DeviceCertificateSigningRequest / …Response."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from smki.interfaces.dcc.codec import (
    BUILD,
    AdHocStatus,
    DccError,
    DccFormatError,
    DeviceCertificateSigningRequest,
    DeviceCertificateSigningResponse,
    parse_device_csr_request,
    parse_device_csr_response,
    render_device_csr_request,
    render_device_csr_response,
)
from tests.api.test_dcc_xml_support import Libxml2Schemas, certificate_der, device_csr_der, openssl, require_xsd

XSD = "device-csr-adhoc.xsd"


def _bare_base64_pattern() -> re.Pattern[str]:
    """The XSD's own BareBase64 pattern (XSD patterns are anchored: ``fullmatch``)."""
    from xml.etree import ElementTree

    xs = "{http://www.w3.org/2001/XMLSchema}"
    root = ElementTree.parse(Path(__file__).resolve().parents[2] / "docs" / "xsd" / XSD).getroot()
    for simple in root.iter(f"{xs}simpleType"):
        if simple.get("name") == "BareBase64":
            pattern = simple.find(f"{xs}restriction/{xs}pattern")
            assert pattern is not None
            return re.compile(pattern.get("value", ""))
    raise AssertionError("no BareBase64 type in the XSD")


#: libxml2 2.9 mis-evaluates this pattern for some lengths that are not a multiple of four (the
#: XSD's comment says which forms it gets wrong; hypothesis found ``AAAAA==`` accepted): the same
#: pattern by Python's ``re`` settles what the schema as written says.
BARE_BASE64 = _bare_base64_pattern()
CSR_B64 = base64.b64encode(device_csr_der()).decode()


@pytest.fixture
def xsd() -> Libxml2Schemas:
    return require_xsd()


def _request(id_attr: str = ' ID="REQ-0001"', version: str = "<Version>1.0</Version>", csr: str = CSR_B64) -> bytes:
    return (
        f"<DeviceCertificateSigningRequest{id_attr}>{version}"
        f"<CertificateSigningRequest>{csr}</CertificateSigningRequest></DeviceCertificateSigningRequest>"
    ).encode()


def test_the_spec_body_parses_to_the_real_csr(xsd: Libxml2Schemas) -> None:
    body = _request()
    assert xsd.errors_for(XSD, body) == []
    request = parse_device_csr_request(body)
    assert request == DeviceCertificateSigningRequest("REQ-0001", device_csr_der())
    assert x509.load_der_x509_csr(request.csr_der).is_signature_valid
    assert "Certificate Request" in openssl("req", request.csr_der)


def test_request_round_trip_and_schema(xsd: Libxml2Schemas) -> None:
    request = DeviceCertificateSigningRequest("x" * 32, device_csr_der())
    body = render_device_csr_request(request)
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?><DeviceCertificateSigningRequest ID="')
    assert xsd.errors_for(XSD, body) == []
    assert parse_device_csr_request(body) == request


# Every refusal is FM:AA1; the request ID is echoed only when it was itself valid.
REFUSALS = [
    (_request(id_attr=""), "needs an ID", None),
    (_request(id_attr=' ID=""'), "1-32", None),
    (_request(id_attr=f' ID="{"x" * 33}"'), "1-32", None),
    (_request(id_attr=' ID="a" Other="b"'), "does not take attribute", None),
    (_request(version="<Version>2.0</Version>"), "Version", "REQ-0001"),
    (_request(version=""), "missing <Version>", "REQ-0001"),
    (_request(csr=CSR_B64[:64] + "\n" + CSR_B64[64:]), "bare base64", "REQ-0001"),
    (
        _request(csr=f"-----BEGIN CERTIFICATE REQUEST-----{CSR_B64}-----END CERTIFICATE REQUEST-----"),
        "base64",
        "REQ-0001",
    ),
    (_request(csr=CSR_B64 + "A"), "base64", "REQ-0001"),
    (_request(csr="====" + CSR_B64), "base64", "REQ-0001"),
    (_request(csr=""), "base64", "REQ-0001"),
    (
        b'<DeviceCertificateSigningRequest ID="REQ-0001"><CertificateSigningRequest>'
        + CSR_B64.encode()
        + b"</CertificateSigningRequest><Version>1.0</Version></DeviceCertificateSigningRequest>",
        "out of order",
        "REQ-0001",
    ),
    (_request(version="<Version>1.0</Version><Build>1</Build>"), "does not take element <Build>", "REQ-0001"),
    (_request(version="<Version><v>1.0</v></Version>"), "must hold text", "REQ-0001"),
    (_request().replace(b"<Version>", b'<Version a="1">'), "does not take attribute", "REQ-0001"),
    (b"<DeviceCertificateSigningResponse/>", "root element", None),
    (b"MIIB" + CSR_B64.encode(), "not well-formed", None),
]


@pytest.mark.parametrize(("body", "why", "request_id"), REFUSALS)
def test_malformed_requests_are_format_errors(
    body: bytes, why: str, request_id: str | None, xsd: Libxml2Schemas
) -> None:
    with pytest.raises(DccFormatError) as caught:
        parse_device_csr_request(body)
    assert caught.value.code == "FM:AA1"
    assert why in caught.value.message
    assert caught.value.request_id == request_id
    # The published schema refuses them too, so the XSD and the parser tell clients the same thing.
    assert xsd.errors_for(XSD, body) != []


def test_surrounding_whitespace_in_values_is_tolerated(xsd: Libxml2Schemas) -> None:
    body = _request(version="<Version> 1.0 </Version>", csr=f"\n  {CSR_B64}\n")
    assert parse_device_csr_request(body).csr_der == device_csr_der()
    assert xsd.errors_for(XSD, body) == []  # xs:token collapses it the same way


ERROR_FOR_STATUS = {
    AdHocStatus.UNKNOWN_DEVICE: DccError("UD:AA1", "no certificate has been issued for Device 00-DB-12-34-56-78-90-01"),
    AdHocStatus.ISSUANCE_ANOMALY: DccError("CA:IA1", "issuance anomaly threshold reached"),
    AdHocStatus.CSR_ERROR: DccError("CR:CC1", "csr.signature-algorithm: not ecdsa-with-SHA256"),
    AdHocStatus.CA_ERROR: DccError("CA:AA1", "the Device CA key is unavailable"),
    AdHocStatus.FORMAT_ERROR: DccError("FM:AA1", "not well-formed XML"),
    AdHocStatus.WORKFLOW_ERROR: DccError("WF:AA1", "capacity: 1 CSR per 0.8 s in core hours"),
}


@pytest.mark.parametrize("status", list(AdHocStatus))
def test_every_status_renders_parses_and_validates(status: AdHocStatus, xsd: Libxml2Schemas) -> None:
    if status is AdHocStatus.SUCCESS:
        response = DeviceCertificateSigningResponse("REQ-1", 7, status, certificate_der=certificate_der())
    else:
        response = DeviceCertificateSigningResponse("REQ-1", 7, status, error=ERROR_FOR_STATUS[status])
    body = render_device_csr_response(response)
    assert xsd.errors_for(XSD, body) == []
    assert f"<Status>{status.value}</Status>".encode() in body
    assert parse_device_csr_response(body) == response
    head = (
        b'<?xml version="1.0" encoding="UTF-8"?><DeviceCertificateSigningResponse ID="REQ-1"><Version>1.0</Version>'
        + f"<Build>{BUILD}</Build>".encode()
        + b"<TransactionId>7</TransactionId>"
    )
    assert body.startswith(head)
    if status is AdHocStatus.SUCCESS:
        b64 = body.split(b"<Certificate>")[1].split(b"</Certificate>")[0]
        assert "Certificate:" in openssl("x509", base64.b64decode(b64))
    else:
        error = ERROR_FOR_STATUS[status]
        assert f"<Error><ErrorCode>{error.code}</ErrorCode><ErrorText>{error.text}</ErrorText></Error>".encode() in body


def test_a_format_error_for_an_unreadable_request_omits_the_id(xsd: Libxml2Schemas) -> None:
    response = DeviceCertificateSigningResponse(
        None, 1, AdHocStatus.FORMAT_ERROR, error=DccError("FM:AA1", "not well-formed XML")
    )
    body = render_device_csr_response(response)
    assert b"<DeviceCertificateSigningResponse><Version>" in body
    assert xsd.errors_for(XSD, body) == []
    assert parse_device_csr_response(body).id is None


def test_error_text_is_escaped(xsd: Libxml2Schemas) -> None:
    text = 'a <b> & "c" \t'
    response = DeviceCertificateSigningResponse("&<\">", 1, AdHocStatus.CA_ERROR, error=DccError("CA:AA1", text))
    body = render_device_csr_response(response)
    assert xsd.errors_for(XSD, body) == []
    parsed = parse_device_csr_response(body)
    assert parsed.id == "&<\">"
    assert parsed.error is not None and parsed.error.text == text.strip()


@pytest.mark.parametrize("code", ["CR-1", "cr:CC1", "CR:", "CR:CC-1", "CRX:1", "CR:12345678", " CR:CC1", "CR:CC1\n"])
def test_error_codes_must_match_the_dcc_syntax(code: str) -> None:
    with pytest.raises(ValueError, match="ErrorCode"):
        DccError(code, "x")


def test_a_ten_character_code_is_the_longest() -> None:
    assert DccError("CR:1234567", "x").code == "CR:1234567"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (AdHocStatus.CSR_ERROR, DccError("FM:AA1", "x")),
        (AdHocStatus.UNKNOWN_DEVICE, DccError("CR:CC1", "x")),
        (AdHocStatus.FORMAT_ERROR, DccError("WF:AA1", "x")),
        (AdHocStatus.WORKFLOW_ERROR, DccError("UD:AA1", "x")),
    ],
)
def test_a_status_and_an_error_prefix_must_agree(status: AdHocStatus, error: DccError) -> None:
    with pytest.raises(ValueError, match="starts with"):
        DeviceCertificateSigningResponse("r", 1, status, error=error)


def test_impossible_responses_cannot_be_built() -> None:
    cert = certificate_der()
    with pytest.raises(ValueError):
        DeviceCertificateSigningResponse("r", 1, AdHocStatus.SUCCESS)
    with pytest.raises(ValueError):
        DeviceCertificateSigningResponse("r", 1, AdHocStatus.SUCCESS, cert, DccError("CR:CC1", "x"))
    with pytest.raises(ValueError):
        DeviceCertificateSigningResponse("r", 1, AdHocStatus.CSR_ERROR, cert, DccError("CR:CC1", "x"))
    for bad_id in (0, -1, 1 << 63):
        with pytest.raises(ValueError, match="TransactionId"):
            DeviceCertificateSigningResponse("r", bad_id, AdHocStatus.SUCCESS, cert)
    with pytest.raises(ValueError):
        DeviceCertificateSigningResponse("x" * 33, 1, AdHocStatus.SUCCESS, cert)
    with pytest.raises(ValueError):
        DeviceCertificateSigningResponse("r", 1, AdHocStatus.CA_ERROR, error=DccError("CA:AA1", "nul\x00"))


def test_a_response_with_a_bad_transaction_id_is_refused_when_read() -> None:
    body = render_device_csr_response(
        DeviceCertificateSigningResponse("r", 12, AdHocStatus.SUCCESS, certificate_der())
    ).replace(b"<TransactionId>12<", b"<TransactionId>-12<")
    with pytest.raises(DccFormatError, match="TransactionId"):
        parse_device_csr_response(body)


@given(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=32),
    st.binary(min_size=1, max_size=300),
)
def test_any_request_round_trips(request_id: str, csr: bytes) -> None:
    request = DeviceCertificateSigningRequest(request_id, csr)
    assert parse_device_csr_request(render_device_csr_request(request)) == request


@given(st.text(alphabet="AB+/=\n -", max_size=14), st.text(alphabet='ab" <>&', min_size=0, max_size=34))
def test_the_parser_and_the_schema_agree(csr_text: str, request_id: str) -> None:
    """Any CSR text and ID: the parser accepts exactly what the published XSD accepts."""
    from xml.sax.saxutils import escape, quoteattr

    body = (
        f"<DeviceCertificateSigningRequest ID={quoteattr(request_id)}><Version>1.0</Version>"
        f"<CertificateSigningRequest>{escape(csr_text)}</CertificateSigningRequest></DeviceCertificateSigningRequest>"
    ).encode()
    try:
        parse_device_csr_request(body)
        parsed = True
    except DccFormatError:
        parsed = False
    schema_valid = require_xsd().errors_for(XSD, body) == [] and BARE_BASE64.fullmatch(" ".join(csr_text.split()))
    assert parsed == bool(schema_valid)
