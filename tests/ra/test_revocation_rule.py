"""``revocation.own-certificate``, decided in the RA's rule registry like every other rule."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smki.ra import check_own_certificate
from smki.ra.rules import describe

PARTIES = st.sampled_from(["P1", "P2", "P3"])


@given(st.binary(min_size=8, max_size=8) | st.none(), PARTIES | st.none(), PARTIES)
def test_an_aro_revokes_only_certificates_naming_its_own_partys_entity(
    entity_id: bytes | None, owner: str | None, requester: str
) -> None:
    result = check_own_certificate("0a" * 16, entity_id, owner, requester)
    assert result.rule_id == "revocation.own-certificate"
    assert result.reference == describe("revocation.own-certificate").reference
    assert result.passed is (entity_id is not None and owner == requester)
    assert ("0a" * 16) in result.reason and "\n" not in result.reason
