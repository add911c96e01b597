"""Ids that ``str.isdigit()`` accepts but ``int()`` does not (superscripts, circled digits) are refused
like any other bad id, never a 500 (found by exploratory QA: ``CSRBatchResult?BatchId=²`` was a 500).

``'²'.isdigit()`` is true and ``int('²')`` raises ``ValueError``; the checks in front of ``int()`` now
also ask ``isascii()``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from smki.errors import SmkiError
from smki.interfaces.dcc import codec as dx
from smki.services.registry import parse_role
from tests.api.conftest import OPERATOR, ClientFiles, LiveListeners, credential

RESULT = "/1.0/PortalCSRBatch/CSRBatchResult"
#: isdigit() but not int(): superscript two, circled one, superscript nine-nine.
NOT_INT = ["\u00b2", "\u2460", "1\u00b2", "\u2079\u2079"]


@pytest.mark.parametrize("batch_id", NOT_INT)
def test_csr_batch_result_with_a_non_ascii_digit_is_fm_aa3(live: LiveListeners, aro: ClientFiles,
                                                          batch_id: str) -> None:
    response = live.client(aro).get(RESULT, params={"BatchId": batch_id})
    assert response.status_code == 200, response.text[:300]
    result = dx.parse_csr_batch_result(response.content)
    assert result.status is dx.BatchStatus.FORMAT_ERROR and result.error is not None
    assert result.error.code == "FM:AA3"


@pytest.mark.parametrize("ident", NOT_INT)
def test_portal_ids_with_a_non_ascii_digit_are_4xx(live: LiveListeners, aro: ClientFiles, home: object,
                                                   tmp_path: Path, ident: str) -> None:
    from urllib.parse import quote

    staff = credential(home, tmp_path, "staff", OPERATOR)  # type: ignore[arg-type]
    aro_client = live.client(aro, follow_redirects=False)
    staff_client = live.client(staff, follow_redirects=False)
    for client, url in [(aro_client, f"/portal/aro/batches/{quote(ident)}"),
                        (staff_client, f"/portal/staff/audit/{quote(ident)}"),
                        (staff_client, f"/portal/staff/audit?before={quote(ident)}")]:
        response = client.get(url)
        assert 400 <= response.status_code < 500, (url, response.status_code, response.text[:300])


@pytest.mark.parametrize("text", NOT_INT)
def test_a_remote_party_role_in_non_ascii_digits_is_a_coded_refusal(text: str) -> None:
    with pytest.raises(SmkiError, match=re.escape("unknown Remote Party Role")):
        parse_role(text)
