"""docs/csr-errors.md lists exactly the codes smki.ca.csr raises, with the limits it enforces."""

from __future__ import annotations

import re
from pathlib import Path

from smki.ca.csr import ERROR_CODES, MAX_CSR_BYTES, MAX_CSR_TEXT_BYTES

DOC = Path(__file__).resolve().parents[2] / "docs" / "csr-errors.md"


def test_doc_table_lists_exactly_the_error_codes() -> None:
    rows = re.findall(r"^\| `(csr\.[a-z0-9-]+)` \|", DOC.read_text(), flags=re.MULTILINE)
    assert sorted(rows) == sorted(ERROR_CODES)
    assert len(rows) == len(set(rows))


def test_doc_states_the_enforced_limits() -> None:
    text = DOC.read_text()
    assert f"{MAX_CSR_BYTES:,}" in text
    assert f"({MAX_CSR_TEXT_BYTES})" in text


def test_every_code_has_a_one_line_description() -> None:
    for code, meaning in ERROR_CODES.items():
        assert re.fullmatch(r"csr\.[a-z0-9]+(-[a-z0-9]+)*", code)
        assert meaning and "\n" not in meaning and len(meaning) <= 110
