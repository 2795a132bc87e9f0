"""Inventory HTTP routes: parse, call the service, render."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.responses import Response

from api.body import raw_file_body
from api.deps import (
    STAFF,
    AdminOnly,
    Allow,
    AnyRole,
    SessionDep,
    Staff,
    get_db,
    in_transaction,
    new_router,
)
from api.kit import Page
from core.principal import Principal, Role
from inventory import intake, intake_publish, reconcile, service
from inventory.schemas import (
    AttachRequest,
    BenchCreate,
    BenchRead,
    ClientCreate,
    ClientRead,
    DeliveryCreate,
    DeliveryRead,
    DeviceDetail,
    DeviceEventRead,
    DeviceRead,
    HardwareModelCreate,
    HardwareModelRead,
    ImportSummary,
    IntakeFormat,
    Reconciliation,
    ScanRequest,
    ScanResult,
    SiteCreate,
    SiteRead,
    TransitionRequest,
)
from inventory.states import DeviceState, allowed_events

router = new_router()

StaffOrLogistics = Annotated[Principal, Depends(Allow(*STAFF, Role.LOGISTICS))]
Limit = Annotated[int, Query(ge=1, le=500)]


@router.post("/clients", response_model=ClientRead, status_code=201, tags=["inventory"])
def create_client(body: ClientCreate, session: SessionDep, _: AdminOnly) -> ClientRead:
    return ClientRead.model_validate(service.create_client(session, body))


@router.get("/clients", response_model=list[ClientRead], tags=["inventory"])
def list_clients(session: SessionDep, principal: AnyRole) -> list[ClientRead]:
    """Every client for staff; a client-bound token sees its own company only."""
    return [ClientRead.model_validate(c) for c in service.list_clients(session, principal)]


@router.post("/sites", response_model=SiteRead, status_code=201, tags=["inventory"])
def create_site(body: SiteCreate, session: SessionDep, _: AdminOnly) -> SiteRead:
    return SiteRead.model_validate(service.create_site(session, body))


@router.get("/sites", response_model=list[SiteRead], tags=["inventory"])
def list_sites(session: SessionDep, _: Staff) -> list[SiteRead]:
    return [SiteRead.model_validate(s) for s in service.list_sites(session)]


@router.get("/benches", response_model=list[BenchRead], tags=["inventory"])
def list_benches(session: SessionDep, _: Staff) -> list[BenchRead]:
    """Benches and their slot counts; a bench PC needs the id for `masterline scan`."""
    return [BenchRead.model_validate(b) for b in service.list_benches(session)]


@router.post("/benches", response_model=BenchRead, status_code=201, tags=["inventory"])
def create_bench(body: BenchCreate, session: SessionDep, _: AdminOnly) -> BenchRead:
    return BenchRead.model_validate(service.create_bench(session, body))


@router.post(
    "/hardware-models", response_model=HardwareModelRead, status_code=201, tags=["inventory"]
)
def create_hardware_model(
    body: HardwareModelCreate, session: SessionDep, _: AdminOnly
) -> HardwareModelRead:
    return HardwareModelRead.model_validate(service.create_hardware_model(session, body))


@router.get("/hardware-models", response_model=list[HardwareModelRead], tags=["inventory"])
def list_hardware_models(session: SessionDep, _: Staff) -> list[HardwareModelRead]:
    """The hardware catalogue. Staff only: it spans every client's orders."""
    return [HardwareModelRead.model_validate(m) for m in service.list_hardware_models(session)]


@router.post("/deliveries", response_model=DeliveryRead, status_code=201, tags=["deliveries"])
def create_delivery(
    body: DeliveryCreate, session: SessionDep, principal: StaffOrLogistics
) -> DeliveryRead:
    """Announce a delivery. Logistics tokens create deliveries for their own company."""
    return DeliveryRead.model_validate(service.create_delivery(session, body, principal))


@router.get("/deliveries", response_model=Page[DeliveryRead], tags=["deliveries"])
def list_deliveries(
    session: SessionDep,
    principal: AnyRole,
    cursor: int | None = None,
    limit: Limit = 100,
) -> Page[DeliveryRead]:
    rows = service.list_deliveries(session, principal, cursor=cursor, limit=limit)
    items = [DeliveryRead.model_validate(r) for r in rows]
    return Page.of(items, limit)


@router.get("/deliveries/{delivery_id}", response_model=DeliveryRead, tags=["deliveries"])
def get_delivery(delivery_id: int, session: SessionDep, principal: AnyRole) -> DeliveryRead:
    return DeliveryRead.model_validate(service.get_delivery(session, delivery_id, principal))


ship_notice_body = raw_file_body(
    limit=intake.MAX_BYTES,
    what="the ship notice",
    hint="curl --data-binary @file.csv -H 'Content-Type: text/csv'",
)
"""The raw ship notice, capped: a 2 GB upload is refused at 20 MB, not after it has
filled the server's memory."""


_RAW_CSV_BODY = {
    "requestBody": {
        "required": True,
        "description": "The ship notice file itself (not a form), at most 20 MB.",
        "content": {
            media: {"schema": {"type": "string", "format": "binary"}}
            for media in ("text/csv", "application/octet-stream")
        },
    }
}


@router.post(
    "/deliveries/{delivery_id}/import",
    response_model=ImportSummary,
    tags=["deliveries"],
    openapi_extra=_RAW_CSV_BODY,
    responses={
        413: {"description": "Over 20 MB or 100,000 rows."},
        422: {"description": "Rejected: `errors` lists every line, column and message."},
    },
)
def import_ship_notice(
    delivery_id: int,
    request: Request,
    principal: StaffOrLogistics,
    data: Annotated[bytes, Depends(ship_notice_body)],
    format: Annotated[
        IntakeFormat | None, Query(description="Detected from the header when omitted.")
    ] = None,
    dry_run: Annotated[bool, Query(description="Check and count; write nothing.")] = False,
    allow_other_vendor: Annotated[
        bool,
        Query(
            description="Lines that name no vendor (every Autopilot line) take the "
            "delivery's; by default one whose serial is already known under another "
            "vendor is an error (the bench could not tell the two apart). Set this only "
            "when it really is another laptop."
        ),
    ] = False,
) -> ImportSummary:
    """Import a vendor ship notice (generic CSV or Autopilot hardware-hash CSV) as
    EXPECTED devices, all or nothing; re-importing the same file changes nothing.
    See docs/intake.md for the formats."""
    # No request session: the import runs its own short transactions, so that a large
    # file never holds the write lock that scan-in needs (see inventory/intake_publish.py).
    return intake_publish.import_ship_notice(
        get_db(request),
        delivery_id,
        data,
        principal,
        fmt=format,
        dry_run=dry_run,
        allow_other_vendor=allow_other_vendor,
    )


@router.get(
    "/deliveries/{delivery_id}/reconciliation",
    response_model=Reconciliation,
    tags=["deliveries"],
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def get_reconciliation(
    delivery_id: int,
    request: Request,
    session: SessionDep,
    principal: AnyRole,
    format: Annotated[
        str | None, Query(pattern="^(json|csv)$", description="`csv`, or send Accept: text/csv.")
    ] = None,
) -> Reconciliation | Response:
    """Expected, received, missing, wrong-model and (staff only) unexpected devices."""
    rec = reconcile.reconcile(session, delivery_id, principal)
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "")
    )
    if wants_csv:
        filename = f"delivery-{delivery_id}-reconciliation.csv"
        return Response(
            reconcile.to_csv(rec),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return rec


@router.get("/devices", response_model=Page[DeviceRead], tags=["devices"])
def list_devices(
    session: SessionDep,
    principal: AnyRole,
    state: DeviceState | None = None,
    client: Annotated[str | None, Query(max_length=32, description="Client code.")] = None,
    delivery_id: int | None = None,
    serial_prefix: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[int | None, Query(description="`next_cursor` of the previous page.")] = None,
    limit: Limit = 100,
) -> Page[DeviceRead]:
    """Devices ordered by id, filtered; stable under inserts (keyset pagination)."""
    rows = service.list_devices(
        session,
        principal,
        client_code=client,
        state=state,
        delivery_id=delivery_id,
        serial_prefix=serial_prefix,
        cursor=cursor,
        limit=limit,
    )
    items = [DeviceRead.model_validate(r) for r in rows]
    return Page.of(items, limit)


@router.get("/devices/{device_id}", response_model=DeviceDetail, tags=["devices"])
def get_device(device_id: int, session: SessionDep, principal: AnyRole) -> DeviceDetail:
    """A device with its full history and the events allowed from its state."""
    device = service.get_device(session, device_id, principal)
    return DeviceDetail(
        **DeviceRead.model_validate(device).model_dump(),
        allowed_events=allowed_events(DeviceState(device.state)),
        history=[DeviceEventRead.model_validate(e) for e in service.history(session, device)],
    )


@router.post("/devices/{device_id}/events", response_model=DeviceRead, tags=["devices"])
def transition(
    device_id: int, body: TransitionRequest, session: SessionDep, principal: Staff
) -> DeviceRead:
    """Apply a manual lifecycle action (quarantine, release, retire, reject, restage,
    return). An illegal move answers 409 with `current_state` and `allowed_events`."""
    device = service.transition(session, device_id, body.event, principal, reason=body.reason)
    return DeviceRead.model_validate(device)


@router.post("/devices/{device_id}/attach", response_model=DeviceRead, tags=["devices"])
def attach(
    device_id: int, body: AttachRequest, session: SessionDep, principal: Staff
) -> DeviceRead:
    """Resolve an UNEXPECTED laptop by attaching it to a delivery."""
    return DeviceRead.model_validate(
        service.attach(session, device_id, body.delivery_id, principal)
    )


@router.post("/scan", response_model=ScanResult, tags=["scan"])
async def scan(body: ScanRequest, session: SessionDep, principal: Staff) -> ScanResult:
    """Scan a laptop in at a bench. A repeated scan is a no-op (`outcome: already`)."""

    # async, with the work in one thread trip: 50 benches scanning at once is the
    # latency this API is measured by (docs/benchmarks.md).
    def work() -> ScanResult:
        done = service.scan(session, body, principal)
        return ScanResult(
            outcome=done.outcome,
            attention=done.attention,
            message=done.message,
            device=DeviceRead.model_validate(done.device),
        )

    return await in_transaction(session, work)
