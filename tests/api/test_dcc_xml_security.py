"""Hostile bodies: DTDs, entities, size, depth, encodings, and fuzzing of every parser.

Every parser faces other organisations' systems; whatever arrives, the only outcome besides a
parsed message is a DccFormatError (an SmkiError) with a one-line message: never another
exception, never a file read, never unbounded work.
"""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.domain import CertStatus, Usage
from smki.errors import SmkiError
from smki.interfaces.dcc.codec import (
    AdHocStatus,
    BatchStatus,
    CertificateDataRequest,
    CertificateDataResponse,
    CertificateRecord,
    CertificateSearchRequest,
    CertificateSearchResponse,
    CSRBatchResult,
    DccError,
    DccFormatError,
    DeviceCertificate,
    DeviceCertificateSigningRequest,
    DeviceCertificateSigningResponse,
    DeviceCSR,
    DeviceStatus,
    MessageTooLarge,
    SearchBy,
    SubmitCSRBatch,
    SubmitCSRBatchStatus,
    SubmitStatus,
    parse_certificate_data_request,
    parse_certificate_data_response,
    parse_certificate_search_request,
    parse_certificate_search_response,
    parse_csr_batch_result,
    parse_device_csr_request,
    parse_device_csr_response,
    parse_submit_csr_batch,
    parse_submit_csr_batch_status,
    render_certificate_data_request,
    render_certificate_data_response,
    render_certificate_search_request,
    render_certificate_search_response,
    render_csr_batch_result,
    render_device_csr_request,
    render_device_csr_response,
    render_submit_csr_batch,
    render_submit_csr_batch_status,
)
from tests.api.test_dcc_xml_support import certificate_der, device_csr_der

Parser = Callable[[bytes], object]

CERT = certificate_der()
CSR = device_csr_der()
ORG = bytes.fromhex("90b3d51f30010000")
RECORD = CertificateRecord(0x1234, ORG, device=False, status=CertStatus.IN_USE, usage=Usage.DS, role=2)

#: parser → one valid body it accepts (rendered by the matching renderer).
VALID: dict[str, tuple[Parser, bytes]] = {
    "search-request": (
        parse_certificate_search_request,
        render_certificate_search_request(CertificateSearchRequest(SearchBy.SUBJECT_NAME, ORG)),
    ),
    "data-request": (parse_certificate_data_request, render_certificate_data_request(CertificateDataRequest(0x1234))),
    "search-response": (
        parse_certificate_search_response,
        render_certificate_search_response(CertificateSearchResponse("ref", (RECORD,))),
    ),
    "data-response": (
        parse_certificate_data_response,
        render_certificate_data_response(CertificateDataResponse("ref", RECORD, CERT)),
    ),
    "adhoc-request": (parse_device_csr_request, render_device_csr_request(DeviceCertificateSigningRequest("r1", CSR))),
    "adhoc-response": (
        parse_device_csr_response,
        render_device_csr_response(
            DeviceCertificateSigningResponse("r1", 3, AdHocStatus.CSR_ERROR, error=DccError("CR:CC5", "x"))
        ),
    ),
    "batch-request": (
        parse_submit_csr_batch,
        render_submit_csr_batch(SubmitCSRBatch("b", (DeviceCSR("a", CSR), DeviceCSR("b", CSR)))),
    ),
    "batch-status": (
        parse_submit_csr_batch_status,
        render_submit_csr_batch_status(SubmitCSRBatchStatus(SubmitStatus.PENDING, 9)),
    ),
    "batch-result": (
        parse_csr_batch_result,
        render_csr_batch_result(
            CSRBatchResult(
                BatchStatus.COMPLETED,
                (
                    DeviceCertificate("a", DeviceStatus.SUCCESS, CERT),
                    DeviceCertificate("b", DeviceStatus.INELIGIBLE, error=DccError("IN:CH1", "x")),
                ),
            )
        ),
    ),
}
PARSERS = [parser for parser, _ in VALID.values()]
ROOTS = {
    parse_certificate_search_request: "CertificateSearchRequest",
    parse_certificate_data_request: "CertificateDataRequest",
    parse_certificate_search_response: "CertificateSearchResponse",
    parse_certificate_data_response: "CertificateDataResponse",
    parse_device_csr_request: "DeviceCertificateSigningRequest",
    parse_device_csr_response: "DeviceCertificateSigningResponse",
    parse_submit_csr_batch: "SubmitCSRBatch",
    parse_submit_csr_batch_status: "SubmitCSRBatchStatus",
    parse_csr_batch_result: "CSRBatchResult",
}


def test_every_valid_body_parses() -> None:
    for parse, body in VALID.values():
        parse(body)


def _refused(parse: Parser, body: bytes) -> DccFormatError:
    with pytest.raises(DccFormatError) as caught:
        parse(body)
    assert caught.value.code == "FM:AA1"
    assert "\n" not in caught.value.message
    return caught.value


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<ROOT><Version>&lol9;</Version></ROOT>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ROOT ID="a"><Version>&xxe;</Version></ROOT>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % ext SYSTEM "http://127.0.0.1:1/evil.dtd"> %ext;]>
<ROOT ID="a"/>"""

EXTERNAL_DTD = b'<?xml version="1.0"?><!DOCTYPE ROOT SYSTEM "file:///etc/passwd"><ROOT ID="a"/>'
BARE_DOCTYPE = b"<!DOCTYPE ROOT><ROOT/>"


@pytest.mark.parametrize("parse", PARSERS, ids=list(VALID))
@pytest.mark.parametrize("attack", [BILLION_LAUGHS, XXE, PARAMETER_ENTITY, EXTERNAL_DTD, BARE_DOCTYPE])
def test_dtds_and_entities_are_refused_before_they_act(parse: Parser, attack: bytes) -> None:
    body = attack.replace(b"ROOT", ROOTS[parse].encode())  # type: ignore[index]
    start = time.perf_counter()
    error = _refused(parse, body)
    assert "DTD" in error.message or "entit" in error.message
    assert "root:" not in error.message  # nothing of /etc/passwd
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("parse", PARSERS, ids=list(VALID))
def test_undeclared_entities_are_refused(parse: Parser) -> None:
    _refused(parse, f"<{ROOTS[parse]}>&ent;</{ROOTS[parse]}>".encode())  # type: ignore[index]


@pytest.mark.parametrize("parse", PARSERS, ids=list(VALID))
def test_an_endless_body_stops_at_the_limit(parse: Parser) -> None:
    """A body that never ends (but never goes wrong either) is cut off at ``max_bytes``."""
    root = ROOTS[parse].encode()  # type: ignore[index]
    endless = itertools.chain([b"<" + root + b' ID="a">'], itertools.repeat(b" " * 4096))
    with pytest.raises(MessageTooLarge) as caught:
        parse(endless, max_bytes=1 << 20)  # type: ignore[call-arg]
    assert caught.value.code == "FM:AA1"
    assert "larger than 1048576 bytes" in caught.value.message


def test_deep_nesting_is_refused_early() -> None:
    body = b'<DeviceCertificateSigningRequest ID="a">' + b"<a>" * 100_000 + b"</a>" * 100_000
    body += b"</DeviceCertificateSigningRequest>"
    start = time.perf_counter()
    error = _refused(lambda b: parse_device_csr_request(b, max_bytes=1 << 24), body)
    assert "deeper" in error.message
    assert time.perf_counter() - start < 0.5


def test_non_xml_encodings_declared_by_the_client_are_handled() -> None:
    request = DeviceCertificateSigningRequest("r1", CSR)
    utf8 = render_device_csr_request(request)
    utf16 = utf8.decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    assert parse_device_csr_request(utf16) == request
    unknown = utf8.replace(b'encoding="UTF-8"', b'encoding="x-no-such"')
    assert "encoding" in _refused(parse_device_csr_request, unknown).message


def test_comments_and_processing_instructions_are_ignored() -> None:
    body = (
        b'<?xml version="1.0"?><!-- hello --><?app x?><DeviceCertificateSigningRequest ID="r1"><!-- c -->'
        b"<Version>1.0</Version><CertificateSigningRequest><![CDATA["
        + base64.b64encode(CSR)
        + b"]]></CertificateSigningRequest></DeviceCertificateSigningRequest>"
    )
    assert parse_device_csr_request(body).csr_der == CSR


def test_trailing_content_after_the_root_is_refused() -> None:
    _, body = VALID["adhoc-request"]
    _refused(parse_device_csr_request, body + b"<again/>")


def _only_format_errors(parse: Parser, body: bytes) -> None:
    try:
        parse(body)
    except DccFormatError as error:
        assert isinstance(error, SmkiError)
        assert error.code in {"FM:AA1", "FM:AA2"}
        assert error.message and "\n" not in error.message


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PARSERS), st.binary(max_size=400))
def test_random_bytes_only_ever_give_format_errors(parse: Parser, body: bytes) -> None:
    _only_format_errors(parse, body)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Parser, bytes]:
    """A valid body with a few random byte-level edits: deletions, insertions, replacements."""
    parse, body = draw(st.sampled_from(list(VALID.values())))
    data = bytearray(body)
    tokens = [b"<", b">", b"/", b'"', b"&", b"=", b"ID", b"<Version>", b"</", b"&amp;", b"\x00", b"\xff", b" "]
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["delete", "insert", "replace"]))
        if action == "delete":
            del data[at : at + draw(st.integers(1, 20))]
        elif action == "insert":
            data[at:at] = draw(st.sampled_from(tokens) | st.binary(max_size=6))
        else:
            data[at : at + 1] = draw(st.binary(min_size=1, max_size=1))
    return parse, bytes(data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_valid_messages_only_ever_give_format_errors(case: tuple[Parser, bytes]) -> None:
    _only_format_errors(*case)


NAMES = [
    "Version", "CertificateSigningRequest", "DeviceCSR", "BatchStatus", "BatchId", "Error", "ErrorCode",
    "ErrorText", "Status", "Certificate", "DeviceCertificate", "TransactionId", "Build", "Result",
    "CertificateSerial", "CertificateSubjectName", "CertificateSubjectAltName", "CertificateStatus",
    "CertificateUsage", "CertificateRole", "ManufacturingFlag", "CertificateBody", "CertificateResponse",
    "ResponseCode", "ResponseMessage", "AuditReference",
]  # fmt: skip
VALUES = st.sampled_from(["1.0", "PENDING", "SUCCESS", "CR:CC1", "I", "DS", "2", "true", "AAAA", "12", "", " x "])


def _tree(depth: int = 0) -> st.SearchStrategy[str]:
    leaf = st.builds(lambda n, v: f"<{n}>{v}</{n}>", st.sampled_from(NAMES), VALUES)
    if depth >= 2:
        return leaf
    node = st.builds(
        lambda n, attr, kids: f"<{n}{attr}>{''.join(kids)}</{n}>",
        st.sampled_from(NAMES),
        st.sampled_from(["", ' ID="a"', ' ID=""']),
        st.lists(_tree(depth + 1), max_size=4),
    )
    return leaf | node


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PARSERS), st.sampled_from(["", ' ID="x"', ' ID="y"']), st.lists(_tree(), max_size=6))
def test_well_formed_nonsense_in_the_right_root_only_gives_format_errors(
    parse: Parser, attr: str, kids: list[str]
) -> None:
    root = ROOTS[parse]  # type: ignore[index]
    _only_format_errors(parse, f"<{root}{attr}>{''.join(kids)}</{root}>".encode())
