"""The plain reading of ``SubmitCSRBatch`` (``csr_messages._plain_batch``) against the general one.

The plain reading takes only the shape clients send and answers None for anything else; whatever
body it reads, the general (expat) reading must read the same way, and whatever the general
reading refuses, the plain one must leave to it. Bodies are drawn from the parts a batch is made
of — each part sometimes in the plain shape, sometimes not — and from single-byte changes of a
plain body.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.interfaces.dcc.codec import DccFormatError, DeviceCSR, SubmitCSRBatch, render_submit_csr_batch
from smki.interfaces.dcc.csr_messages import _plain_batch, esc, parse_submit_csr_batch

MAX_BYTES = 1 << 20


def _general(body: bytes, max_csrs: int) -> SubmitCSRBatch | None:
    """The general reading (an iterable of chunks never takes the plain path); None when refused."""
    try:
        return parse_submit_csr_batch(iter([body]), max_bytes=MAX_BYTES, max_csrs=max_csrs)
    except DccFormatError:
        return None


def _agree(body: bytes, max_csrs: int = 50) -> SubmitCSRBatch | None:
    plain = _plain_batch(body, MAX_BYTES, max_csrs)
    general = _general(body, max_csrs)
    if plain is not None:
        assert plain == general, body[:300]
        assert parse_submit_csr_batch(body, max_bytes=MAX_BYTES, max_csrs=max_csrs) == general
    return plain


_space = st.sampled_from(["", "", "", " ", "\n", "\r\n  ", "\t"])
_ids = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12),
    st.text(st.sampled_from("ab&;#<>\"' \t\n\r\u00e9\x7f"), min_size=1, max_size=8),  # what XML treats specially
    st.text(min_size=0, max_size=12),  # anything: control characters, non-ASCII, empty
    st.sampled_from(["a&amp;b", "x&lt;y", "q\"", "tab\tid", "é", "a" * 100, "a" * 101]),
)
_payload = st.one_of(
    st.binary(min_size=1, max_size=40).map(lambda d: base64.b64encode(d).decode()),
    st.binary(min_size=0, max_size=40).map(lambda d: base64.encodebytes(d).decode()),  # wrapped, or empty
    st.binary(min_size=1, max_size=40).map(lambda d: f" {base64.b64encode(d).decode()} "),
    st.sampled_from(["AAAA====", "AA=A", "AB=", "A", "A\u00e9AA", "<!-- c -->AAAA", "&#65;AAA", "AAAA<x/>"]),
)


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    declaration = draw(st.sampled_from(['<?xml version="1.0" encoding="UTF-8"?>', "",
                                        "<?xml version='1.0' encoding='UTF-8'?>", '<?xml version="1.0"?>']))
    def attr(text: str) -> str:  # as drawn (often not XML: a reference, a quote) or escaped
        return text if draw(st.booleans()) else esc(text)

    root = f'<SubmitCSRBatch ID="{attr(draw(_ids))}">'
    if draw(st.integers(0, 9)) == 0:
        root = draw(st.sampled_from(['<SubmitCSRBatch>', '<SubmitCSRBatch ID="b" X="y">', "<SubmitCSRBatch ID='b'>",
                                     '<s:SubmitCSRBatch xmlns:s="urn:x" ID="b">']))
    version = draw(st.sampled_from(["<Version>1.0</Version>"] * 6 + [
        "<Version>2.0</Version>", "<Version> 1.0 </Version>", "", '<Version a="1">1.0</Version>']))
    csrs = draw(st.lists(st.tuples(_ids, _payload, _space), max_size=6))
    if csrs and draw(st.booleans()):
        csrs.append(csrs[0])  # a repeated ID
    parts = [draw(_space), declaration, draw(_space), root, draw(_space), version]
    parts += [f'{space}<DeviceCSR ID="{attr(csr_id)}">{payload}</DeviceCSR>' for csr_id, payload, space in csrs]
    parts += [draw(_space), draw(st.sampled_from(["</SubmitCSRBatch>"] * 8 + ["</SubmitCSRBatch><x/>", "",
                                                                             "</SubmitCSRBatch><!-- c -->"])),
              draw(_space)]
    return "".join(parts).encode(draw(st.sampled_from(["utf-8", "utf-8", "latin-1"])), errors="replace")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_bodies(), st.integers(1, 8))
def test_the_plain_reading_never_differs_from_the_general_one(body: bytes, max_csrs: int) -> None:
    _agree(body, max_csrs)


@pytest.mark.parametrize("written", ["a&amp;b", "&#65;", "x&gt;", "&lt;", "a&#9;b", "tab\tid", "new\nline"])
def test_ids_that_xml_rewrites_are_left_to_the_general_reading(written: str) -> None:
    """A reference or a tab or newline in an ID reads differently from its bytes (expat expands
    references and normalises attribute whitespace): the plain reading must not take them."""
    body = (f'<SubmitCSRBatch ID="{written}"><Version>1.0</Version><DeviceCSR ID="{written}">MAEC'
            f'</DeviceCSR></SubmitCSRBatch>').encode()
    assert _agree(body) is None


def _plain_body(count: int) -> bytes:
    return render_submit_csr_batch(SubmitCSRBatch("batch-1", tuple(
        DeviceCSR(f"ID-{i}", bytes([0x30, i % 256, 1, 2, 3])) for i in range(count))))


@settings(max_examples=300)
@given(st.data())
def test_every_one_byte_change_of_a_plain_body_is_read_alike(data: st.DataObject) -> None:
    body = bytearray(_plain_body(3))
    at = data.draw(st.integers(0, len(body) - 1))
    change = data.draw(st.sampled_from(["set", "insert", "delete"]))
    byte = data.draw(st.integers(0, 255))
    if change == "set":
        body[at] = byte
    elif change == "insert":
        body.insert(at, byte)
    else:
        del body[at]
    _agree(bytes(body))


@given(st.lists(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E).filter(lambda c: c not in '"&<>'),
                        min_size=1, max_size=100), min_size=1, max_size=8, unique=True),
       st.lists(st.binary(min_size=1, max_size=60), min_size=8, max_size=8))
def test_what_clients_send_takes_the_plain_path(ids: list[str], ders: list[bytes]) -> None:
    """Our own renderer's batches (and the DCC's shape), with plain IDs, are read without expat."""
    batch = SubmitCSRBatch("b", tuple(DeviceCSR(i, d) for i, d in zip(ids, ders, strict=False)))
    assert _agree(render_submit_csr_batch(batch)) == batch


def test_the_limits_are_left_to_the_general_reading() -> None:
    """Too many CSRs (FM:AA2) or too many bytes: the plain reading steps aside and the general one refuses."""
    body = _plain_body(5)
    assert _plain_batch(body, MAX_BYTES, 4) is None and _plain_batch(body, len(body) - 1, 50) is None
    with pytest.raises(DccFormatError) as caught:
        parse_submit_csr_batch(body, max_bytes=MAX_BYTES, max_csrs=4)
    assert caught.value.code == "FM:AA2"
    with pytest.raises(DccFormatError):
        parse_submit_csr_batch(body, max_bytes=len(body) - 1)
    assert _plain_batch(body, len(body), 5) == parse_submit_csr_batch(body, max_bytes=len(body), max_csrs=5)
