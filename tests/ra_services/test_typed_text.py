"""Text people type (names, reasons) is stored only as printable single lines: a NUL, which
PostgreSQL refuses in text, or a lone surrogate, which neither store can encode, was a database
error (a 500 on the Portal) rather than a refusal naming what was wrong."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smki.errors import SmkiError
from smki.services import registry as reg
from smki.services.context import Home
from smki.services.typed_text import typed_text


@given(st.text(max_size=60))
def test_typed_text_is_a_printable_line_or_refused_with_the_callers_code(value: str) -> None:
    try:
        text = typed_text(value, "a name", limit=40, code="x.bad")
    except SmkiError as exc:
        assert exc.code == "x.bad" and "a name" in exc.message
        return
    assert text == " ".join(value.split()) and text.isprintable() and 1 <= len(text) <= 40
    text.encode("utf-8")  # what the store writes


@pytest.mark.parametrize("name", ["Acme\x00 Energy", "Acme\ud800", "Acme\x1b[31m"])
def test_a_party_name_the_store_cannot_hold_is_refused_not_a_database_error(staffed: Home, name: str) -> None:
    with pytest.raises(SmkiError) as caught:
        reg.add_party(staffed, "P9", name, "large-supplier", staff_id="op1")
    assert caught.value.code == "ra.bad-text"
    assert staffed.store.registry.party("P9") is None


@pytest.mark.parametrize("reference", ["ok\x1b[2J\x07", "RA-EV-1\x00", "RA\ud800"])
def test_an_evidence_reference_is_typed_text_too(staffed: Home, reference: str) -> None:
    """An escape sequence in evidence was stored and shown raw by ``ra explain``: it could clear or
    rewrite the approver's screen."""
    from smki.services import applications as apps
    from tests.ra_services.conftest import qualified_party

    qualified_party(staffed)
    app = apps.apply(staffed, "P1", "device", staff_id="op1")
    with pytest.raises(SmkiError) as caught:
        apps.add_evidence(staffed, app.application_id, "installation-need", reference, staff_id="op1")
    assert caught.value.code == "ra.bad-text"
    assert apps.load_application(staffed, app.application_id).evidence == ()
