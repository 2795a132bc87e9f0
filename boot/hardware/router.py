"""Hardware HTTP routes: a device's inventory, a delivery's exports, a site's policy."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import Response

from api.deps import AdminOnly, AnyRole, SessionDep, Staff, new_router
from boot.hardware import export, service
from boot.hardware.schemas import (
    DeadOnArrival,
    DeviceHardware,
    HardwareReportRead,
    PolicyFields,
    PolicyRead,
)

router = new_router()

CsvFormat = Annotated[
    str | None, Query(pattern="^(json|csv)$", description="`csv`, or send Accept: text/csv.")
]
_CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}}
}


def _wants_csv(request: Request, fmt: str | None) -> bool:
    return fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("accept", ""))


def _csv(body: str, filename: str) -> Response:
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/devices/{device_id}/hardware", response_model=DeviceHardware, tags=["devices"])
def device_hardware(device_id: int, session: SessionDep, principal: AnyRole) -> DeviceHardware:
    """What the laptop's PE reported: CPU, RAM, disks with SMART/NVMe health and wear,
    battery (design vs full capacity, cycles), TPM, Secure Boot, firmware, MACs; the
    latest report and older ones (one per boot), each with the site policy's verdict."""
    return service.device_hardware(session, device_id, principal)


@router.get(
    "/deliveries/{delivery_id}/hardware",
    response_model=list[HardwareReportRead | None],
    tags=["deliveries"],
    responses=_CSV,
)
def delivery_hardware(
    delivery_id: int,
    request: Request,
    session: SessionDep,
    principal: AnyRole,
    format: CsvFormat = None,
) -> list[HardwareReportRead | None] | Response:
    """The latest hardware report of every laptop of the delivery (null before its first
    boot), in device order; as CSV with `format=csv`, one line per laptop."""
    rows = service.delivery_rows(session, delivery_id, principal)
    if _wants_csv(request, format):
        return _csv(export.hardware_csv(rows), f"delivery-{delivery_id}-hardware.csv")
    return [HardwareReportRead.model_validate(r) if r else None for _, r in rows]


@router.get(
    "/deliveries/{delivery_id}/dead-on-arrival",
    response_model=DeadOnArrival,
    tags=["deliveries"],
    responses=_CSV,
)
def dead_on_arrival(
    delivery_id: int,
    request: Request,
    session: SessionDep,
    principal: AnyRole,
    format: CsvFormat = None,
) -> DeadOnArrival | Response:
    """Laptops of the delivery that fail the site's health policy (failing disk, worn
    battery, no TPM 2.0 for a Windows image…), with the reasons: the list to send back
    to the vendor. CSV with `format=csv`."""
    doa = service.dead_on_arrival(session, delivery_id, principal)
    if _wants_csv(request, format):
        return _csv(export.doa_csv(doa), f"delivery-{delivery_id}-dead-on-arrival.csv")
    return doa


@router.get("/boot/sites/{site_code}/policy", response_model=PolicyRead, tags=["boot"])
def get_policy(site_code: str, session: SessionDep, _: Staff) -> PolicyRead:
    """The site's health policy (the default when none was set: a failing disk only)."""
    return service.read_policy(session, site_code)


@router.put("/boot/sites/{site_code}/policy", response_model=PolicyRead, tags=["boot"])
def set_policy(
    site_code: str, body: PolicyFields, session: SessionDep, principal: AdminOnly
) -> PolicyRead:
    """Replace the site's health policy; an omitted threshold is not checked. Applies to
    laptops registering from now on, before any byte is written to them."""
    return service.set_policy(session, site_code, body, principal)
