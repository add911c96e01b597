"""The DCC-compatible SMKI Repository messages (spec §3.1): certificate search and retrieval.

Element names, nesting and value formats follow what existing DCC clients send and read (the
reference client is SmartDCCInnovation/dccboxed-keystore): requests are a root holding one
element; responses carry ``ResponseCode``, ``ResponseMessage``, ``AuditReference`` and the
certificate fields. Element order in responses follows that client's fixtures:

* ``Result``: CertificateSerial, CertificateSubjectName|CertificateSubjectAltName,
  CertificateStatus, [CertificateRole], CertificateUsage, ManufacturingFlag;
* ``CertificateResponse``: CertificateSubjectName|CertificateSubjectAltName, CertificateSerial,
  CertificateStatus, CertificateBody, [CertificateRole], CertificateUsage, ManufacturingFlag.

Requests are read strictly (they come from outside); responses are read in any element order and
with wrapped base64, because they are what a *client* of a real DCC Repository receives.

Every request refusal is :class:`InvalidSearchParameters` (the server answers HTTP 401); an
oversize body is :class:`MessageTooLarge`. "No result" is not a parse outcome: the server answers
402 when a valid request matches nothing.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from smki.domain import CertStatus, Usage
from smki.eui64 import InvalidEUI64, eui64_hyphenated, parse_eui64
from smki.interfaces.dcc.safe_xml import (
    DEFAULT_MAX_BYTES,
    XML_DECLARATION,
    Child,
    DccFormatError,
    MessageTooLarge,
    Node,
    check_attributes,
    check_xml_text,
    children,
    decode_lenient_base64,
    elem,
    format_error,
    one_text,
    parse_xml,
    shown,
)

_HEX_SERIAL = re.compile(r"[0-9A-Fa-f]{1,40}")  # RFC 5280: at most 20 octets
_MAX_SERIAL = (1 << 160) - 1


class InvalidSearchParameters(DccFormatError):
    """A Repository request the server must answer with HTTP 401 ("invalid search parameters")."""


class SearchBy(StrEnum):
    """Which name a Repository search is by: the element name is the wire value."""

    SUBJECT_NAME = "CertificateSubjectName"  # Organisation Certificates: the Entity Identifier
    SUBJECT_ALT_NAME = "CertificateSubjectAltName"  # Device Certificates: the Device ID


@dataclass(frozen=True, slots=True)
class CertificateSearchRequest:
    """``<CertificateSearchRequest>``: exactly one of subject name (organisation) or alt name (device)."""

    by: SearchBy
    eui64: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.by, SearchBy):
            raise ValueError("by must be a SearchBy")
        if not isinstance(self.eui64, bytes) or len(self.eui64) != 8:
            raise ValueError("eui64 must be 8 octets")


@dataclass(frozen=True, slots=True)
class CertificateDataRequest:
    """``<CertificateDataRequest>``: one certificate by serial number (hex on the wire)."""

    serial: int

    def __post_init__(self) -> None:
        if not 0 < self.serial <= _MAX_SERIAL:
            raise ValueError("serial must be a positive integer of at most 20 octets")


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    """The fields the Repository shows for one certificate.

    ``device`` selects ``CertificateSubjectAltName`` (Device ID) over ``CertificateSubjectName``
    (Entity Identifier); ``role`` (decimal Remote Party Role, 0-255) is for Organisation
    Certificates only and is omitted when None.
    """

    serial: int
    eui64: bytes
    device: bool
    status: CertStatus
    usage: Usage
    role: int | None = None
    manufacturing: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.serial <= _MAX_SERIAL:
            raise ValueError("serial must be a positive integer of at most 20 octets")
        if not isinstance(self.eui64, bytes) or len(self.eui64) != 8:
            raise ValueError("eui64 must be 8 octets")
        if not isinstance(self.status, CertStatus) or not isinstance(self.usage, Usage):
            raise ValueError("status and usage must be CertStatus and Usage")
        if self.device and self.role is not None:
            raise ValueError("a Device Certificate has no CertificateRole")
        if self.role is not None and not 0 <= self.role <= 255:
            raise ValueError("role must be 0-255")


@dataclass(frozen=True, slots=True)
class CertificateSearchResponse:
    """``<CertificateSearchResponse>``: one ``Result`` per certificate found."""

    audit_reference: str
    results: tuple[CertificateRecord, ...] = ()
    response_code: int = 200
    response_message: str = "Success"

    def __post_init__(self) -> None:
        _check_envelope(self.audit_reference, self.response_code, self.response_message)


@dataclass(frozen=True, slots=True)
class CertificateDataResponse:
    """``<CertificateDataResponse><CertificateResponse>``: the record plus the DER certificate."""

    audit_reference: str
    certificate: CertificateRecord
    der: bytes
    response_code: int = 200
    response_message: str = "Success"

    def __post_init__(self) -> None:
        _check_envelope(self.audit_reference, self.response_code, self.response_message)
        if not self.der:
            raise ValueError("der must not be empty")


def _check_envelope(audit_reference: str, code: int, message: str) -> None:
    check_xml_text(audit_reference, "AuditReference")
    check_xml_text(message, "ResponseMessage")
    if not -(2**31) <= code < 2**31:
        raise ValueError("ResponseCode must fit xs:int")


# --------------------------------------------------------------------------------------------
# Requests (server side: strict)


def _strict(data: bytes | Iterable[bytes], root: str, max_bytes: int) -> Node:
    try:
        node = parse_xml(data, root, max_bytes=max_bytes)
        check_attributes(node, ())
        return node
    except MessageTooLarge:
        raise
    except DccFormatError as error:
        raise InvalidSearchParameters(error.code, error.message) from None


def _invalid(message: str) -> InvalidSearchParameters:
    error = format_error(message)
    return InvalidSearchParameters(error.code, error.message)


def parse_certificate_search_request(
    data: bytes | Iterable[bytes], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> CertificateSearchRequest:
    """Read ``<CertificateSearchRequest>``; exactly one of the two name elements, an EUI-64.

    The EUI-64 is accepted as ``90-B3-D5-1F-30-01-00-00`` (the spec's form), with ``:``, or as 16
    hex digits, in either case.
    """
    node = _strict(data, "CertificateSearchRequest", max_bytes)
    try:
        grouped = children(
            node, [Child(SearchBy.SUBJECT_NAME, 0), Child(SearchBy.SUBJECT_ALT_NAME, 0)], ordered=False
        )
    except DccFormatError as error:
        raise InvalidSearchParameters(error.code, error.message) from None
    given = [by for by in SearchBy if grouped[by]]
    if len(given) != 1:
        raise _invalid("give exactly one of CertificateSubjectName or CertificateSubjectAltName")
    by = given[0]
    text = _text(grouped[by][0])
    try:
        eui64 = parse_eui64(text)
    except InvalidEUI64:
        raise _invalid(f"{by} {shown(text)} is not an EUI-64 like 90-B3-D5-1F-30-01-00-00") from None
    return CertificateSearchRequest(by, eui64)


def parse_certificate_data_request(
    data: bytes | Iterable[bytes], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> CertificateDataRequest:
    """Read ``<CertificateDataRequest><CertificateSerial>HEX</CertificateSerial>``."""
    node = _strict(data, "CertificateDataRequest", max_bytes)
    try:
        grouped = children(node, [Child("CertificateSerial")])
    except DccFormatError as error:
        raise InvalidSearchParameters(error.code, error.message) from None
    text = _text(grouped["CertificateSerial"][0])
    serial = _serial(text)
    if serial is None:
        raise _invalid(f"CertificateSerial {shown(text)} is not a positive hex serial of at most 20 octets")
    return CertificateDataRequest(serial)


def _text(node: Node) -> str:
    try:
        return node.text()
    except DccFormatError as error:
        raise InvalidSearchParameters(error.code, error.message) from None


def _serial(text: str) -> int | None:
    if not _HEX_SERIAL.fullmatch(text):
        return None
    value = int(text, 16)
    return value if value > 0 else None


def render_certificate_search_request(request: CertificateSearchRequest) -> bytes:
    """The request body exactly as DCC clients send it (no whitespace)."""
    body = elem(request.by, eui64_hyphenated(request.eui64))
    return XML_DECLARATION + f"<CertificateSearchRequest>{body}</CertificateSearchRequest>".encode()


def render_certificate_data_request(request: CertificateDataRequest) -> bytes:
    """``<CertificateDataRequest>`` with the serial as upper-case hex."""
    body = elem("CertificateSerial", serial_hex(request.serial))
    return XML_DECLARATION + f"<CertificateDataRequest>{body}</CertificateDataRequest>".encode()


# --------------------------------------------------------------------------------------------
# Responses (rendered by the server; read leniently by clients)


def serial_hex(serial: int) -> str:
    """Upper-case hex, an even number of digits (whole octets), as the DCC Repository shows it."""
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


def _envelope(code: int, message: str, audit_reference: str) -> str:
    return elem("ResponseCode", str(code)) + elem("ResponseMessage", message) + elem("AuditReference", audit_reference)


def _name(record: CertificateRecord) -> str:
    tag = SearchBy.SUBJECT_ALT_NAME if record.device else SearchBy.SUBJECT_NAME
    return elem(tag, eui64_hyphenated(record.eui64))


def _tail(record: CertificateRecord) -> str:
    role = "" if record.role is None else elem("CertificateRole", str(record.role))
    return (
        role
        + elem("CertificateUsage", record.usage.value)
        + elem("ManufacturingFlag", "true" if record.manufacturing else "false")
    )


def render_certificate_search_response(response: CertificateSearchResponse) -> bytes:
    """``<CertificateSearchResponse>`` with one ``<Result>`` per record, in the given order."""
    parts = [
        "<CertificateSearchResponse>",
        _envelope(response.response_code, response.response_message, response.audit_reference),
    ]
    for record in response.results:
        parts.append(
            "<Result>"
            + elem("CertificateSerial", serial_hex(record.serial))
            + _name(record)
            + elem("CertificateStatus", record.status.value)
            + _tail(record)
            + "</Result>"
        )
    parts.append("</CertificateSearchResponse>")
    return XML_DECLARATION + "".join(parts).encode()


def render_certificate_data_response(response: CertificateDataResponse) -> bytes:
    """``<CertificateDataResponse><CertificateResponse>`` with ``CertificateBody`` as bare base64 DER."""
    record = response.certificate
    body = (
        "<CertificateDataResponse>"
        + _envelope(response.response_code, response.response_message, response.audit_reference)
        + "<CertificateResponse>"
        + _name(record)
        + elem("CertificateSerial", serial_hex(record.serial))
        + elem("CertificateStatus", record.status.value)
        + elem("CertificateBody", base64.b64encode(response.der).decode("ascii"))
        + _tail(record)
        + "</CertificateResponse></CertificateDataResponse>"
    )
    return XML_DECLARATION + body.encode()


_ENVELOPE = [Child("ResponseCode"), Child("ResponseMessage"), Child("AuditReference")]
_RECORD = [
    Child("CertificateSerial"),
    Child(SearchBy.SUBJECT_NAME, 0),
    Child(SearchBy.SUBJECT_ALT_NAME, 0),
    Child("CertificateStatus"),
    Child("CertificateRole", 0),
    Child("CertificateUsage"),
    Child("ManufacturingFlag"),
]


def _envelope_fields(grouped: dict[str, list[Node]]) -> tuple[int, str, str]:
    code_text = one_text(grouped, "ResponseCode") or ""
    if not re.fullmatch(r"-?[0-9]{1,10}", code_text) or not -(2**31) <= int(code_text) < 2**31:
        raise format_error(f"ResponseCode {shown(code_text)} is not an integer")
    return int(code_text), one_text(grouped, "ResponseMessage") or "", one_text(grouped, "AuditReference") or ""


def _record(node: Node, extra: Iterable[Child] = ()) -> tuple[CertificateRecord, dict[str, list[Node]]]:
    check_attributes(node, ())
    grouped = children(node, [*_RECORD, *extra], ordered=False)
    names = [by for by in SearchBy if grouped[by]]
    if len(names) != 1:
        raise format_error(f"<{node.name}> needs exactly one of CertificateSubjectName or CertificateSubjectAltName")
    by = names[0]
    name_text = one_text(grouped, by) or ""
    serial_text = one_text(grouped, "CertificateSerial") or ""
    status_text = one_text(grouped, "CertificateStatus") or ""
    usage_text = one_text(grouped, "CertificateUsage") or ""
    role_text = one_text(grouped, "CertificateRole")
    flag_text = one_text(grouped, "ManufacturingFlag") or ""
    try:
        eui64 = parse_eui64(name_text)
    except InvalidEUI64:
        raise format_error(f"{by} {shown(name_text)} is not an EUI-64") from None
    serial = _serial(serial_text)
    if serial is None:
        raise format_error(f"CertificateSerial {shown(serial_text)} is not a positive hex serial")
    if status_text not in {s.value for s in CertStatus}:
        raise format_error(f"CertificateStatus {shown(status_text)} is not one of P, I, N, E, R")
    if usage_text not in {u.value for u in Usage}:
        raise format_error(f"CertificateUsage {shown(usage_text)} is not DS or KA")
    if flag_text not in {"true", "false", "1", "0"}:
        raise format_error(f"ManufacturingFlag {shown(flag_text)} is not a boolean")
    role: int | None = None
    if role_text is not None:
        if not role_text.isascii() or not role_text.isdigit() or len(role_text) > 3 or int(role_text) > 255:
            raise format_error(f"CertificateRole {shown(role_text)} is not a decimal role 0-255")
        role = int(role_text)
    device = by is SearchBy.SUBJECT_ALT_NAME
    if device and role is not None:
        raise format_error("a Device Certificate result has no CertificateRole")
    record = CertificateRecord(
        serial=serial,
        eui64=eui64,
        device=device,
        status=CertStatus(status_text),
        usage=Usage(usage_text),
        role=role,
        manufacturing=flag_text in {"true", "1"},
    )
    return record, grouped


def parse_certificate_search_response(
    data: bytes | Iterable[bytes], *, max_bytes: int = 64 * 1024 * 1024
) -> CertificateSearchResponse:
    """Read ``<CertificateSearchResponse>`` (client side; any element order)."""
    root = parse_xml(data, "CertificateSearchResponse", max_bytes=max_bytes)
    check_attributes(root, ())
    grouped = children(root, [*_ENVELOPE, Child("Result", 0, 1 << 62)], ordered=False)
    code, message, audit = _envelope_fields(grouped)
    results = tuple(_record(node)[0] for node in grouped["Result"])
    try:
        return CertificateSearchResponse(audit, results, code, message)
    except ValueError as error:  # pragma: no cover - parsed text is always XML-legal
        raise format_error(str(error)) from None


def parse_certificate_data_response(
    data: bytes | Iterable[bytes], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> CertificateDataResponse:
    """Read ``<CertificateDataResponse>`` (client side; any order; ``CertificateBody`` may be wrapped)."""
    root = parse_xml(data, "CertificateDataResponse", max_bytes=max_bytes)
    check_attributes(root, ())
    grouped = children(root, [*_ENVELOPE, Child("CertificateResponse")], ordered=False)
    code, message, audit = _envelope_fields(grouped)
    record, fields = _record(grouped["CertificateResponse"][0], [Child("CertificateBody")])
    der = decode_lenient_base64(one_text(fields, "CertificateBody") or "", "CertificateBody")
    try:
        return CertificateDataResponse(audit, record, der, code, message)
    except ValueError as error:
        raise format_error(str(error)) from None
