"""The DCC-compatible Device CSR web service messages (spec §3.2, SEC Appendix M §2.3-2.5).

* Ad Hoc: ``DeviceCertificateSigningRequest`` → ``DeviceCertificateSigningResponse`` (synchronous).
* Batched: ``SubmitCSRBatch`` → ``SubmitCSRBatchStatus``; later ``CSRBatchResult``.

Class names are the element names, so code reads like the wire. Every dataclass validates itself
on construction (lengths, status/content combinations, ``ErrorCode`` syntax), which makes an
invalid response impossible to render and gives the parsers one source of truth. Requests are read
strictly: anything the XSDs in ``docs/xsd/`` would reject is ``FM:AA1`` (more than 50,000 CSRs is
``FM:AA2``). A CSR's *content* is not judged here: the bare base64 is decoded to DER and handed on;
whether it is an acceptable PKCS#10 is the CA's decision and comes back as a ``CR:`` code.

``SubmitCSRBatch`` bodies reach ~30 MB, so they are parsed as a stream (each ``DeviceCSR`` is
decoded and dropped from the tree as soon as it closes) and ``CSRBatchResult`` is rendered as a
generator of byte chunks that can pull its entries lazily from storage.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from smki import __version__
from smki.interfaces.dcc.safe_xml import (
    DEFAULT_MAX_BYTES,
    FM_TOO_MANY_CSRS,
    XML_DECLARATION,
    Child,
    DccFormatError,
    Node,
    check_attributes,
    check_no_text,
    check_xml_text,
    children,
    decode_bare_base64,
    decode_lenient_base64,
    elem,
    esc,
    format_error,
    one_text,
    parse_positive_int,
    parse_xml,
    shown,
    strict_base64,
)

#: The only message Version the services speak.
VERSION = "1.0"
#: The ``Build`` smki reports in Ad Hoc responses unless the server says otherwise.
BUILD = f"smki-{__version__}"
#: SEC Appendix M: at most 50,000 CSRs in one batch.
MAX_BATCH_CSRS = 50_000
#: The DCC's own ErrorText for FM:AA2, verbatim (SEC Appendix M), so clients matching on it still match.
TOO_MANY_CSRS_TEXT = "Number of submitted CSRs exceeds maximum volume"
#: Default body limit for ``SubmitCSRBatch`` (50,000 typical Device CSRs are ~25-30 MB).
DEFAULT_BATCH_MAX_BYTES = 64 * 1024 * 1024

_T = TypeVar("_T")
_ERROR_CODE = re.compile(r"[A-Z]{2}:[A-Za-z0-9]+")
_MAX_POSITIVE = (1 << 63) - 1  # what BIGINT columns hold; 19 digits on the wire


class AdHocStatus(StrEnum):
    """``Status`` of a ``DeviceCertificateSigningResponse`` (Ad Hoc service)."""

    SUCCESS = "SUCCESS"
    UNKNOWN_DEVICE = "UNKNOWN_DEVICE"  # UD:… no certificate has been issued yet for this Device ID
    ISSUANCE_ANOMALY = "ISSUANCE_ANOMALY"
    CSR_ERROR = "CSR_ERROR"  # CR:…
    CA_ERROR = "CA_ERROR"
    FORMAT_ERROR = "FORMAT_ERROR"  # FM:…
    WORKFLOW_ERROR = "WORKFLOW_ERROR"  # WF:…


class SubmitStatus(StrEnum):
    """``BatchStatus`` of a ``SubmitCSRBatchStatus`` (the answer to a submission)."""

    PENDING = "PENDING"
    FORMAT_ERROR = "FORMAT_ERROR"
    WORKFLOW_ERROR = "WORKFLOW_ERROR"


class BatchStatus(StrEnum):
    """``BatchStatus`` of a ``CSRBatchResult`` (a batch's life cycle)."""

    PENDING = "PENDING"
    REJECTED = "REJECTED"
    PARSING = "PARSING"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    TAMPERED = "TAMPERED"
    FORMAT_ERROR = "FORMAT_ERROR"
    WORKFLOW_ERROR = "WORKFLOW_ERROR"


class DeviceStatus(StrEnum):
    """``Status`` of one ``DeviceCertificate`` in a completed batch."""

    SUCCESS = "SUCCESS"
    ISSUANCE_ANOMALY = "ISSUANCE_ANOMALY"
    INELIGIBLE = "INELIGIBLE"  # IN:…
    CSR_ERROR = "CSR_ERROR"  # CR:…
    CA_ERROR = "CA_ERROR"
    WORKFLOW_ERROR = "WORKFLOW_ERROR"  # WF:…


#: ErrorCode prefixes the spec ties to a status; a response pairing them otherwise is refused.
STATUS_PREFIX: dict[str, str] = {
    "UNKNOWN_DEVICE": "UD",
    "CSR_ERROR": "CR",
    "FORMAT_ERROR": "FM",
    "WORKFLOW_ERROR": "WF",
    "INELIGIBLE": "IN",
    "ISSUANCE_ANOMALY": "CA",  # spec §7.2: "ISSUANCE_ANOMALY uses the error prefix CA:, like CA_ERROR"
    "CA_ERROR": "CA",
}

_ERROR_STATES = {BatchStatus.FORMAT_ERROR, BatchStatus.WORKFLOW_ERROR}
_OPTIONAL_ERROR_STATES = {BatchStatus.REJECTED, BatchStatus.TAMPERED}


@dataclass(frozen=True, slots=True)
class DccError:
    """``<Error><ErrorCode/><ErrorText/></Error>``: code ``[A-Z]{2}:[A-Za-z0-9]+``, at most 10 chars."""

    code: str
    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not _ERROR_CODE.fullmatch(self.code) or len(self.code) > 10:
            raise ValueError(f"ErrorCode {shown(str(self.code))} must match [A-Z]{{2}}:[A-Za-z0-9]+, at most 10 chars")
        check_xml_text(self.text, "ErrorText")


def _check_id(value: object, limit: int, what: str) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise ValueError(f"{what} ID must be 1-{limit} characters")
    check_xml_text(value, f"{what} ID")


def _check_outcome(status: str, der: bytes | None, error: DccError | None, what: str) -> None:
    if status == "SUCCESS":
        if not der or error is not None:
            raise ValueError(f"a SUCCESS {what} carries a Certificate and no Error")
        return
    if der is not None or error is None:
        raise ValueError(f"a {status} {what} carries an Error and no Certificate")
    _check_prefix(status, error)


def _check_prefix(status: str, error: DccError) -> None:
    prefix = STATUS_PREFIX.get(status)
    if prefix is not None and not error.code.startswith(prefix + ":"):
        raise ValueError(f"a {status} ErrorCode starts with {prefix}:, not {error.code}")


# --------------------------------------------------------------------------------------------
# Messages


@dataclass(frozen=True, slots=True)
class DeviceCertificateSigningRequest:
    """Ad Hoc request: ``ID`` 1-32 chars, ``Version`` 1.0, one CSR (DER, bare base64 on the wire)."""

    id: str
    csr_der: bytes
    version: str = VERSION

    def __post_init__(self) -> None:
        _check_id(self.id, 32, "DeviceCertificateSigningRequest")
        if self.version != VERSION or not self.csr_der:
            raise ValueError("Version must be 1.0 and the CSR non-empty")


@dataclass(frozen=True, slots=True)
class DeviceCertificateSigningResponse:
    """Ad Hoc response (always HTTP 200): ``Certificate`` on SUCCESS, else ``Error``.

    ``id`` echoes the request's ID; it is None (attribute omitted) only when the request's ID
    could not be read, e.g. a body that is not XML.
    """

    id: str | None
    transaction_id: int
    status: AdHocStatus
    certificate_der: bytes | None = None
    error: DccError | None = None
    build: str = BUILD
    version: str = VERSION

    def __post_init__(self) -> None:
        if self.id is not None:
            _check_id(self.id, 32, "DeviceCertificateSigningResponse")
        if not isinstance(self.transaction_id, int) or not 0 < self.transaction_id <= _MAX_POSITIVE:
            raise ValueError("TransactionId must be a positive integer")
        if not isinstance(self.status, AdHocStatus):
            raise ValueError("status must be an AdHocStatus")
        _check_outcome(self.status, self.certificate_der, self.error, "response")
        check_xml_text(self.build, "Build")
        if not self.build.strip() or self.build != self.build.strip() or self.version != VERSION:
            raise ValueError("Build must be non-blank without surrounding whitespace; Version must be 1.0")


@dataclass(frozen=True, slots=True)
class DeviceCSR:
    """One ``<DeviceCSR ID="…">`` of a batch: ID 1-100 chars, unique in its batch; the CSR as DER."""

    id: str
    csr_der: bytes

    def __post_init__(self) -> None:
        _check_id(self.id, 100, "DeviceCSR")
        if not self.csr_der:
            raise ValueError("the CSR must not be empty")


@dataclass(frozen=True, slots=True)
class SubmitCSRBatch:
    """Batch request: ``ID`` 1-256 chars, ``Version`` 1.0, 1 to 50,000 CSRs with unique IDs."""

    id: str
    csrs: tuple[DeviceCSR, ...]
    version: str = VERSION

    def __post_init__(self) -> None:
        _check_id(self.id, 256, "SubmitCSRBatch")
        if self.version != VERSION:
            raise ValueError("Version must be 1.0")
        if not 1 <= len(self.csrs) <= MAX_BATCH_CSRS:
            raise ValueError(f"a batch holds 1-{MAX_BATCH_CSRS} CSRs")
        if len({csr.id for csr in self.csrs}) != len(self.csrs):
            raise ValueError("DeviceCSR IDs must be unique in a batch")


@dataclass(frozen=True, slots=True)
class SubmitCSRBatchStatus:
    """Answer to a submission: PENDING with a ``BatchId``, or FORMAT_/WORKFLOW_ERROR with an ``Error``."""

    status: SubmitStatus
    batch_id: int | None = None
    error: DccError | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.status, SubmitStatus):
            raise ValueError("status must be a SubmitStatus")
        if self.status is SubmitStatus.PENDING:
            if self.batch_id is None or not 0 < self.batch_id <= _MAX_POSITIVE or self.error is not None:
                raise ValueError("PENDING carries a positive BatchId and no Error")
            return
        if self.batch_id is not None or self.error is None:
            raise ValueError(f"{self.status} carries an Error and no BatchId")
        _check_prefix(self.status, self.error)


@dataclass(frozen=True, slots=True)
class DeviceCertificate:
    """One result of a completed batch: ``Certificate`` on SUCCESS, else ``Error``."""

    id: str
    status: DeviceStatus
    certificate_der: bytes | None = None
    error: DccError | None = None

    def __post_init__(self) -> None:
        _check_id(self.id, 100, "DeviceCertificate")
        if not isinstance(self.status, DeviceStatus):
            raise ValueError("status must be a DeviceStatus")
        _check_outcome(self.status, self.certificate_der, self.error, "DeviceCertificate")


@dataclass(frozen=True, slots=True)
class CSRBatchResult:
    """A batch's state; one ``DeviceCertificate`` per CSR once COMPLETED.

    An ``Error`` is required for FORMAT_ERROR and WORKFLOW_ERROR, optional for REJECTED and
    TAMPERED, absent otherwise.
    """

    status: BatchStatus
    certificates: tuple[DeviceCertificate, ...] = field(default=())
    error: DccError | None = None

    def __post_init__(self) -> None:
        _check_result_header(self.status, self.error)
        if self.certificates and self.status is not BatchStatus.COMPLETED:
            raise ValueError("only a COMPLETED batch lists DeviceCertificates")
        if len(self.certificates) > MAX_BATCH_CSRS:
            raise ValueError(f"a batch holds at most {MAX_BATCH_CSRS} CSRs")
        if len({c.id for c in self.certificates}) != len(self.certificates):
            raise ValueError("DeviceCertificate IDs must be unique in a batch")


def _check_result_header(status: BatchStatus, error: DccError | None) -> None:
    if not isinstance(status, BatchStatus):
        raise ValueError("status must be a BatchStatus")
    if status in _ERROR_STATES and error is None:
        raise ValueError(f"{status} carries an Error")
    if error is not None:
        if status not in _ERROR_STATES | _OPTIONAL_ERROR_STATES:
            raise ValueError(f"{status} carries no Error")
        _check_prefix(status, error)


# --------------------------------------------------------------------------------------------
# Rendering


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode("ascii")


def _error_xml(error: DccError) -> str:
    return "<Error>" + elem("ErrorCode", error.code) + elem("ErrorText", error.text) + "</Error>"


def _outcome_xml(der: bytes | None, error: DccError | None) -> str:
    return elem("Certificate", _b64(der)) if der is not None else _error_xml(error) if error else ""


def render_device_csr_request(request: DeviceCertificateSigningRequest) -> bytes:
    """The Ad Hoc request body a DCC User's system sends."""
    body = (
        f'<DeviceCertificateSigningRequest ID="{esc(request.id)}">'
        + elem("Version", request.version)
        + elem("CertificateSigningRequest", _b64(request.csr_der))
        + "</DeviceCertificateSigningRequest>"
    )
    return XML_DECLARATION + body.encode()


def render_device_csr_response(response: DeviceCertificateSigningResponse) -> bytes:
    """``DeviceCertificateSigningResponse``: Version, Build, TransactionId, Status, then the outcome."""
    id_attr = "" if response.id is None else f' ID="{esc(response.id)}"'
    body = (
        f"<DeviceCertificateSigningResponse{id_attr}>"
        + elem("Version", response.version)
        + elem("Build", response.build)
        + elem("TransactionId", str(response.transaction_id))
        + elem("Status", response.status.value)
        + _outcome_xml(response.certificate_der, response.error)
        + "</DeviceCertificateSigningResponse>"
    )
    return XML_DECLARATION + body.encode()


def render_submit_csr_batch(batch: SubmitCSRBatch) -> bytes:
    """The ``SubmitCSRBatch`` body (used by clients and tests)."""
    parts = [f'<SubmitCSRBatch ID="{esc(batch.id)}">', elem("Version", batch.version)]
    parts.extend(f'<DeviceCSR ID="{esc(csr.id)}">{_b64(csr.csr_der)}</DeviceCSR>' for csr in batch.csrs)
    parts.append("</SubmitCSRBatch>")
    return XML_DECLARATION + "".join(parts).encode()


def render_submit_csr_batch_status(status: SubmitCSRBatchStatus) -> bytes:
    """``SubmitCSRBatchStatus``: BatchStatus, then BatchId (PENDING) or Error."""
    inner = elem("BatchStatus", status.status.value)
    if status.batch_id is not None:
        inner += elem("BatchId", str(status.batch_id))
    if status.error is not None:
        inner += _error_xml(status.error)
    return XML_DECLARATION + f"<SubmitCSRBatchStatus>{inner}</SubmitCSRBatchStatus>".encode()


#: An ID that needs no escaping and is one a ``DeviceCertificate`` accepts: 1-100 characters XML 1.0
#: can carry, none of ``& < > "`` or tab, CR, LF (which :func:`esc` would replace).
_PLAIN_ID = re.compile("[\x20\x21\x23-\x25\x27-\x3b\x3d\x3f-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]{1,100}")
_SUCCESS_OPEN = b'"><Status>SUCCESS</Status><Certificate>'
_SUCCESS_CLOSE = b"</Certificate></DeviceCertificate>"


def _success_xml(entry_id: str, der: bytes) -> bytes:
    """A SUCCESS ``DeviceCertificate``, checked as the dataclass checks it, as bytes.

    The one entry a large result is made of: rendered straight from the stored DER, without a
    dataclass, an f-string and an encode per entry (byte for byte what :func:`_entry_xml` writes).
    """
    if type(entry_id) is not str or not _PLAIN_ID.fullmatch(entry_id):
        return _entry_xml(DeviceCertificate(entry_id, DeviceStatus.SUCCESS, certificate_der=der))
    if not der or not isinstance(der, bytes):
        raise ValueError("a SUCCESS DeviceCertificate carries a Certificate and no Error")
    return b'<DeviceCertificate ID="' + entry_id.encode() + _SUCCESS_OPEN + binascii.b2a_base64(der, newline=False) \
        + _SUCCESS_CLOSE


def _entry_xml(entry: DeviceCertificate) -> bytes:
    return (
        f'<DeviceCertificate ID="{esc(entry.id)}">'
        + elem("Status", entry.status.value)
        + _outcome_xml(entry.certificate_der, entry.error)
        + "</DeviceCertificate>"
    ).encode()


def iter_csr_batch_result(
    status: BatchStatus,
    certificates: Iterable[DeviceCertificate | tuple[str, bytes]] = (),
    error: DccError | None = None,
    *,
    chunk_bytes: int = 64 * 1024,
) -> Iterator[bytes]:
    """Render ``CSRBatchResult`` as byte chunks of about ``chunk_bytes``, pulling entries lazily.

    A server passes a generator over its stored results, so a 50,000-entry answer (~30 MB) is
    never built as one string. An entry is a :class:`DeviceCertificate` or, for a SUCCESS, just
    ``(ID, certificate DER)`` — checked the same way, and the cheapest to render. Entries are
    checked as they stream (COMPLETED only, valid and unique IDs, at most 50,000); a violation
    raises ValueError before the offending entry is sent.
    """
    _check_result_header(status, error)
    head = XML_DECLARATION.decode() + "<CSRBatchResult>" + elem("BatchStatus", status.value)
    if error is not None:
        head += _error_xml(error)
    parts = [head.encode()]
    size = len(parts[0])
    seen: set[str] = set()
    for entry in certificates:
        if status is not BatchStatus.COMPLETED:
            raise ValueError("only a COMPLETED batch lists DeviceCertificates")
        if isinstance(entry, tuple):
            entry_id = entry[0]
            text = _success_xml(entry_id, entry[1])
        else:
            entry_id = entry.id
            text = _entry_xml(entry)
        if entry_id in seen:
            raise ValueError(f"DeviceCertificate ID {entry_id!r} is repeated")
        seen.add(entry_id)
        if len(seen) > MAX_BATCH_CSRS:
            raise ValueError(f"a batch holds at most {MAX_BATCH_CSRS} CSRs")
        parts.append(text)
        size += len(text)
        if size >= chunk_bytes:
            yield b"".join(parts)
            parts, size = [], 0
    parts.append(b"</CSRBatchResult>")
    yield b"".join(parts)


def render_csr_batch_result(result: CSRBatchResult) -> bytes:
    """``CSRBatchResult`` as one byte string (small results; large ones use :func:`iter_csr_batch_result`)."""
    return b"".join(iter_csr_batch_result(result.status, result.certificates, result.error))


# --------------------------------------------------------------------------------------------
# Parsing


def _build(factory: Callable[..., _T], request_id: str | None, **fields: object) -> _T:
    """Construct a message, turning its own validation failure into FM:AA1."""
    try:
        return factory(**fields)
    except ValueError as error:
        raise format_error(str(error), request_id) from None


def _root_id(limit: int, required: bool = True) -> tuple[list[str | None], Callable[[Node], None]]:
    """An ``on_root`` hook that validates the root's ``ID`` before any child is read."""
    holder: list[str | None] = [None]

    def check(node: Node) -> None:
        check_attributes(node, ("ID",))
        value = node.attrs.get("ID")
        if value is None:
            if required:
                raise format_error(f"<{node.name}> needs an ID attribute")
            return
        if not 1 <= len(value) <= limit:
            raise format_error(f"<{node.name}> ID must be 1-{limit} characters, got {len(value)}")
        holder[0] = value

    return holder, check


def _version(text: str | None, request_id: str | None) -> str:
    if text != VERSION:
        raise format_error(f"Version {shown(text or '')} is not supported; use {VERSION}", request_id)
    return text


def _error(node: Node, request_id: str | None = None) -> DccError:
    check_attributes(node, (), request_id)
    grouped = children(node, [Child("ErrorCode"), Child("ErrorText")], ordered=False, request_id=request_id)
    return _build(DccError, request_id, code=one_text(grouped, "ErrorCode"), text=one_text(grouped, "ErrorText"))


def parse_device_csr_request(
    data: bytes | Iterable[bytes], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> DeviceCertificateSigningRequest:
    """Read an Ad Hoc ``DeviceCertificateSigningRequest``; refuse anything else with FM:AA1.

    A refusal carries ``request_id`` when the ID was valid, for the FORMAT_ERROR response.
    """
    holder, check = _root_id(32)
    root = parse_xml(data, "DeviceCertificateSigningRequest", max_bytes=max_bytes, on_root=check)
    rid = holder[0]
    grouped = children(root, [Child("Version"), Child("CertificateSigningRequest")], request_id=rid)
    for name in ("Version", "CertificateSigningRequest"):
        check_attributes(grouped[name][0], (), rid)
    version = _version(_text(grouped["Version"][0], rid), rid)
    csr = decode_bare_base64(_text(grouped["CertificateSigningRequest"][0], rid), "CertificateSigningRequest", rid)
    return _build(DeviceCertificateSigningRequest, rid, id=rid, csr_der=csr, version=version)


def _certificate(grouped: dict[str, list[Node]]) -> bytes | None:
    nodes = grouped["Certificate"]
    return decode_lenient_base64(nodes[0].text(), "Certificate") if nodes else None


def _text(node: Node, request_id: str | None) -> str:
    try:
        return node.text()
    except DccFormatError as error:
        raise format_error(error.message, request_id) from None


def parse_device_csr_response(
    data: bytes | Iterable[bytes], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> DeviceCertificateSigningResponse:
    """Read a ``DeviceCertificateSigningResponse`` (client side; ``Certificate`` may be wrapped)."""
    holder, check = _root_id(32, required=False)
    root = parse_xml(data, "DeviceCertificateSigningResponse", max_bytes=max_bytes, on_root=check)
    model = [Child("Version"), Child("Build"), Child("TransactionId"), Child("Status"), Child("Certificate", 0)]
    grouped = children(root, [*model, Child("Error", 0)])
    status_text = one_text(grouped, "Status") or ""
    if status_text not in AdHocStatus.__members__:
        raise format_error(f"Status {shown(status_text)} is not an Ad Hoc status")
    der = _certificate(grouped)
    return _build(
        DeviceCertificateSigningResponse,
        holder[0],
        id=holder[0],
        transaction_id=parse_positive_int(one_text(grouped, "TransactionId"), "TransactionId"),
        status=AdHocStatus(status_text),
        certificate_der=der,
        error=_error(grouped["Error"][0]) if grouped["Error"] else None,
        build=one_text(grouped, "Build"),
        version=_version(one_text(grouped, "Version"), holder[0]),
    )


class _BatchReader:
    """Consumes each ``<DeviceCSR>`` as it closes, so a 30 MB batch never becomes a tree."""

    def __init__(self, max_csrs: int) -> None:
        self.max_csrs = max_csrs
        self.batch_id: str | None = None
        self.version: str | None = None
        self.csrs: list[DeviceCSR] = []
        self.seen: set[str] = set()

    def root(self, node: Node) -> None:
        check_attributes(node, ("ID",))
        value = node.attrs.get("ID")
        if value is None:
            raise format_error("<SubmitCSRBatch> needs an ID attribute")
        if not 1 <= len(value) <= 256:
            raise format_error(f"<SubmitCSRBatch> ID must be 1-256 characters, got {len(value)}")
        self.batch_id = value

    def child(self, node: Node) -> bool:
        rid = self.batch_id
        if node.name == "Version":
            if self.version is not None or self.csrs:
                raise format_error("<Version> must come once, before the DeviceCSRs", rid)
            check_attributes(node, (), rid)
            self.version = _version(_text(node, rid), rid)
            return True
        if node.name != "DeviceCSR":
            raise format_error(f"<SubmitCSRBatch> does not take element <{node.name[:40]}>", rid)
        if self.version is None:
            raise format_error("<Version> must come before the DeviceCSRs", rid)
        if len(self.csrs) >= self.max_csrs:
            raise DccFormatError(
                FM_TOO_MANY_CSRS,
                TOO_MANY_CSRS_TEXT,
                rid,
            )
        check_attributes(node, ("ID",), rid)
        csr_id = node.attrs.get("ID")
        if csr_id is None or not 1 <= len(csr_id) <= 100:
            raise format_error(f"DeviceCSR #{len(self.csrs) + 1} needs an ID of 1-100 characters", rid)
        if csr_id in self.seen:
            raise format_error(f"DeviceCSR ID {shown(csr_id)} is repeated", rid)
        self.seen.add(csr_id)
        der = decode_bare_base64(_text(node, rid), f"DeviceCSR {shown(csr_id)}", rid)
        self.csrs.append(DeviceCSR(csr_id, der))
        return True


#: What the plain reading below takes for an ID: printable ASCII but ``"``, ``&`` and ``<`` — text
#: that expat gives back unchanged (no reference to expand, no whitespace to normalise).
_PLAIN_ID_BYTES = rb'[\x20\x21\x23-\x25\x27-\x3b\x3d-\x7e]'
_PLAIN_HEAD = re.compile(rb'(?:<\?xml version="1\.0" encoding="UTF-8"\?>)?[ \t\r\n]*<SubmitCSRBatch ID="('
                         + _PLAIN_ID_BYTES + rb'{1,256})">[ \t\r\n]*<Version>1\.0</Version>')
_PLAIN_CSR_ID = re.compile(_PLAIN_ID_BYTES + rb'{1,100}')
_PLAIN_SPACE = re.compile(rb'[ \t\r\n]*')
_PLAIN_TAIL = re.compile(rb'[ \t\r\n]*</SubmitCSRBatch>[ \t\r\n]*\Z')
_CSR_OPEN, _CSR_MID, _CSR_CLOSE = b'<DeviceCSR ID="', b'">', b"</DeviceCSR>"


def _plain_batch(data: bytes, max_bytes: int, max_csrs: int) -> SubmitCSRBatch | None:
    """The batch when ``data`` is exactly the shape clients send, else None (the general reading decides).

    That shape: the XML declaration (or none), ``<SubmitCSRBatch ID="…">``, ``<Version>1.0</Version>``,
    then one or more ``<DeviceCSR ID="…">`` holding one line of canonical base64, whitespace at
    most between elements, IDs of plain printable ASCII, no two alike, at most ``max_csrs``; every
    byte of the body is accounted for, none skipped. Read by finding the tags and letting
    ``binascii``'s strict mode check the base64 (alphabet and padding, in C), a 50,000-CSR batch
    costs the server a fraction of the general reading's CPU (expat, a node per element, the
    content model per child) — and that reading is work done before signing can start (``smki
    bench service-phases``). Anything else, valid or not, returns None: this never accepts what
    the general reading refuses nor reads a batch differently (``tests/api/test_dcc_plain_batch.py``
    compares them).
    """
    if len(data) > max_bytes:
        return None
    body = data.lstrip(b" \t\r\n")
    head = _PLAIN_HEAD.match(body)
    if head is None:
        return None
    find, decode, plain_id = body.find, binascii.a2b_base64, _PLAIN_CSR_ID.fullmatch
    csrs: list[DeviceCSR] = []
    seen: set[bytes] = set()
    pos = head.end()
    while True:
        if not body.startswith(_CSR_OPEN, pos):
            spaced = _PLAIN_SPACE.match(body, pos).end()  # type: ignore[union-attr]  # * always matches
            if spaced == pos or not body.startswith(_CSR_OPEN, spaced):
                break
            pos = spaced
        id_start = pos + len(_CSR_OPEN)
        id_end = find(_CSR_MID, id_start, id_start + 102)
        text_end = find(_CSR_CLOSE, id_end + 2) if id_end > 0 else -1
        if text_end < 0:
            return None
        csr_id, text = body[id_start:id_end], body[id_end + 2:text_end]
        if plain_id(csr_id) is None or csr_id in seen or not text or len(text) % 4 or text.endswith(b"==="):
            return None
        seen.add(csr_id)
        try:
            der = decode(text, strict_mode=True)
        except ValueError:
            return None
        csrs.append(DeviceCSR(csr_id.decode("ascii"), der))
        pos = text_end + len(_CSR_CLOSE)
    if not csrs or len(csrs) > max_csrs or _PLAIN_TAIL.match(body, pos) is None:
        return None
    return SubmitCSRBatch(head.group(1).decode("ascii"), tuple(csrs), VERSION)


def parse_submit_csr_batch(
    data: bytes | Iterable[bytes],
    *,
    max_bytes: int = DEFAULT_BATCH_MAX_BYTES,
    max_csrs: int = MAX_BATCH_CSRS,
) -> SubmitCSRBatch:
    """Stream-parse ``SubmitCSRBatch``: FM:AA2 as soon as CSR number ``max_csrs + 1`` closes.

    ``data`` may be an iterable of chunks straight from the socket; nothing but the decoded CSRs
    is kept.
    """
    if isinstance(data, bytes):
        plain = _plain_batch(data, max_bytes, max_csrs)
        if plain is not None:
            return plain
    reader = _BatchReader(max_csrs)
    root = parse_xml(data, "SubmitCSRBatch", max_bytes=max_bytes, on_root=reader.root, on_top_child=reader.child)
    rid = reader.batch_id
    check_no_text(root, rid)
    if reader.version is None:
        raise format_error("<SubmitCSRBatch> is missing <Version>", rid)
    if not reader.csrs:
        raise format_error("<SubmitCSRBatch> holds no DeviceCSR", rid)
    return SubmitCSRBatch(rid or "", tuple(reader.csrs), reader.version)


def parse_submit_csr_batch_status(
    data: bytes | Iterable[bytes], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> SubmitCSRBatchStatus:
    """Read ``SubmitCSRBatchStatus`` (client side)."""
    root = parse_xml(data, "SubmitCSRBatchStatus", max_bytes=max_bytes)
    check_attributes(root, ())
    grouped = children(root, [Child("BatchStatus"), Child("BatchId", 0), Child("Error", 0)])
    status_text = one_text(grouped, "BatchStatus") or ""
    if status_text not in SubmitStatus.__members__:
        raise format_error(f"BatchStatus {shown(status_text)} is not a submission status")
    batch_id = one_text(grouped, "BatchId")
    return _build(
        SubmitCSRBatchStatus,
        None,
        status=SubmitStatus(status_text),
        batch_id=None if batch_id is None else parse_positive_int(batch_id, "BatchId"),
        error=_error(grouped["Error"][0]) if grouped["Error"] else None,
    )


class _ResultReader:
    """Reads ``CSRBatchResult`` as a stream: header elements first, then DeviceCertificates."""

    def __init__(self) -> None:
        self.status: BatchStatus | None = None
        self.error: DccError | None = None
        self.entries: list[DeviceCertificate] = []
        self.seen: set[str] = set()

    def child(self, node: Node) -> bool:
        check_attributes(node, ("ID",) if node.name == "DeviceCertificate" else ())
        if node.name == "BatchStatus":
            text = node.text()
            if self.status is not None or text not in BatchStatus.__members__:
                raise format_error(f"BatchStatus {shown(text)} is repeated or not a batch status")
            self.status = BatchStatus(text)
        elif node.name == "Error":
            if self.status is None or self.error is not None or self.entries:
                raise format_error("<Error> must follow <BatchStatus>, once")
            self.error = _error(node)
        elif node.name == "DeviceCertificate":
            if self.status is None or len(self.entries) >= MAX_BATCH_CSRS:
                raise format_error("<DeviceCertificate> before <BatchStatus>, or more than 50,000")
            self.entries.append(_device_certificate(node, self.seen))
        else:
            raise format_error(f"<CSRBatchResult> does not take element <{node.name[:40]}>")
        return True


def _device_certificate(node: Node, seen: set[str]) -> DeviceCertificate:
    entry_id = node.attrs.get("ID") or ""
    if entry_id in seen:
        raise format_error(f"DeviceCertificate ID {shown(entry_id)} is repeated")
    seen.add(entry_id)
    plain = _plain_success(node, entry_id)
    if plain is not None:
        return plain
    grouped = children(node, [Child("Status"), Child("Certificate", 0), Child("Error", 0)])
    status_text = one_text(grouped, "Status") or ""
    if status_text not in DeviceStatus.__members__:
        raise format_error(f"Status {shown(status_text)} is not a DeviceCertificate status")
    der = _certificate(grouped)
    return _build(
        DeviceCertificate,
        None,
        id=entry_id,
        status=DeviceStatus(status_text),
        certificate_der=der,
        error=_error(grouped["Error"][0]) if grouped["Error"] else None,
    )


def _plain_success(node: Node, entry_id: str) -> DeviceCertificate | None:
    """The entry when it is exactly ``<Status>SUCCESS</Status><Certificate>`` one line of base64
    ``</Certificate>`` (what smki and the DCC send), else None and the general reading decides.

    A large result is 50,000 of these; this skips grouping the children against the content
    model, which for this shape always passes, and gives the same entry.
    """
    kids = node.children
    if len(kids) != 2:
        return None
    status, certificate = kids
    if (status.name != "Status" or certificate.name != "Certificate" or status.children or certificate.children
            or "".join(status.parts).strip() != "SUCCESS" or any(part.strip() for part in node.parts)):
        return None
    der = strict_base64("".join(certificate.parts).strip())
    if der is None:
        return None
    return _build(DeviceCertificate, None, id=entry_id, status=DeviceStatus.SUCCESS, certificate_der=der)


def parse_csr_batch_result(
    data: bytes | Iterable[bytes], *, max_bytes: int = DEFAULT_BATCH_MAX_BYTES
) -> CSRBatchResult:
    """Stream-read ``CSRBatchResult`` (client side)."""
    reader = _ResultReader()
    root = parse_xml(data, "CSRBatchResult", max_bytes=max_bytes, on_top_child=reader.child)
    check_attributes(root, ())
    check_no_text(root)
    if reader.status is None:
        raise format_error("<CSRBatchResult> is missing <BatchStatus>")
    return _build(CSRBatchResult, None, status=reader.status, certificates=tuple(reader.entries), error=reader.error)
