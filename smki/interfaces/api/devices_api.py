"""``/api/v1/devices``: the device register over the JSON API, for RA staff credentials (issue 13).

``GET /api/v1/devices/{device_id}`` gives a Device's entry and its dated changes; ``PUT`` records a
new state (RA operator: ``ra.staff-role``). Subscribers' credentials are refused (403
``api.forbidden``): the register is the RA's, as the SMI is the DCC's.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from smki.errors import SmkiError
from smki.interfaces.api.context import ctx_of, identity_of
from smki.interfaces.api.json_api import _ERRORS, PREFIX
from smki.services.device_register import device_dict, get_device, set_device


class DeviceIn(BaseModel):
    device_type: str = Field(description="ESME, GSME, CHF, GPF, PPMID, HCALCS, IHD, CAD, SAPC or OTHER")
    smi_status: str = Field(description="pending, whitelisted, installed-not-commissioned, commissioned, "
                                        "decommissioned, withdrawn, suspended, recovery or recovered")
    import_supplier: str | None = None
    gas_supplier: str | None = None
    network_operator: str | None = None
    effective: date | None = Field(default=None, description="when the state takes effect (default today)")


class DeviceOut(BaseModel):
    device_id: str
    device_type: str
    smi_status: str
    import_supplier: str | None
    gas_supplier: str | None
    network_operator: str | None
    effective: date


class DeviceChangeOut(DeviceOut):
    recorded_by: str


class DeviceDetail(BaseModel):
    device: DeviceOut
    changes: list[DeviceChangeOut]


def _staff(request: Request) -> str:
    identity = identity_of(request)
    if identity.kind != "staff":
        raise SmkiError("api.forbidden", "the device register is read and changed with an RA staff credential")
    return identity.name


def create_devices_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, responses=_ERRORS)

    def detail(request: Request, device_id: str) -> DeviceDetail:
        entry, history = get_device(ctx_of(request).home, device_id)
        changes = [DeviceChangeOut(**device_dict(change.row), recorded_by=change.recorded_by) for change in history]
        return DeviceDetail(device=DeviceOut(**device_dict(entry)), changes=changes)

    @router.get("/devices/{device_id}", response_model=DeviceDetail, tags=["device register"])
    def get(device_id: str, request: Request) -> DeviceDetail:
        """A Device's register entry and every dated change (RA staff)."""
        _staff(request)
        return detail(request, device_id)

    @router.put("/devices/{device_id}", response_model=DeviceDetail, tags=["device register"])
    def put(device_id: str, body: DeviceIn, request: Request) -> DeviceDetail:
        """Record a Device's new state from ``effective`` on (RA operator)."""
        staff = _staff(request)
        values: dict[str, Any] = {**body.model_dump(), "device_id": device_id}
        if body.effective is not None:
            values["effective"] = body.effective.isoformat()
        set_device(ctx_of(request).home, values, staff_id=staff)
        return detail(request, device_id)

    return router
