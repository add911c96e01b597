"""Repository messages (spec §3.1): what DCC clients send parses; what smki renders, they can read."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from smki.domain import CertStatus, Usage
from smki.interfaces.dcc.codec import (
    CertificateDataRequest,
    CertificateDataResponse,
    CertificateRecord,
    CertificateSearchRequest,
    CertificateSearchResponse,
    DccFormatError,
    InvalidSearchParameters,
    MessageTooLarge,
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
from tests.api.test_dcc_xml_support import Libxml2Schemas, certificate_der, openssl, require_xsd

ORG = bytes.fromhex("90b3d51f30010000")
DEVICE = bytes.fromhex("88738457002f966c")

# The request bodies exactly as spec §3.1 (and the DCC's reference client) write them.
SPEC_ORG_SEARCH = (
    b"<CertificateSearchRequest><CertificateSubjectName>90-B3-D5-1F-30-01-00-00"
    b"</CertificateSubjectName></CertificateSearchRequest>"
)
CLIENT_DEVICE_SEARCH = (
    b'<?xml version="1.0" encoding="utf-8"?><CertificateSearchRequest>'
    b"<CertificateSubjectAltName>88-73-84-57-00-2F-96-6C</CertificateSubjectAltName></CertificateSearchRequest>"
)
CLIENT_RETRIEVE = (
    b'<?xml version="1.0" encoding="utf-8"?><CertificateDataRequest>'
    b"<CertificateSerial>469AFEC2E7C0CAAEC8A400769B702BC8</CertificateSerial></CertificateDataRequest>"
)


@pytest.fixture
def xsd() -> Libxml2Schemas:
    return require_xsd()


def test_the_spec_request_bodies_parse() -> None:
    assert parse_certificate_search_request(SPEC_ORG_SEARCH) == CertificateSearchRequest(SearchBy.SUBJECT_NAME, ORG)
    assert parse_certificate_search_request(CLIENT_DEVICE_SEARCH) == CertificateSearchRequest(
        SearchBy.SUBJECT_ALT_NAME, DEVICE
    )
    assert parse_certificate_data_request(CLIENT_RETRIEVE).serial == 0x469AFEC2E7C0CAAEC8A400769B702BC8


def test_requests_render_exactly_as_the_reference_client_sends_them() -> None:
    # The reference client's builder emits the declaration then compact elements; smki spells the
    # encoding in upper case, which XML treats as the same name.
    rendered = render_certificate_search_request(CertificateSearchRequest(SearchBy.SUBJECT_NAME, ORG))
    assert rendered == b'<?xml version="1.0" encoding="UTF-8"?>' + SPEC_ORG_SEARCH
    retrieve = render_certificate_data_request(CertificateDataRequest(0x469AFEC2E7C0CAAEC8A400769B702BC8))
    assert retrieve.lower() == CLIENT_RETRIEVE.lower()


@pytest.mark.parametrize(
    "spelling", ["90-b3-d5-1f-30-01-00-00", "90:B3:D5:1F:30:01:00:00", "90B3D51F30010000", " 90-B3-D5-1F-30-01-00-00\n"]
)
def test_eui64_spellings_are_accepted(spelling: str) -> None:
    body = f"<CertificateSearchRequest><CertificateSubjectName>{spelling}</CertificateSubjectName>"
    body += "</CertificateSearchRequest>"
    assert parse_certificate_search_request(body.encode()).eui64 == ORG


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<CertificateSearchRequest/>", "exactly one"),
        (
            b"<CertificateSearchRequest><CertificateSubjectName>90-B3-D5-1F-30-01-00-00</CertificateSubjectName>"
            b"<CertificateSubjectAltName>88-73-84-57-00-2F-96-6C</CertificateSubjectAltName></CertificateSearchRequest>",
            "exactly one",
        ),
        (
            b"<CertificateSearchRequest><CertificateSubjectName>90-B3-D5</CertificateSubjectName></CertificateSearchRequest>",
            "not an EUI-64",
        ),
        (
            b"<CertificateSearchRequest><CertificateSubjectName>1</CertificateSubjectName>"
            b"<CertificateSubjectName>2</CertificateSubjectName></CertificateSearchRequest>",
            "too many",
        ),
        (b"<CertificateSearchRequest><Role>2</Role></CertificateSearchRequest>", "does not take element <Role>"),
        (b"<CertificateSearchRequest>90-B3</CertificateSearchRequest>", "must hold elements"),
        (b'<CertificateSearchRequest x="1"/>', "does not take attribute"),
        (b"<CertificateDataRequest/>", "missing <CertificateSerial>"),
        (b"<CertificateDataRequest><CertificateSerial>XYZ</CertificateSerial></CertificateDataRequest>", "hex"),
        (b"<CertificateDataRequest><CertificateSerial>00</CertificateSerial></CertificateDataRequest>", "positive"),
        (b"<CertificateDataRequest><CertificateSerial>" + b"1" * 41 + b"</CertificateSerial></CertificateDataRequest>",
         "20"),
        (b"<CertificateDataRequest><CertificateSerial><a/></CertificateSerial></CertificateDataRequest>", "text"),
        (b"<CertificateSearchRequest>", "not well-formed"),
        (b"<CertificateSearch/>", "root element"),
    ],
)
def test_invalid_search_parameters_are_distinguishable(body: bytes, why: str) -> None:
    parse = parse_certificate_data_request if b"CertificateData" in body else parse_certificate_search_request
    with pytest.raises(InvalidSearchParameters) as caught:
        parse(body)
    assert caught.value.code == "FM:AA1"
    assert why in caught.value.message
    assert "\n" not in caught.value.message


def test_an_oversize_request_is_too_large_not_invalid() -> None:
    body = b"<CertificateDataRequest>" + b" " * 300_000 + b"</CertificateDataRequest>"
    with pytest.raises(MessageTooLarge):
        parse_certificate_data_request(body)
    with pytest.raises(MessageTooLarge):
        parse_certificate_data_request(CLIENT_RETRIEVE, max_bytes=50)


def test_a_namespaced_request_is_read_by_local_name() -> None:
    body = (
        b'<r:CertificateSearchRequest xmlns:r="urn:example" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        b' xsi:schemaLocation="urn:example r.xsd"><r:CertificateSubjectName>90-B3-D5-1F-30-01-00-00'
        b"</r:CertificateSubjectName></r:CertificateSearchRequest>"
    )
    assert parse_certificate_search_request(body).eui64 == ORG


def _org(serial: int, usage: Usage, role: int = 2) -> CertificateRecord:
    return CertificateRecord(serial, ORG, device=False, status=CertStatus.IN_USE, usage=usage, role=role)


def _device(serial: int, usage: Usage, status: CertStatus = CertStatus.IN_USE) -> CertificateRecord:
    return CertificateRecord(serial, DEVICE, device=True, status=status, usage=usage)


def test_search_response_matches_the_dcc_layout(xsd: Libxml2Schemas) -> None:
    response = CertificateSearchResponse(
        "1234567890-abc123456",
        (
            _device(0x4DF56E92D528F83544EBA0547068CF8C, Usage.DS),
            _org(0x37CDF206B07DDEF852FBC62950F22ED0, Usage.KA, 135),
        ),
    )
    body = render_certificate_search_response(response)
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?><CertificateSearchResponse><ResponseCode>200</ResponseCode>'
        b"<ResponseMessage>Success</ResponseMessage><AuditReference>1234567890-abc123456</AuditReference>"
        b"<Result><CertificateSerial>4DF56E92D528F83544EBA0547068CF8C</CertificateSerial>"
        b"<CertificateSubjectAltName>88-73-84-57-00-2F-96-6C</CertificateSubjectAltName>"
        b"<CertificateStatus>I</CertificateStatus><CertificateUsage>DS</CertificateUsage>"
        b"<ManufacturingFlag>false</ManufacturingFlag></Result>"
        b"<Result><CertificateSerial>37CDF206B07DDEF852FBC62950F22ED0</CertificateSerial>"
        b"<CertificateSubjectName>90-B3-D5-1F-30-01-00-00</CertificateSubjectName>"
        b"<CertificateStatus>I</CertificateStatus><CertificateRole>135</CertificateRole>"
        b"<CertificateUsage>KA</CertificateUsage><ManufacturingFlag>false</ManufacturingFlag></Result>"
        b"</CertificateSearchResponse>"
    )
    assert parse_certificate_search_response(body) == response
    assert xsd.errors_for("repository.xsd", body) == []
    empty = render_certificate_search_response(CertificateSearchResponse("ref"))
    assert parse_certificate_search_response(empty).results == ()
    assert xsd.errors_for("repository.xsd", empty) == []


@pytest.mark.parametrize("status", list(CertStatus))
def test_every_status_and_usage_round_trips(status: CertStatus, xsd: Libxml2Schemas) -> None:
    records = tuple(_device(n + 1, usage, status) for n, usage in enumerate(Usage))
    body = render_certificate_search_response(CertificateSearchResponse("a", records))
    assert f"<CertificateStatus>{status.value}</CertificateStatus>".encode() in body
    assert parse_certificate_search_response(body).results == records
    assert xsd.errors_for("repository.xsd", body) == []


def test_data_response_carries_the_real_certificate(xsd: Libxml2Schemas) -> None:
    der = certificate_der()
    record = _org(0x469AFEC2E7C0CAAEC8A400769B702BC8, Usage.DS, role=1)
    response = CertificateDataResponse("1234567890-abc123456", record, der)
    body = render_certificate_data_response(response)
    assert xsd.errors_for("repository.xsd", body) == []
    text = body.decode()
    # The DCC's element order: name, serial, status, body, role, usage, flag.
    order = [
        "CertificateSubjectName",
        "CertificateSerial",
        "CertificateStatus",
        "CertificateBody",
        "CertificateRole",
        "CertificateUsage",
        "ManufacturingFlag",
    ]
    positions = [text.index(f"<{tag}>") for tag in order]
    assert positions == sorted(positions)
    b64 = text.split("<CertificateBody>")[1].split("</CertificateBody>")[0]
    assert "\n" not in b64 and "-----" not in b64
    assert base64.b64decode(b64) == der
    assert x509.load_der_x509_certificate(base64.b64decode(b64)).serial_number == record.serial
    assert "469a" in openssl("x509", base64.b64decode(b64)).replace(":", "").lower()
    assert parse_certificate_data_response(body) == response


def test_a_dcc_style_response_with_wrapped_base64_and_leading_whitespace_is_read() -> None:
    der = certificate_der()
    wrapped = "\n".join(base64.b64encode(der).decode()[i : i + 64] for i in range(0, 600, 64))
    body = f"""
        <?xml version="1.0" encoding="UTF-8" standalone="yes"?>
        <CertificateDataResponse>
          <ResponseCode>200</ResponseCode>
          <ResponseMessage>Success</ResponseMessage>
          <AuditReference>1234567890-abc123456</AuditReference>
          <CertificateResponse>
            <CertificateSubjectAltName>88-73-84-57-00-2F-96-6C</CertificateSubjectAltName>
            <CertificateSerial>13E6E3409C880FDBE71A429ACF375746</CertificateSerial>
            <CertificateStatus>I</CertificateStatus>
            <CertificateBody>
              {wrapped}
            </CertificateBody>
            <CertificateUsage>KA</CertificateUsage>
            <ManufacturingFlag>false</ManufacturingFlag>
          </CertificateResponse>
        </CertificateDataResponse>"""
    parsed = parse_certificate_data_response(body.encode())
    assert parsed.der == der
    assert parsed.certificate == _device(0x13E6E3409C880FDBE71A429ACF375746, Usage.KA)


def test_response_parsing_refuses_inconsistent_records() -> None:
    device_with_role = render_certificate_search_response(
        CertificateSearchResponse("a", (_org(5, Usage.DS),))
    ).replace(b"CertificateSubjectName", b"CertificateSubjectAltName")
    with pytest.raises(DccFormatError, match="no CertificateRole"):
        parse_certificate_search_response(device_with_role)
    bad_status = render_certificate_search_response(CertificateSearchResponse("a", (_org(5, Usage.DS),))).replace(
        b"<CertificateStatus>I<", b"<CertificateStatus>X<"
    )
    with pytest.raises(DccFormatError, match="CertificateStatus"):
        parse_certificate_search_response(bad_status)


def test_records_refuse_impossible_values() -> None:
    with pytest.raises(ValueError):
        CertificateRecord(1, DEVICE, device=True, status=CertStatus.IN_USE, usage=Usage.DS, role=2)
    with pytest.raises(ValueError):
        CertificateRecord(0, ORG, device=False, status=CertStatus.IN_USE, usage=Usage.DS)
    with pytest.raises(ValueError):
        CertificateSearchRequest(SearchBy.SUBJECT_NAME, b"short")
    with pytest.raises(ValueError):
        CertificateSearchResponse("bad\x00reference")


@given(st.integers(min_value=1, max_value=(1 << 160) - 1))
def test_serial_hex_round_trips(serial: int) -> None:
    text = serial_hex(serial)
    assert len(text) % 2 == 0 and text == text.upper()
    body = render_certificate_data_request(CertificateDataRequest(serial))
    assert parse_certificate_data_request(body).serial == serial


@given(st.binary(min_size=8, max_size=8), st.sampled_from(list(SearchBy)))
def test_search_requests_round_trip(eui64: bytes, by: SearchBy) -> None:
    request = CertificateSearchRequest(by, eui64)
    assert parse_certificate_search_request(render_certificate_search_request(request)) == request
