"""parse(render(x)) == x for every DCC XML message, and every rendering validates against its XSD.

Hypothesis draws each message's contents anywhere within the schema's limits: IDs of 1 to the
maximum length in any character XML 1.0 can carry (including whitespace at either end, ``&``,
``<``, quotes, tabs and line ends), every status with an outcome of the right shape, ErrorCodes of
the DCC syntax, and the largest integers the schemas allow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.domain import CertStatus, Usage
from smki.interfaces.dcc import codec as dx
from tests.api.test_dcc_xml_support import Libxml2Schemas, require_xsd

#: Characters XML 1.0 can carry (its ``Char`` production), with the awkward ones made likely.
XML_CHAR = st.one_of(
    st.characters(codec="utf-8", exclude_categories=("Cs",)).filter(
        lambda c: c in "\t\n\r" or (c >= " " and c not in "\ufffe\uffff")),
    st.sampled_from(list("&<>\"' \t\r\n]]>")),
)
MAX_I63 = (1 << 63) - 1


#: Free text (ErrorText, ResponseMessage, AuditReference). Its readers drop surrounding whitespace,
#: as they do for every value (docs/dcc-web-services.md, "values"): a pretty-printed response from a
#: real DCC service means the same text. So only text without it round-trips exactly.
def free_text(limit: int) -> st.SearchStrategy[str]:
    return st.text(XML_CHAR, max_size=limit).map(str.strip)


def ids(limit: int) -> st.SearchStrategy[str]:
    return st.text(XML_CHAR, min_size=1, max_size=limit)


DER = st.binary(min_size=1, max_size=300)
CODE_TAIL = st.from_regex(r"[A-Za-z0-9]{1,7}", fullmatch=True)


def errors(prefix: str | None) -> st.SearchStrategy[dx.DccError]:
    head = st.just(prefix) if prefix else st.from_regex(r"[A-Z]{2}", fullmatch=True)
    code = st.builds(lambda h, t: f"{h}:{t}", head, CODE_TAIL)
    return st.builds(dx.DccError, code, free_text(80))


def _outcome(status: str, prefix_map: dict[str, str]) -> st.SearchStrategy[tuple[bytes | None, dx.DccError | None]]:
    if status == "SUCCESS":
        return DER.map(lambda der: (der, None))
    return errors(prefix_map.get(status)).map(lambda e: (None, e))


@st.composite
def adhoc_responses(draw: st.DrawFn) -> dx.DeviceCertificateSigningResponse:
    status = draw(st.sampled_from(dx.AdHocStatus))
    der, error = draw(_outcome(status, dx.STATUS_PREFIX))
    return dx.DeviceCertificateSigningResponse(
        draw(st.none() | ids(32)), draw(st.integers(1, MAX_I63)), status, der, error,
        build=draw(st.text(XML_CHAR, min_size=1, max_size=40).filter(lambda b: b.strip() == b and b != "")))


@st.composite
def device_certificates(draw: st.DrawFn, cid: str) -> dx.DeviceCertificate:
    status = draw(st.sampled_from(dx.DeviceStatus))
    der, error = draw(_outcome(status, dx.STATUS_PREFIX))
    return dx.DeviceCertificate(cid, status, der, error)


@st.composite
def batch_results(draw: st.DrawFn) -> dx.CSRBatchResult:
    status = draw(st.sampled_from(dx.BatchStatus))
    error = None
    if status in (dx.BatchStatus.FORMAT_ERROR, dx.BatchStatus.WORKFLOW_ERROR) or (
            status in (dx.BatchStatus.REJECTED, dx.BatchStatus.TAMPERED) and draw(st.booleans())):
        error = draw(errors(dx.STATUS_PREFIX.get(status)))
    certificates: tuple[dx.DeviceCertificate, ...] = ()
    if status is dx.BatchStatus.COMPLETED:
        names = draw(st.lists(ids(100), max_size=6, unique=True))
        certificates = tuple(draw(device_certificates(name)) for name in names)
    return dx.CSRBatchResult(status, certificates, error)


@st.composite
def submit_statuses(draw: st.DrawFn) -> dx.SubmitCSRBatchStatus:
    status = draw(st.sampled_from(dx.SubmitStatus))
    if status is dx.SubmitStatus.PENDING:
        return dx.SubmitCSRBatchStatus(status, draw(st.integers(1, MAX_I63)))
    return dx.SubmitCSRBatchStatus(status, error=draw(errors(dx.STATUS_PREFIX[status])))


@st.composite
def records(draw: st.DrawFn) -> dx.CertificateRecord:
    device = draw(st.booleans())
    return dx.CertificateRecord(
        draw(st.integers(1, (1 << 160) - 1)), draw(st.binary(min_size=8, max_size=8)), device,
        draw(st.sampled_from(CertStatus)), draw(st.sampled_from(Usage)),
        None if device else draw(st.none() | st.integers(0, 255)), draw(st.booleans()))


AUDIT = free_text(40)
CODES = st.integers(-(2**31), 2**31 - 1)

#: message kind → (strategy, render, parse, schema)
CASES: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], bytes], Callable[[bytes], Any], str]] = {
    "adhoc-request": (st.builds(dx.DeviceCertificateSigningRequest, ids(32), DER),
                      dx.render_device_csr_request, dx.parse_device_csr_request, "device-csr-adhoc.xsd"),
    "adhoc-response": (adhoc_responses(), dx.render_device_csr_response, dx.parse_device_csr_response,
                       "device-csr-adhoc.xsd"),
    "batch-request": (st.builds(dx.SubmitCSRBatch, ids(256), st.lists(ids(100), min_size=1, max_size=6, unique=True)
                                .flatmap(lambda names: st.tuples(*(st.builds(dx.DeviceCSR, st.just(n), DER)
                                                                   for n in names)))),
                      dx.render_submit_csr_batch, dx.parse_submit_csr_batch, "device-csr-batch.xsd"),
    "batch-status": (submit_statuses(), dx.render_submit_csr_batch_status, dx.parse_submit_csr_batch_status,
                     "device-csr-batch.xsd"),
    "batch-result": (batch_results(), dx.render_csr_batch_result, dx.parse_csr_batch_result,
                     "device-csr-batch.xsd"),
    "search-request": (st.builds(dx.CertificateSearchRequest, st.sampled_from(dx.SearchBy),
                                 st.binary(min_size=8, max_size=8)),
                       dx.render_certificate_search_request, dx.parse_certificate_search_request, "repository.xsd"),
    "data-request": (st.builds(dx.CertificateDataRequest, st.integers(1, (1 << 160) - 1)),
                     dx.render_certificate_data_request, dx.parse_certificate_data_request, "repository.xsd"),
    "search-response": (st.builds(dx.CertificateSearchResponse, AUDIT, st.lists(records(), max_size=5).map(tuple),
                                  CODES, free_text(40)),
                        dx.render_certificate_search_response, dx.parse_certificate_search_response,
                        "repository.xsd"),
    "data-response": (st.builds(dx.CertificateDataResponse, AUDIT, records(), DER, CODES, free_text(40)),
                      dx.render_certificate_data_response, dx.parse_certificate_data_response, "repository.xsd"),
}


@pytest.fixture(scope="module")
def schemas() -> Libxml2Schemas:
    return require_xsd()


@pytest.mark.parametrize("kind", list(CASES))
def test_parse_of_render_is_identity_and_valid(kind: str, schemas: Libxml2Schemas) -> None:
    strategy, render, parse, xsd = CASES[kind]

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(strategy)
    def check(message: Any) -> None:
        body = render(message)
        assert schemas.errors_for(xsd, body) == [], (message, body[:400])
        assert parse(body) == message

    check()
