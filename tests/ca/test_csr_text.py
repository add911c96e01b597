"""The text forms a CSR may arrive in (spec §3.2), and everything else refused as csr.malformed."""

from __future__ import annotations

import base64
import re
import subprocess
import textwrap

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from smki.ca import csr as csr_module
from smki.ca.csr import MAX_CSR_BYTES, MAX_CSR_TEXT_BYTES, check_device_csr, decode_csr_text
from smki.ca.devcsr import make_device_csr
from smki.domain import Usage
from smki.errors import SmkiError

DEVICE = bytes.fromhex("00db123456789001")


def _der_with_two_padding_characters() -> bytes:
    # The signature's length varies by a byte or two; pick a CSR whose base64 ends in "==" so the
    # padding cases below are about padding, whatever the key.
    while True:
        der = make_device_csr(DEVICE, Usage.KA)
        if len(der) % 3 == 1:
            return der


DER = _der_with_two_padding_characters()
B64 = base64.b64encode(DER)


def wrapped(width: int, newline: bytes = b"\n") -> bytes:
    return newline.join(B64[i : i + width] for i in range(0, len(B64), width))


def pem(label: bytes, body: bytes, newline: bytes = b"\n") -> bytes:
    return newline.join([b"-----BEGIN " + label + b"-----", body, b"-----END " + label + b"-----"]) + newline


ACCEPTED = {
    "raw DER": DER,
    "cryptography PEM": x509.load_der_x509_csr(DER).public_bytes(serialization.Encoding.PEM),
    "openssl PEM": subprocess.run(
        ["openssl", "req", "-inform", "DER", "-outform", "PEM"], input=DER, capture_output=True, check=True
    ).stdout,
    "PEM, NEW CERTIFICATE REQUEST": pem(b"NEW CERTIFICATE REQUEST", wrapped(64)),
    "PEM, CRLF": pem(b"CERTIFICATE REQUEST", wrapped(64, b"\r\n"), b"\r\n"),
    "PEM, 76 columns": pem(b"CERTIFICATE REQUEST", wrapped(76)),
    "PEM, body on one line": pem(b"CERTIFICATE REQUEST", B64),
    "headerless, 64 columns": wrapped(64) + b"\n",
    "headerless, 76 columns": wrapped(76),
    "headerless, 64 columns CRLF": wrapped(64, b"\r\n") + b"\r\n",
    "headerless, 76 columns CRLF": wrapped(76, b"\r\n"),
    "one line (web service form)": B64,
    "one line, surrounding whitespace": b"  \r\n\t" + B64 + b"\r\n\n ",
    "PEM, surrounding whitespace": b"\n\n" + pem(b"CERTIFICATE REQUEST", wrapped(64)) + b"  \n",
}


@pytest.mark.parametrize("form", list(ACCEPTED))
def test_accepted_form_decodes_to_the_der(form: str) -> None:
    assert decode_csr_text(ACCEPTED[form]) == DER


def test_accepted_forms_check_as_the_same_device() -> None:
    for data in ACCEPTED.values():
        request = check_device_csr(decode_csr_text(data))
        assert (request.device_id, request.usage) == (DEVICE, Usage.KA)


def test_accepts_bytearray_and_memoryview() -> None:
    assert decode_csr_text(bytearray(B64)) == DER  # type: ignore[arg-type]
    assert decode_csr_text(memoryview(B64)) == DER  # type: ignore[arg-type]


def test_der_is_taken_verbatim_even_when_it_ends_like_whitespace() -> None:
    # A signature's last octet can be 0x0a or 0x20: stripping would corrupt DER.
    assert decode_csr_text(DER[:-1] + b"\n") == DER[:-1] + b"\n"


REFUSED = {
    "empty": b"",
    "whitespace only": b" \r\n\t ",
    "certificate PEM": pem(b"CERTIFICATE", wrapped(64)),
    "PEM without END": b"-----BEGIN CERTIFICATE REQUEST-----\n" + wrapped(64),
    "PEM with mismatched END": b"-----BEGIN CERTIFICATE REQUEST-----\n"
    + wrapped(64)
    + b"\n-----END NEW CERTIFICATE REQUEST-----",
    "PEM with a header": pem(b"CERTIFICATE REQUEST", b"Proc-Type: 4,ENCRYPTED\n\n" + wrapped(64)),
    "PEM with text before": b"my csr\n" + pem(b"CERTIFICATE REQUEST", wrapped(64)),
    "PEM with text after": pem(b"CERTIFICATE REQUEST", wrapped(64)) + b"thanks\n",
    "PEM with empty body": b"-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n",
    "72 columns": wrapped(72),
    "ragged lines": wrapped(64).replace(b"\n", b"", 1),
    "blank line inside": wrapped(64).replace(b"\n", b"\n\n", 1),
    "trailing space on a line": wrapped(64).replace(b"\n", b" \n", 1),
    "space inside base64": B64[:10] + b" " + B64[10:],
    "URL-safe alphabet": base64.urlsafe_b64encode(DER).replace(b"+", b"-") + b"-_",
    "missing padding": B64.rstrip(b"="),
    "data after padding": B64 + b"AAAA",
    "one padding character short": B64[:-1],
    "extra padding": B64 + b"=",
    "base64 of text": base64.b64encode(b"hello, this is not a CSR"),
    "hex": DER.hex().encode(),
    "non-ASCII": "ü".encode() + B64,
    "NUL bytes": b"\x00" * 16,
    "str instead of bytes": B64.decode(),
}


@pytest.mark.parametrize("form", list(REFUSED))
def test_other_forms_are_malformed(form: str) -> None:
    with pytest.raises(SmkiError) as raised:
        decode_csr_text(REFUSED[form])  # type: ignore[arg-type]  # one case passes a str on purpose
    assert raised.value.code == "csr.malformed", raised.value.message


def test_oversized_text_is_refused_before_decoding() -> None:
    with pytest.raises(SmkiError) as raised:
        decode_csr_text(b"A" * (MAX_CSR_TEXT_BYTES + 1))
    assert raised.value.code == "csr.too-large"


def test_oversized_der_is_refused() -> None:
    with pytest.raises(SmkiError) as raised:
        decode_csr_text(b"\x30\x82\x20\x01" + bytes(MAX_CSR_BYTES))
    assert raised.value.code == "csr.too-large"


def test_base64_decoding_to_oversized_der_is_refused() -> None:
    big = b"\x30\x82\x22\x00" + bytes(MAX_CSR_BYTES + 0x100)
    text = base64.b64encode(big)
    assert len(text) <= MAX_CSR_TEXT_BYTES
    with pytest.raises(SmkiError) as raised:
        decode_csr_text(text)
    assert raised.value.code == "csr.too-large"


def test_largest_der_fits_in_the_text_limit_in_every_form() -> None:
    largest = b"\x30\x82\x1f\xfc" + bytes(MAX_CSR_BYTES - 4)
    body = base64.b64encode(largest)
    crlf64 = b"\r\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    text = pem(b"NEW CERTIFICATE REQUEST", crlf64, b"\r\n")
    assert len(text) <= MAX_CSR_TEXT_BYTES
    assert decode_csr_text(text) == largest


def test_textwrap_of_pem_body_matches_what_openssl_writes() -> None:
    # Guard for the helpers above: our 64-column wrapping is OpenSSL's.
    openssl = ACCEPTED["openssl PEM"].decode()
    assert (
        openssl == pem(b"CERTIFICATE REQUEST", "\n".join(textwrap.wrap(B64.decode(), 64)).encode()).decode()
    )


# ---------------------------------------------------------------------------------------------
# The one-match path for OpenSSL's PEM never changes a result.



def _decoded(data: bytes) -> object:
    try:
        return decode_csr_text(data)
    except SmkiError as exc:
        return exc.code


def _line_by_line(data: bytes) -> object:
    original = csr_module._PLAIN_PEM, csr_module._openssl_pem_der
    csr_module._PLAIN_PEM = re.compile(rb"(?!)")  # never matches
    csr_module._openssl_pem_der = lambda data: None  # type: ignore[assignment]
    try:
        return _decoded(data)
    finally:
        csr_module._PLAIN_PEM, csr_module._openssl_pem_der = original  # type: ignore[assignment]


def _pattern_only(data: bytes) -> object:
    """What ``decode_csr_text`` answers without the whole-buffer check of OpenSSL's PEM."""
    original = csr_module._openssl_pem_der
    csr_module._openssl_pem_der = lambda data: None  # type: ignore[assignment]
    try:
        return _decoded(data)
    finally:
        csr_module._openssl_pem_der = original  # type: ignore[assignment]


@st.composite
def pem_texts(draw: st.DrawFn) -> bytes:
    body = base64.b64encode(draw(st.sampled_from([DER, DER[:-1], DER + b"\x00", b"\x31" + DER[1:]])))
    width = draw(st.sampled_from([64, 64, 64, 76, 63, 65, 1000]))
    lines = [body[i : i + width] for i in range(0, len(body), width)]
    if draw(st.integers(0, 4)) == 0 and lines:  # a ragged or empty line, or a character changed
        at = draw(st.integers(0, len(lines) - 1))
        lines[at] = draw(st.sampled_from([lines[at][:-1], b"", lines[at] + b"A", lines[at][:5] + b"*" + lines[at][6:],
                                          lines[at][:5] + b"=" + lines[at][6:]]))
    label = draw(st.sampled_from([b"CERTIFICATE REQUEST"] * 4 + [b"NEW CERTIFICATE REQUEST", b"CERTIFICATE"]))
    newline = draw(st.sampled_from([b"\n"] * 4 + [b"\r\n"]))
    text = newline.join([b"-----BEGIN " + label + b"-----", *lines, b"-----END " + label + b"-----"])
    before = draw(st.sampled_from([b"", b"", b"\n", b"  \t", b"x"]))
    after = draw(st.sampled_from([b"", b"\n", b"\n\n", b" \r\n", b"x\n"]))
    return before + text + after


@settings(max_examples=400, deadline=None)
@given(pem_texts())
def test_plain_pem_match_agrees_with_line_by_line(text: bytes) -> None:
    assert _decoded(text) == _line_by_line(text)


def assert_the_pem_check_agrees_with_the_pattern(text: bytes) -> None:
    """``_openssl_pem_der`` answers (DER or a refusal code) only texts ``_PLAIN_PEM`` matches, and as
    that path does; ``decode_csr_text`` answers as the pattern-only path whatever the fast check said."""
    try:
        fast: object = csr_module._openssl_pem_der(text)
    except SmkiError as exc:
        fast = exc.code
    if fast is not None:
        assert csr_module._PLAIN_PEM.fullmatch(text) is not None
        assert fast == _pattern_only(text)
    assert _decoded(text) == _pattern_only(text)


@settings(max_examples=400, deadline=None)
@given(pem_texts())
def test_openssl_pem_check_agrees_with_the_pattern(text: bytes) -> None:
    """The whole-buffer check answers only texts the pattern matches, and as that path does."""
    assert_the_pem_check_agrees_with_the_pattern(text)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_openssl_pem_check_of_mutated_text_agrees_with_the_pattern(data: st.DataObject) -> None:
    """Any one character of OpenSSL's PEM changed, dropped or added: the same answer either way."""
    text = pem(b"CERTIFICATE REQUEST", wrapped(64))
    assert csr_module._openssl_pem_der(text) == DER
    position = data.draw(st.integers(0, len(text) - 1))
    byte = bytes([data.draw(st.sampled_from([*b"\n\r =-+/Aa0", data.draw(st.integers(0, 255))]))])
    action = data.draw(st.sampled_from(["replace", "delete", "insert"]))
    text = {"replace": text[:position] + byte + text[position + 1:], "delete": text[:position] + text[position + 1:],
            "insert": text[:position] + byte + text[position:]}[action]
    assert_the_pem_check_agrees_with_the_pattern(text)
    assert _decoded(text) == _line_by_line(text)


def test_what_openssl_and_cryptography_write_takes_the_whole_buffer_check() -> None:
    text = x509.load_der_x509_csr(DER).public_bytes(serialization.Encoding.PEM)
    assert csr_module._openssl_pem_der(text) == DER == decode_csr_text(text)


def test_openssl_pem_takes_the_one_match_path() -> None:
    text = pem(b"CERTIFICATE REQUEST", wrapped(64))
    assert csr_module._PLAIN_PEM.fullmatch(text) is not None
    assert decode_csr_text(text) == DER
