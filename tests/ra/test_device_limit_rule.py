"""``csr.device-limit``: at most 100 Device Certificates per Device ID (spec §3.2, CR:CL1), decided by
the RA rule; the batch path's fast form and the registered rule always agree."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smki.ra import DEVICE_LIMIT, check_device_limit, device_limit_refusal
from smki.ra.rules import describe
from smki.services.device_limit import DEVICE_LIMIT_CODE

DEVICE = bytes.fromhex("00DB00000000F001")


@given(device=st.binary(min_size=8, max_size=8), issued=st.integers(min_value=0, max_value=10_000))
def test_refused_exactly_from_the_hundredth_and_both_forms_agree(device: bytes, issued: int) -> None:
    fast = device_limit_refusal(device, issued)
    rule = check_device_limit(device, issued)
    assert (fast is None) is (issued < DEVICE_LIMIT) is rule.passed
    if fast is not None:
        assert rule.reason == fast
        assert fast == f"100 Device Certificates have already been issued for Device ID {device.hex().upper()}"


def test_the_boundary_and_the_rule_it_names() -> None:
    assert DEVICE_LIMIT == 100
    assert device_limit_refusal(DEVICE, 99) is None
    assert device_limit_refusal(DEVICE, 100) == \
        "100 Device Certificates have already been issued for Device ID 00DB00000000F001"
    result = check_device_limit(DEVICE, 42)
    assert result.passed and "42 of 100" in result.reason
    assert result.rule_id == DEVICE_LIMIT_CODE == "csr.device-limit"
    assert "Appendix M" in result.reference and result.reference == describe("csr.device-limit").reference
