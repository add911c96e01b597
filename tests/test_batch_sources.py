"""Batch sources: every CSR of a multi-PEM file is found however the file is cut into read blocks,
text between blocks is ignored, and broken files are refused with a code."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smki.errors import SmkiError
from smki.services import batch_sources
from smki.services.batch_sources import read_batch_source


def _pem(n: int, size: int = 300) -> bytes:
    body = base64.encodebytes(bytes([n % 256]) * size)
    return b"-----BEGIN CERTIFICATE REQUEST-----\n" + body + b"-----END CERTIFICATE REQUEST-----\n"


@settings(max_examples=30, deadline=None)
@given(count=st.integers(1, 40), block=st.integers(16, 700), junk=st.sampled_from([b"", b"\n", b"# note\n"]))
def test_every_block_is_found_whatever_the_read_size(tmp_path_factory: pytest.TempPathFactory, count: int,
                                                      block: int, junk: bytes) -> None:
    path = tmp_path_factory.mktemp("src") / "csrs.pem"
    blocks = [_pem(n) for n in range(count)]
    path.write_bytes(junk.join(blocks))
    original = batch_sources._READ_BLOCK
    batch_sources._READ_BLOCK = block
    try:
        items = list(read_batch_source(path))
    finally:
        batch_sources._READ_BLOCK = original
    assert [item.data + b"\n" for item in items] == blocks
    assert [item.index for item in items] == list(range(count))
    assert items[0].item_id == "csrs.pem#1"


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", "batch.empty"),
        (b"just some text\n", "batch.empty"),
        (_pem(1) + b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", "batch.malformed"),
        (b"-----BEGIN CERTIFICATE REQUEST-----\n" + b"A" * 70_000, "batch.malformed"),
    ],
)
def test_broken_files_are_refused_with_a_code(tmp_path: Path, content: bytes, code: str) -> None:
    path = tmp_path / "csrs.pem"
    path.write_bytes(content)
    with pytest.raises(SmkiError) as info:
        list(read_batch_source(path))
    assert info.value.code == code


def test_manifests_and_directories(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "b.csr").write_bytes(_pem(2))
    (tmp_path / "dir" / "a.csr").write_bytes(_pem(1))
    assert [i.item_id for i in read_batch_source(tmp_path / "dir")] == ["a.csr", "b.csr"]
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps([{"id": "x1", "csr": _pem(3).decode()}]))
    assert [(i.item_id, i.data.startswith(b"-----BEGIN")) for i in read_batch_source(manifest)] == [("x1", True)]


#: What a multi-PEM source yields, read the slow way: the whole file at once, one lazy regex.
_ORACLE = re.compile(rb"-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----.*?-----END (?:NEW )?CERTIFICATE REQUEST-----",
                     re.DOTALL)
_PIECES = [b"-----BEGIN CERTIFICATE REQUEST-----\n", b"-----END CERTIFICATE REQUEST-----\n",
           b"-----BEGIN NEW CERTIFICATE REQUEST-----\n", b"-----END NEW CERTIFICATE REQUEST-----\n",
           b"-----BEGIN CERTIFICATE-----\n", b"-----END CERTIFICATE-----\n", b"-----BEGIN ", b"-----END ",
           b"MIIBEzCBugIBADAAMFkw\n", b"\n", b"note\r\n", b"-----"]


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(st.sampled_from(_PIECES), min_size=1, max_size=40), block=st.integers(16, 300))
def test_blocks_match_a_whole_file_regex(tmp_path_factory: pytest.TempPathFactory, pieces: list[bytes],
                                         block: int) -> None:
    """Any mixture of markers, other PEM labels and text gives what one regex over the file gives."""
    content = b"".join(pieces)
    path = tmp_path_factory.mktemp("src") / "mixed.pem"
    path.write_bytes(content)
    original = batch_sources._READ_BLOCK
    batch_sources._READ_BLOCK = block
    try:
        try:
            got: object = [item.data for item in read_batch_source(path)]
        except SmkiError as exc:
            got = exc.code
    finally:
        batch_sources._READ_BLOCK = original
    matches = list(_ORACLE.finditer(content))
    expected: object = [match.group(0) for match in matches]
    if batch_sources._PEM_BEGIN.search(content, matches[-1].end() if matches else 0):
        expected = "batch.malformed"  # a BEGIN left without its END
    elif not matches:
        expected = "batch.empty"
    assert got == expected


_ITEMS = st.lists(st.tuples(st.text(max_size=6), st.binary(max_size=6)), max_size=4)


@given(_ITEMS, _ITEMS)
def test_the_source_digest_tells_apart_any_two_different_lists_of_items(
        first: list[tuple[str, bytes]], second: list[tuple[str, bytes]]) -> None:
    """What a resumed batch's source is checked with: equal exactly when the items (names and bytes,
    in order) are, whatever the boundaries between names and bytes (each is length-prefixed)."""
    def digest(items: list[tuple[str, bytes]]) -> str:
        return batch_sources.source_digest(batch_sources.BatchItem(n, name, data)
                                           for n, (name, data) in enumerate(items))

    assert (digest(first) == digest(second)) == (first == second)
