"""Hostile and unusual bodies sent to the DCC XML services over real TLS (spec §3.1, §3.2).

The codec tests (test_dcc_xml_security.py) show each parser refuses what it must; these show the
*server* answers every such body with the service's own documented response — HTTP 200 and a
schema-valid ``FORMAT_ERROR`` ``FM:AA1`` for the Device CSR services, 401 with an empty
``application/xml`` body for the Repository — never a 500, a JSON body or a traceback; and that a
body written differently but meaning the same (prefixes, a default namespace, a BOM, UTF-16,
comments) is answered exactly as its canonical form is.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.ca.devcsr import make_device_csr
from smki.domain import Usage
from smki.interfaces.dcc import codec as dx
from smki.services.context import Home
from tests.api.conftest import ClientFiles, LiveListeners
from tests.api.test_dcc_xml_support import require_xsd

ADHOC = "/1.0/DeviceCSR"
SUBMIT = "/1.0/PortalCSRBatch/SubmitCSRBatch"
RESULT = "/1.0/PortalCSRBatch/CSRBatchResult"
SEARCH = "/services/certificatesearch"
RETRIEVE = "/services/retrievecertificate"
XML = {"content-type": "application/xml"}
UNKNOWN = bytes.fromhex("00db0000000000fe")  # no certificate: the Ad Hoc answer is UNKNOWN_DEVICE
CSR = make_device_csr(UNKNOWN, Usage.DS)
B64 = base64.b64encode(CSR)
DECL = b'<?xml version="1.0" encoding="UTF-8"?>'

ADHOC_CANON = (DECL + b'<DeviceCertificateSigningRequest ID="R1"><Version>1.0</Version>'
               b"<CertificateSigningRequest>" + B64 + b"</CertificateSigningRequest></DeviceCertificateSigningRequest>")
SUBMIT_CANON = (DECL + b'<SubmitCSRBatch ID="B1"><Version>1.0</Version><DeviceCSR ID="a">' + B64
                + b'</DeviceCSR><DeviceCSR ID="b">' + B64 + b"</DeviceCSR></SubmitCSRBatch>")
SEARCH_CANON = (b"<CertificateSearchRequest><CertificateSubjectName>90-B3-D5-1F-30-01-00-99"
                b"</CertificateSubjectName></CertificateSearchRequest>")
RETRIEVE_CANON = b"<CertificateDataRequest><CertificateSerial>0A</CertificateSerial></CertificateDataRequest>"


def _respell(canon: bytes, root: str) -> dict[str, bytes]:
    """Bodies that mean exactly what ``canon`` means, spelled as other clients might."""
    text = canon.decode()
    body = text.removeprefix(DECL.decode())
    names = sorted({n for n in ("DeviceCertificateSigningRequest", "Version", "CertificateSigningRequest",
                                "SubmitCSRBatch", "DeviceCSR", "CertificateSearchRequest",
                                "CertificateSubjectName", "CertificateDataRequest", "CertificateSerial")
                    if f"<{n}" in body}, key=len, reverse=True)

    def prefixed(prefix: str) -> str:
        out = body
        for n in names:
            out = out.replace(f"<{n}", f"<{prefix}:{n}").replace(f"</{n}>", f"</{prefix}:{n}>")
            out = out.replace(f"<{prefix}:{prefix}:", f"<{prefix}:")  # a longer name already did it
            out = out.replace(f"</{prefix}:{prefix}:", f"</{prefix}:")
        return out.replace(f"<{prefix}:{root}", f'<{prefix}:{root} xmlns:{prefix}="urn:example:dcc"', 1)

    default_ns = body.replace(f"<{root}", f'<{root} xmlns="http://www.example.com/dcc/smki"', 1)
    pretty = body.replace("><", ">\n  <")
    return {
        "no-declaration": body.encode(),
        "prefix-ns1": prefixed("ns1").encode(),
        "prefix-odd": prefixed("zz9").encode(),
        "default-namespace": default_ns.encode(),
        "utf8-bom": b"\xef\xbb\xbf" + canon,
        "utf16-declared": text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"),
        "utf16-le-bom": text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16-le").join(
            [b"\xff\xfe", b""]),
        "single-quotes-and-comments": ("<?xml version='1.0'?><!-- c -->" + pretty.replace('"', "'")
                                       + "<!-- end -->").encode(),
        "xsi-attribute": body.replace(f"<{root}", f'<{root} xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
                                      ' xsi:noNamespaceSchemaLocation="http://127.0.0.1:1/x.xsd"', 1).encode(),
        "crlf-line-ends": pretty.replace("\n", "\r\n").encode(),
        "utf16-no-bom": body.encode("utf-16-le"),  # expat tells UTF-16 from the "<\0" it starts with
    }


def _hostile(canon: bytes, root: str) -> dict[str, bytes]:
    """Bodies each service must refuse with its own format refusal."""
    body = canon.decode().removeprefix(DECL.decode())
    first_child = body.index("><") + 1
    head, tail = body[:first_child], body[first_child:]
    end = f"</{root}>"
    first_name = tail[1:].split(">", 1)[0].split(" ", 1)[0]
    first = tail[: tail.index(f"</{first_name}>") + len(first_name) + 3]
    rest = tail[len(first):]
    return {
        "no-children": (head + end).encode(),
        "first-child-missing": (head + rest).encode(),
        "first-child-twice": (head + first + tail).encode(),
        "first-child-last": (head + rest.removesuffix(end) + first + end).encode()
        if rest != end else (head + first + first + end).encode(),
        "empty": b"",
        "whitespace": b"  \n ",
        "not-xml": b"hello",
        "json": b'{"csr": "MIIB"}',
        "binary": bytes(range(256)),
        "invalid-utf8": body.encode().replace(b">", b">\xff\xfe", 1),
        "truncated": body.encode()[: len(body) // 2],
        "xxe": (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                f"{head}&x;{tail}").encode(),
        "billion-laughs": ("<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">"
                           "<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;\">]>" + head + "&c;" + tail).encode(),
        "external-dtd": f'<!DOCTYPE {root} SYSTEM "http://127.0.0.1:1/x.dtd">{body}'.encode(),
        "parameter-entity": f'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:1/p"> %p;]>{body}'.encode(),
        "undeclared-entity": f"{head}&nbsp;{tail}".encode(),
        "deep-nesting": (head + "<x>" * 5000 + "</x>" * 5000 + tail).encode(),
        "huge-attribute": body.replace(f"<{root}", f'<{root} junk="{"j" * 100_000}"', 1).encode(),
        "huge-text": (head + "<Unknown>" + "t" * 150_000 + "</Unknown>" + tail).encode(),
        "unknown-element": (head + "<Extra>1</Extra>" + tail).encode(),
        "unknown-element-last": body.replace(end, f"<Extra/>{end}").encode(),
        "text-in-root": (head + "stray" + tail).encode(),
        "wrong-root": body.replace(root, "Nope").encode(),
        "trailing-element": (body + "<again/>").encode(),
        "unknown-encoding": b'<?xml version="1.0" encoding="x-nope"?>' + body.encode(),
        "ebcdic-declared": b'<?xml version="1.0" encoding="EBCDIC-US"?>' + body.encode(),
    }


def _check_device_answer(response: httpx.Response, xsd_name: str) -> bytes:
    assert response.status_code == 200, (response.status_code, response.content[:200])
    assert response.headers["content-type"] == "application/xml", response.headers
    assert b"Traceback" not in response.content and not response.content.startswith(b"{")
    assert require_xsd().errors_for(xsd_name, response.content) == [], response.content[:300]
    return response.content


def _adhoc_outcome(response: httpx.Response) -> tuple[str | None, str, str | None]:
    parsed = dx.parse_device_csr_response(_check_device_answer(response, "device-csr-adhoc.xsd"))
    return parsed.id, parsed.status.value, parsed.error.code if parsed.error else None


def _submit_outcome(response: httpx.Response) -> tuple[str, str | None]:
    parsed = dx.parse_submit_csr_batch_status(_check_device_answer(response, "device-csr-batch.xsd"))
    return parsed.status.value, parsed.error.code if parsed.error else None


def _repository(response: httpx.Response) -> int:
    assert response.headers["content-type"] == "application/xml", response.headers
    if response.status_code != 200:
        assert response.content == b""
    return response.status_code


@pytest.fixture
def gateway(live: LiveListeners, aro: ClientFiles) -> Iterator[httpx.Client]:
    yield live.client(aro)


HALF = len(B64) // 2
INSIDE_BASE64 = {  # what may and may not come between the characters of a CSR's base64
    "comment": (b"<!-- split -->", True),
    "processing-instruction": (b"<?pi x?>", True),
    "cdata": (b"<![CDATA[]]>", True),
    "newline": (b"\n", False),
    "space": (b" ", False),
    "char-ref-newline": (b"&#10;", False),
}


def _inside_base64(canon: bytes, accepted: bool) -> dict[str, bytes]:
    return {f"base64-{name}": canon.replace(B64, B64[:HALF] + insert + B64[HALF:])
            for name, (insert, ok) in INSIDE_BASE64.items() if ok is accepted}


ADHOC_SAME = _respell(ADHOC_CANON, "DeviceCertificateSigningRequest") | _inside_base64(ADHOC_CANON, True)
ADHOC_BAD = _hostile(ADHOC_CANON, "DeviceCertificateSigningRequest") | _inside_base64(ADHOC_CANON, False)


def test_adhoc_respellings_answer_as_the_canonical_body(gateway: httpx.Client) -> None:
    canonical = _adhoc_outcome(gateway.post(ADHOC, content=ADHOC_CANON, headers=XML))
    assert canonical == ("R1", "UNKNOWN_DEVICE", "UD:AA1")
    different = {name: _adhoc_outcome(gateway.post(ADHOC, content=body, headers=XML))
                 for name, body in ADHOC_SAME.items()}
    assert {name: got for name, got in different.items() if got != canonical} == {}


def test_adhoc_hostile_bodies_are_format_errors(gateway: httpx.Client) -> None:
    outcomes = {name: _adhoc_outcome(gateway.post(ADHOC, content=body, headers=XML))
                for name, body in ADHOC_BAD.items()}
    wrong = {name: got for name, got in outcomes.items() if got[1:] != ("FORMAT_ERROR", "FM:AA1")}
    assert wrong == {}


SUBMIT_SAME = _respell(SUBMIT_CANON, "SubmitCSRBatch") | _inside_base64(SUBMIT_CANON, True)
SUBMIT_BAD = _hostile(SUBMIT_CANON, "SubmitCSRBatch") | _inside_base64(SUBMIT_CANON, False)


def test_batch_respellings_are_accepted(gateway: httpx.Client) -> None:
    canonical = dx.parse_submit_csr_batch(SUBMIT_CANON)
    for name, body in SUBMIT_SAME.items():
        assert dx.parse_submit_csr_batch(body) == canonical, name
    outcomes = {name: _submit_outcome(gateway.post(SUBMIT, content=body, headers=XML))
                for name, body in SUBMIT_SAME.items()}
    assert {name: got for name, got in outcomes.items() if got != ("PENDING", None)} == {}


def test_batch_hostile_bodies_are_format_errors(gateway: httpx.Client) -> None:
    outcomes = {name: _submit_outcome(gateway.post(SUBMIT, content=body, headers=XML))
                for name, body in SUBMIT_BAD.items()}
    assert {name: got for name, got in outcomes.items() if got != ("FORMAT_ERROR", "FM:AA1")} == {}


@pytest.mark.parametrize(("path", "canon", "root"), [
    (SEARCH, SEARCH_CANON, "CertificateSearchRequest"),
    (RETRIEVE, RETRIEVE_CANON, "CertificateDataRequest"),
])
def test_repository_bodies(gateway: httpx.Client, path: str, canon: bytes, root: str) -> None:
    assert _repository(gateway.post(path, content=canon, headers=XML)) == 402  # valid, nothing matches
    same = {name: _repository(gateway.post(path, content=body, headers=XML))
            for name, body in _respell(DECL + canon, root).items()}
    assert {name: got for name, got in same.items() if got != 402} == {}
    bad = {name: _repository(gateway.post(path, content=body, headers=XML))
           for name, body in _hostile(DECL + canon, root).items()}
    assert {name: got for name, got in bad.items() if got != 401} == {}



def _result_answer(response: httpx.Response) -> dx.CSRBatchResult:
    return dx.parse_csr_batch_result(_check_device_answer(response, "device-csr-batch.xsd"))


def test_a_batch_id_of_thousands_of_digits_is_an_unknown_batch(gateway: httpx.Client) -> None:
    """Python refuses int() of more than 4,300 digits with ValueError: that was a 500 with a JSON body."""
    for digits in ("9" * 20, "9" * 5000, "0" * 4999 + "1"):
        answer = _result_answer(gateway.get(RESULT, params={"BatchId": digits}))
        assert answer.status is dx.BatchStatus.FORMAT_ERROR and answer.error is not None
        assert answer.error.code == "FM:AA3"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch_id=st.one_of(st.text(max_size=60), st.from_regex(r"[0-9]{1,6000}", fullmatch=True)))
def test_any_batch_id_is_answered_in_xml(gateway: httpx.Client, batch_id: str) -> None:
    answer = _result_answer(gateway.get(RESULT, params={"BatchId": batch_id}))
    assert answer.status is dx.BatchStatus.FORMAT_ERROR and answer.error is not None
    assert answer.error.code == "FM:AA3"


@pytest.mark.parametrize("path", [ADHOC, SUBMIT])
def test_a_namespaced_attribute_may_not_stand_in_for_id(gateway: httpx.Client, path: str) -> None:
    """``ID`` and ``a:ID`` on one element: the schema allows neither a second ID nor a qualified
    attribute, and reading both by local name let the later one silently replace the first."""
    canon, root = (ADHOC_CANON, "DeviceCertificateSigningRequest") if path == ADHOC else (SUBMIT_CANON,
                                                                                          "SubmitCSRBatch")
    ns = f'<{root} xmlns:a="urn:a" a:ID="R2" '.encode()
    body = canon.replace(f"<{root} ".encode(), ns, 1)
    if path == ADHOC:
        assert _adhoc_outcome(gateway.post(path, content=body, headers=XML))[1:] == ("FORMAT_ERROR", "FM:AA1")
    else:
        assert _submit_outcome(gateway.post(path, content=body, headers=XML)) == ("FORMAT_ERROR", "FM:AA1")
    inner = SUBMIT_CANON.replace(b'<DeviceCSR ID="a"', b'<DeviceCSR xmlns:a="urn:a" ID="a" a:ID="c"', 1)
    assert _submit_outcome(gateway.post(SUBMIT, content=inner, headers=XML)) == ("FORMAT_ERROR", "FM:AA1")


def test_an_ra_reason_xml_cannot_carry_still_gives_a_valid_rejected_result(
        live: LiveListeners, home: Home, aro: ClientFiles) -> None:
    """The RA's reason comes from a terminal or a form: a control character (an escape sequence
    pasted in, a stray BEL) is text XML 1.0 cannot carry, and building the Error refused it — a 500
    with a JSON body instead of the REJECTED result."""
    from dataclasses import replace

    from smki.domain import Route
    from smki.services.batch_jobs import submit_batch
    from smki.services.batch_lifecycle import reject_batch
    from smki.services.capacity import capacity_settings
    from smki.services.requests import Requester
    from tests.api.conftest import APPROVER, ARO, PARTY

    waiting_home = replace(home, settings=home.settings.configured({"batches": {"auto-approve-max": 0}}))
    job = submit_batch(waiting_home, Requester(PARTY, ARO, Route.GATEWAY), [("c0", CSR)], interface="json",
                       client_ref="r-ctl", capacity=capacity_settings(home))
    reject_batch(home, job.id, "not expected here", staff_id=APPROVER)
    # smki now refuses such a reason when it is typed (ra.reason-required); a database written
    # before that may still hold one, and its result must still be answered.
    from sqlalchemy import text

    with home.store.engine.begin() as conn:
        conn.execute(text("UPDATE batch_jobs SET error_text = :t WHERE id = :j"),
                     {"t": "not \x1b[31mexpected\x07 here", "j": job.id})
    answer = _result_answer(live.client(aro).get(RESULT, params={"BatchId": str(job.id)}))
    assert answer.status is dx.BatchStatus.REJECTED and answer.error is not None
    assert answer.error.code == "WF:RJ1"
    assert answer.error.text.startswith("not ") and "expected" in answer.error.text and "here" in answer.error.text


@pytest.mark.parametrize("char", ["x", "\N{GRINNING FACE}"], ids=["ascii", "astral"])
def test_the_spec_id_lengths_hold_at_the_server(gateway: httpx.Client, char: str) -> None:
    """Spec §3.2: Ad Hoc ID 1-32 characters, batch ID 1-256, DeviceCSR ID 1-100 — characters, as
    the XSD's maxLength counts them, not UTF-8 bytes."""
    def adhoc(rid: str) -> tuple[str | None, str, str | None]:
        body = ADHOC_CANON.replace(b'ID="R1"', f'ID="{rid}"'.encode())
        return _adhoc_outcome(gateway.post(ADHOC, content=body, headers=XML))

    def submit(batch_id: str, csr_id: str) -> tuple[str, str | None]:
        body = SUBMIT_CANON.replace(b'ID="B1"', f'ID="{batch_id}"'.encode()).replace(
            b'ID="a"', f'ID="{csr_id}"'.encode())
        return _submit_outcome(gateway.post(SUBMIT, content=body, headers=XML))

    assert adhoc(char * 32) == (char * 32, "UNKNOWN_DEVICE", "UD:AA1")
    assert adhoc(char * 33) == (None, "FORMAT_ERROR", "FM:AA1")
    assert adhoc("") == (None, "FORMAT_ERROR", "FM:AA1")
    assert submit(char * 256, char * 100) == ("PENDING", None)
    assert submit(char * 257, "a") == ("FORMAT_ERROR", "FM:AA1")
    assert submit("B1", char * 101) == ("FORMAT_ERROR", "FM:AA1")
    assert submit("", "a") == ("FORMAT_ERROR", "FM:AA1")
    assert submit("B1", "") == ("FORMAT_ERROR", "FM:AA1")
