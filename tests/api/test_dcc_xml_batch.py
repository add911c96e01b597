"""Batched Device CSR messages (spec §3.2): SubmitCSRBatch, SubmitCSRBatchStatus, CSRBatchResult."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from smki.interfaces.dcc.codec import (
    MAX_BATCH_CSRS,
    BatchStatus,
    CSRBatchResult,
    DccError,
    DccFormatError,
    DeviceCertificate,
    DeviceCSR,
    DeviceStatus,
    SubmitCSRBatch,
    SubmitCSRBatchStatus,
    SubmitStatus,
    iter_csr_batch_result,
    parse_csr_batch_result,
    parse_submit_csr_batch,
    parse_submit_csr_batch_status,
    render_csr_batch_result,
    render_submit_csr_batch,
    render_submit_csr_batch_status,
)
from tests.api.test_dcc_xml_support import Libxml2Schemas, certificate_der, device_csr_der, openssl, require_xsd

XSD = "device-csr-batch.xsd"
CSRS = [device_csr_der(bytes([0, 0xDB, 0x12, 0x34, 0x56, 0x78, 0x90, n]), seed=n) for n in range(4)]
B64 = [base64.b64encode(der).decode() for der in CSRS]


@pytest.fixture
def xsd() -> Libxml2Schemas:
    return require_xsd()


def batch_body(count: int, batch_id: str = "BATCH-1") -> bytes:
    """A SubmitCSRBatch of ``count`` real CSRs (four distinct ones, cycled), built in one join."""
    entries = "".join(f'<DeviceCSR ID="ID{n}">{B64[n % 4]}</DeviceCSR>' for n in range(count))
    return f'<SubmitCSRBatch ID="{batch_id}"><Version>1.0</Version>{entries}</SubmitCSRBatch>'.encode()


def test_the_spec_body_parses(xsd: Libxml2Schemas) -> None:
    body = (
        f'<SubmitCSRBatch ID="b-2024-06-01"><Version>1.0</Version><DeviceCSR ID="ID0">{B64[0]}</DeviceCSR>'
        f'<DeviceCSR ID="ID1">{B64[1]}</DeviceCSR></SubmitCSRBatch>'
    ).encode()
    assert xsd.errors_for(XSD, body) == []
    batch = parse_submit_csr_batch(body)
    assert batch == SubmitCSRBatch("b-2024-06-01", (DeviceCSR("ID0", CSRS[0]), DeviceCSR("ID1", CSRS[1])))
    for csr in batch.csrs:
        assert x509.load_der_x509_csr(csr.csr_der).is_signature_valid


def test_round_trip_keeps_order_and_validates(xsd: Libxml2Schemas) -> None:
    batch = SubmitCSRBatch("B" * 256, tuple(DeviceCSR(f"{n:0100d}", CSRS[n % 4]) for n in range(20)))
    body = render_submit_csr_batch(batch)
    assert xsd.errors_for(XSD, body) == []
    assert parse_submit_csr_batch(body) == batch


def test_a_batch_can_arrive_in_small_chunks() -> None:
    body = batch_body(50)
    chunks = [body[i : i + 7] for i in range(0, len(body), 7)]
    assert parse_submit_csr_batch(iter(chunks)) == parse_submit_csr_batch(body)


NO_VERSION = batch_body(2).replace(b"<Version>1.0</Version>", b"")
TWO_VERSIONS = batch_body(2).replace(b"<Version>1.0</Version>", b"<Version>1.0</Version><Version>1.0</Version>")
WRAPPED = batch_body(2).replace(B64[1].encode(), B64[1][:100].encode() + b"\r\n" + B64[1][100:].encode())

REFUSALS = [
    (batch_body(2).replace(b' ID="BATCH-1"', b""), "needs an ID", None),
    (batch_body(2, batch_id="x" * 257), "1-256", None),
    (batch_body(2).replace(b'ID="ID1"', b'ID="ID0"'), "repeated", "BATCH-1"),
    (batch_body(2).replace(b' ID="ID1"', b""), "needs an ID", "BATCH-1"),
    (batch_body(2).replace(b'ID="ID1"', b'ID=""'), "needs an ID", "BATCH-1"),
    (batch_body(2).replace(b'ID="ID1"', b'ID="' + b"y" * 101 + b'"'), "1-100", "BATCH-1"),
    (batch_body(2).replace(b'ID="ID1"', b'ID="ID1" Type="x"'), "does not take attribute", "BATCH-1"),
    (b'<SubmitCSRBatch ID="b"><Version>1.0</Version></SubmitCSRBatch>', "no DeviceCSR", "b"),
    (NO_VERSION, "Version", "BATCH-1"),
    (batch_body(2).replace(b"<Version>1.0</Version>", b"<Version>1.1</Version>"), "Version", "BATCH-1"),
    (
        NO_VERSION.replace(b"</SubmitCSRBatch>", b"<Version>1.0</Version></SubmitCSRBatch>"),
        "Version",
        "BATCH-1",
    ),
    (TWO_VERSIONS, "once", "BATCH-1"),
    (batch_body(2).replace(b"</SubmitCSRBatch>", b"<Comment>x</Comment></SubmitCSRBatch>"), "<Comment>", "BATCH-1"),
    (batch_body(2).replace(b"</SubmitCSRBatch>", b"stray</SubmitCSRBatch>"), "must hold elements", "BATCH-1"),
    (WRAPPED, "bare", "BATCH-1"),
    (batch_body(2).replace(B64[1].encode(), b"<der/>"), "must hold text", "BATCH-1"),
    (batch_body(2)[:-5], "not well-formed", "BATCH-1"),
    (b"<SubmitCSRBatchStatus/>", "root element", None),
]


@pytest.mark.parametrize(("body", "why", "request_id"), REFUSALS)
def test_malformed_batches_are_fm_aa1(body: bytes, why: str, request_id: str | None, xsd: Libxml2Schemas) -> None:
    with pytest.raises(DccFormatError) as caught:
        parse_submit_csr_batch(body)
    assert caught.value.code == "FM:AA1"
    assert why in caught.value.message
    assert caught.value.request_id == request_id
    assert xsd.errors_for(XSD, body) != []  # the published schema says the same


def test_50000_csrs_are_accepted_and_50001_are_fm_aa2() -> None:
    body = batch_body(MAX_BATCH_CSRS)
    start = time.perf_counter()
    batch = parse_submit_csr_batch(body)
    elapsed = time.perf_counter() - start
    assert len(batch.csrs) == MAX_BATCH_CSRS
    assert batch.csrs[-1] == DeviceCSR(f"ID{MAX_BATCH_CSRS - 1}", CSRS[(MAX_BATCH_CSRS - 1) % 4])
    assert elapsed < 10, f"parsing 50,000 CSRs took {elapsed:.1f} s"

    too_many = batch_body(MAX_BATCH_CSRS + 1)
    with pytest.raises(DccFormatError) as caught:
        parse_submit_csr_batch(too_many)
    assert caught.value.code == "FM:AA2"
    assert caught.value.message == "Number of submitted CSRs exceeds maximum volume"
    assert caught.value.request_id == "BATCH-1"


def test_fm_aa2_stops_reading_at_the_50001st_csr() -> None:
    """An over-long batch is refused while it streams in: the rest of the body is never read."""
    pulled = 0

    def body() -> Iterator[bytes]:
        nonlocal pulled
        yield b'<SubmitCSRBatch ID="big"><Version>1.0</Version>'
        for n in range(10 * MAX_BATCH_CSRS):
            pulled += 1
            yield f'<DeviceCSR ID="ID{n}">{B64[0]}</DeviceCSR>'.encode()
        yield b"</SubmitCSRBatch>"

    with pytest.raises(DccFormatError) as caught:
        parse_submit_csr_batch(body(), max_bytes=1 << 40)
    assert caught.value.code == "FM:AA2"
    assert pulled <= MAX_BATCH_CSRS + 2


def test_a_lower_limit_can_be_configured() -> None:
    with pytest.raises(DccFormatError) as caught:
        parse_submit_csr_batch(batch_body(11), max_csrs=10)
    assert caught.value.code == "FM:AA2"
    assert len(parse_submit_csr_batch(batch_body(10), max_csrs=10).csrs) == 10


def test_the_byte_limit_applies() -> None:
    with pytest.raises(DccFormatError) as caught:
        parse_submit_csr_batch(batch_body(100), max_bytes=10_000)
    assert caught.value.code == "FM:AA1"
    assert "larger than 10000 bytes" in caught.value.message


# ---- SubmitCSRBatchStatus


@pytest.mark.parametrize(
    "status",
    [
        SubmitCSRBatchStatus(SubmitStatus.PENDING, batch_id=42),
        SubmitCSRBatchStatus(SubmitStatus.FORMAT_ERROR, error=DccError("FM:AA1", "not well-formed XML")),
        SubmitCSRBatchStatus(
            SubmitStatus.FORMAT_ERROR,
            error=DccError("FM:AA2", "Number of submitted CSRs exceeds maximum volume"),
        ),
        SubmitCSRBatchStatus(SubmitStatus.WORKFLOW_ERROR, error=DccError("WF:AA1", "capacity: 50,000 CSRs in 24 h")),
    ],
)
def test_submission_statuses_round_trip(status: SubmitCSRBatchStatus, xsd: Libxml2Schemas) -> None:
    body = render_submit_csr_batch_status(status)
    assert xsd.errors_for(XSD, body) == []
    assert parse_submit_csr_batch_status(body) == status
    assert f"<SubmitCSRBatchStatus><BatchStatus>{status.status.value}</BatchStatus>".encode() in body


def test_pending_looks_like_the_spec() -> None:
    body = render_submit_csr_batch_status(SubmitCSRBatchStatus(SubmitStatus.PENDING, batch_id=7))
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?><SubmitCSRBatchStatus><BatchStatus>PENDING</BatchStatus>'
        b"<BatchId>7</BatchId></SubmitCSRBatchStatus>"
    )


def test_impossible_submission_statuses_cannot_be_built() -> None:
    with pytest.raises(ValueError):
        SubmitCSRBatchStatus(SubmitStatus.PENDING)
    with pytest.raises(ValueError):
        SubmitCSRBatchStatus(SubmitStatus.PENDING, batch_id=0)
    with pytest.raises(ValueError):
        SubmitCSRBatchStatus(SubmitStatus.FORMAT_ERROR, batch_id=1, error=DccError("FM:AA1", "x"))
    with pytest.raises(ValueError, match="starts with FM"):
        SubmitCSRBatchStatus(SubmitStatus.FORMAT_ERROR, error=DccError("WF:AA1", "x"))


# ---- CSRBatchResult

DEVICE_ERRORS = {
    DeviceStatus.ISSUANCE_ANOMALY: DccError("CA:IA1", "anomaly"),
    DeviceStatus.INELIGIBLE: DccError("IN:SU1", "refused by RA rule(s): subscriber.authorised-for-policy"),
    DeviceStatus.CSR_ERROR: DccError("CR:CC1", "csr.signature-algorithm: wrong CSR OID"),
    DeviceStatus.CA_ERROR: DccError("CA:AA1", "signing failed"),
    DeviceStatus.WORKFLOW_ERROR: DccError("WF:AA1", "withdrawn"),
}


def _entry(n: int, status: DeviceStatus) -> DeviceCertificate:
    if status is DeviceStatus.SUCCESS:
        return DeviceCertificate(f"ID{n}", status, certificate_der=certificate_der())
    return DeviceCertificate(f"ID{n}", status, error=DEVICE_ERRORS[status])


def test_a_completed_batch_lists_every_device_status(xsd: Libxml2Schemas) -> None:
    entries = tuple(_entry(n, status) for n, status in enumerate(DeviceStatus))
    result = CSRBatchResult(BatchStatus.COMPLETED, entries)
    body = render_csr_batch_result(result)
    assert xsd.errors_for(XSD, body) == []
    assert parse_csr_batch_result(body) == result
    assert body.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?><CSRBatchResult><BatchStatus>COMPLETED</BatchStatus>'
        b'<DeviceCertificate ID="ID0"><Status>SUCCESS</Status><Certificate>'
    )
    cert_b64 = body.split(b"<Certificate>")[1].split(b"</Certificate>")[0]
    assert "Certificate:" in openssl("x509", base64.b64decode(cert_b64))
    for status in DeviceStatus:
        assert f"<Status>{status.value}</Status>".encode() in body


@pytest.mark.parametrize("status", list(BatchStatus))
def test_every_batch_status_renders(status: BatchStatus, xsd: Libxml2Schemas) -> None:
    error = {
        BatchStatus.FORMAT_ERROR: DccError("FM:AA1", "not well-formed XML"),
        BatchStatus.WORKFLOW_ERROR: DccError("WF:AA1", "stopped by the operator"),
        BatchStatus.TAMPERED: DccError("WF:TA1", "the stored batch fails its integrity check"),
    }.get(status)
    result = CSRBatchResult(status, error=error)
    body = render_csr_batch_result(result)
    assert xsd.errors_for(XSD, body) == []
    assert parse_csr_batch_result(body) == result
    assert f"<BatchStatus>{status.value}</BatchStatus>".encode() in body


def test_impossible_results_cannot_be_built() -> None:
    entry = _entry(0, DeviceStatus.SUCCESS)
    with pytest.raises(ValueError, match="COMPLETED"):
        CSRBatchResult(BatchStatus.PROCESSING, (entry,))
    with pytest.raises(ValueError, match="unique"):
        CSRBatchResult(BatchStatus.COMPLETED, (entry, entry))
    with pytest.raises(ValueError, match="carries an Error"):
        CSRBatchResult(BatchStatus.FORMAT_ERROR)
    with pytest.raises(ValueError, match="carries no Error"):
        CSRBatchResult(BatchStatus.PENDING, error=DccError("WF:AA1", "x"))
    with pytest.raises(ValueError, match="starts with IN"):
        DeviceCertificate("a", DeviceStatus.INELIGIBLE, error=DccError("CR:CC1", "x"))
    with pytest.raises(ValueError):
        DeviceCertificate("a", DeviceStatus.SUCCESS)
    with pytest.raises(ValueError):
        DeviceCertificate("", DeviceStatus.SUCCESS, certificate_der())


def test_the_result_streams_and_pulls_entries_lazily() -> None:
    pulled = 0

    def entries() -> Iterator[DeviceCertificate]:
        nonlocal pulled
        for n in range(5000):
            pulled += 1
            yield _entry(n, DeviceStatus.SUCCESS if n % 3 else DeviceStatus.CSR_ERROR)

    chunks = iter_csr_batch_result(BatchStatus.COMPLETED, entries(), chunk_bytes=16 * 1024)
    first = next(chunks)
    assert pulled < 100, "the first chunk went out before most entries were read"
    rest = list(chunks)
    assert pulled == 5000
    assert all(len(chunk) < 17 * 1024 for chunk in [first, *rest])
    body = first + b"".join(rest)
    parsed = parse_csr_batch_result(body)
    assert len(parsed.certificates) == 5000
    assert parsed.certificates[4999] == _entry(4999, DeviceStatus.SUCCESS if 4999 % 3 else DeviceStatus.CSR_ERROR)
    assert body == render_csr_batch_result(CSRBatchResult(BatchStatus.COMPLETED, tuple(entries())))


def test_streaming_refuses_bad_entries_before_sending_them() -> None:
    entry = _entry(0, DeviceStatus.SUCCESS)
    with pytest.raises(ValueError, match="repeated"):
        list(iter_csr_batch_result(BatchStatus.COMPLETED, [entry, entry]))
    with pytest.raises(ValueError, match="COMPLETED"):
        list(iter_csr_batch_result(BatchStatus.QUEUED, [entry]))


def test_a_50000_entry_result_streams_and_reads_back() -> None:
    cert = certificate_der()
    entries = (DeviceCertificate(f"ID{n}", DeviceStatus.SUCCESS, cert) for n in range(MAX_BATCH_CSRS))
    chunks = list(iter_csr_batch_result(BatchStatus.COMPLETED, entries))
    assert len(chunks) > 100
    parsed = parse_csr_batch_result(iter(chunks))
    assert len(parsed.certificates) == MAX_BATCH_CSRS
    assert parsed.certificates[-1].certificate_der == cert


@given(st.lists(st.sampled_from(list(DeviceStatus)), max_size=20))
def test_results_round_trip(statuses: list[DeviceStatus]) -> None:
    result = CSRBatchResult(BatchStatus.COMPLETED, tuple(_entry(n, s) for n, s in enumerate(statuses)))
    assert parse_csr_batch_result(render_csr_batch_result(result)) == result



#: IDs that need escaping, XML cannot carry, are too long or empty, or are plain (incl. non-ASCII).
_IDS = st.one_of(st.text(min_size=0, max_size=102), st.sampled_from(
    ["ID1", "a&b", 'q"uote', "<x>", "tab\there", "cr\rlf\n", "é∂😀", "x" * 100, "x" * 101, "", "\x00", "\ud800"]))


def _rendered(entries: list[DeviceCertificate | tuple[str, bytes]]) -> bytes | str:
    try:
        return b"".join(iter_csr_batch_result(BatchStatus.COMPLETED, entries, chunk_bytes=512))
    except ValueError as exc:
        return type(exc).__name__


@given(st.lists(_IDS, max_size=6), st.sampled_from([certificate_der(), b"\x30\x00", b""]))
def test_success_entries_as_id_and_der_render_as_the_dataclass_does(ids: list[str], der: bytes) -> None:
    """``(ID, DER)`` entries (how the server streams a result) give byte for byte what the
    ``DeviceCertificate``s give, and are refused exactly when one of those could not be made."""
    try:
        objects: list[DeviceCertificate | tuple[str, bytes]] = [
            DeviceCertificate(entry_id, DeviceStatus.SUCCESS, certificate_der=der) for entry_id in ids]
    except ValueError:
        objects = []
    plain: list[DeviceCertificate | tuple[str, bytes]] = [(entry_id, der) for entry_id in ids]
    if not objects and ids:
        assert _rendered(plain) == "ValueError"
    else:
        assert _rendered(plain) == _rendered(objects)
        if isinstance(_rendered(plain), bytes):
            parsed = parse_csr_batch_result(_rendered(plain))  # type: ignore[arg-type]
            assert [c.id for c in parsed.certificates] == ids


def _reference_bare_base64(text: str) -> bytes | None:
    """What ``decode_bare_base64`` accepted before its fast path: the regex and b64decode."""
    import binascii
    import re

    if not text or len(text) % 4 or not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", text):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


@given(st.one_of(st.text(alphabet="AQw+/= \n\té-", max_size=24),
                 st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
                 st.binary(min_size=1, max_size=40).map(lambda b: base64.b64encode(b).decode() + "=")))
def test_the_base64_fast_path_accepts_exactly_what_the_reference_does(text: str) -> None:
    from smki.interfaces.dcc.safe_xml import decode_bare_base64, decode_lenient_base64, strict_base64

    expected = _reference_bare_base64(text)
    assert strict_base64(text) == expected
    try:
        decoded: bytes | None = decode_bare_base64(text, "x")
    except DccFormatError:
        decoded = None
    assert decoded == expected
    try:
        lenient: bytes | None = decode_lenient_base64(text, "x")
    except DccFormatError:
        lenient = None
    assert lenient == _reference_bare_base64("".join(text.split()))
