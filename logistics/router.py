"""Logistics HTTP routes: dispatch, status, the change feed, labels, Autopilot export,
webhooks. Parse, call the service, render.

Roles: logistics and admin dispatch, see teleworkers, manage webhooks and export;
technicians print asset labels and see dispatch state without personal data; a DSI
reads the status of its own company. Client-bound callers get 404 for other companies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request
from fastapi.responses import Response

from api.body import raw_file_body
from api.deps import EVERYONE, STAFF, Allow, SessionDep, get_db, new_router
from core import csvfile
from core.principal import Principal, Role
from inventory import repository as inventory_repo
from inventory import service as inventory
from inventory.states import Event
from logistics import autopilot, feed, imports, labels, service
from logistics import status as device_status
from logistics.schemas import (
    CarrierImportSummary,
    ChangePage,
    ChangeRead,
    DeviceStatus,
    DispatchImportSummary,
    DispatchRequest,
    ReasonRequest,
    ReturnRequest,
    StateCounts,
    StatusPage,
    TeleworkerRead,
    TeleworkerSearch,
)

router = new_router()

LogisticsOrAdmin = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.LOGISTICS))]
LabelPrinters = Annotated[Principal, Depends(Allow(*STAFF, Role.LOGISTICS))]
Exporters = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.LOGISTICS, Role.DSI))]
Everyone = Annotated[Principal, Depends(Allow(*EVERYONE))]
Limit = Annotated[int, Query(ge=1, le=1000)]
Format = Annotated[Literal["json", "csv"], Query(description="`csv` for a spreadsheet.")]
DryRun = Annotated[bool, Query(description="Check and report every error; write nothing.")]

_RAW_CSV_BODY = {
    "requestBody": {
        "required": True,
        "description": "The CSV file itself as the raw body (not a form), at most 5 MB.",
        "content": {
            media: {"schema": {"type": "string", "format": "binary"}}
            for media in ("text/csv", "application/octet-stream")
        },
    }
}


csv_body = raw_file_body(
    limit=imports.MAX_BYTES, what="the CSV file", hint="curl --data-binary @file.csv"
)


RawCsv = Annotated[bytes, Depends(csv_body)]


# CSV export of any list.
def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """Nested objects become dotted columns (``shipment.carrier``)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list):
        out[prefix] = " ".join(str(v) for v in value)
    else:
        out[prefix] = "" if value is None else value


def csv_response(
    rows: Iterable[dict[str, Any]], *, filename: str, next_cursor: int | None = None
) -> Response:
    flat: list[dict[str, Any]] = []
    for row in rows:
        out: dict[str, Any] = {}
        _flat("", row, out)
        flat.append(out)
    columns: list[str] = []
    for row in flat:
        columns += [k for k in row if k not in columns]
    # The product's one escaping writer: names, addresses and models are free text.
    text = csvfile.write_csv(columns, ([row.get(c, "") for c in columns] for row in flat))
    headers = {"content-disposition": f'attachment; filename="{filename}"'}
    if next_cursor is not None:
        headers["x-next-cursor"] = str(next_cursor)
    return Response(text, media_type="text/csv; charset=utf-8", headers=headers)


def _dumps(items: Sequence[Any]) -> list[dict[str, Any]]:
    return [i.model_dump(mode="json") for i in items]


# Dispatch.
@router.post("/dispatch", response_model=DeviceStatus, tags=["logistics"])
def dispatch(
    body: DispatchRequest, session: SessionDep, principal: LogisticsOrAdmin
) -> DeviceStatus:
    """Ship a READY laptop to a teleworker of its own client (READY → DISPATCHED).

    Not READY: 409 with `current_state` and `allowed_events`. Another company's
    teleworker: 404 (logistics) or 422 (admin)."""
    shipment = service.dispatch(session, body, principal)
    device = inventory.get_device(session, shipment.device_id, principal)
    return device_status.render_status(session, [device], principal)[0]


@router.post(
    "/dispatch/import",
    response_model=DispatchImportSummary,
    tags=["logistics"],
    openapi_extra=_RAW_CSV_BODY,
    responses={422: {"description": "Rejected: `errors` lists every line and column."}},
)
def dispatch_import(
    session: SessionDep, principal: LogisticsOrAdmin, data: RawCsv, dry_run: DryRun = False
) -> DispatchImportSummary:
    """Bulk assignment: `serial,name,email,phone,address,carrier,tracking` (+ optional
    `vendor`). All or nothing; every error with its line and column."""
    return imports.import_dispatch(session, data, principal, dry_run=dry_run)


@router.post(
    "/logistics/carrier-status",
    response_model=CarrierImportSummary,
    tags=["logistics"],
    openapi_extra=_RAW_CSV_BODY,
)
def carrier_status(
    session: SessionDep, principal: LogisticsOrAdmin, data: RawCsv, dry_run: DryRun = False
) -> CarrierImportSummary:
    """A carrier's status file: `tracking,status[,date][,reason]`, status `delivered` or
    `returned`. All or nothing."""
    return imports.import_carrier_status(session, data, principal, dry_run=dry_run)


def _one_status(session: SessionDep, device_id: int, principal: Principal) -> DeviceStatus:
    device = inventory.get_device(session, device_id, principal)
    return device_status.render_status(session, [device], principal)[0]


@router.post(
    "/logistics/devices/{device_id}/deliver", response_model=DeviceStatus, tags=["logistics"]
)
def deliver(device_id: int, session: SessionDep, principal: LogisticsOrAdmin) -> DeviceStatus:
    """DISPATCHED → DELIVERED."""
    service.deliver(session, device_id, principal)
    return _one_status(session, device_id, principal)


@router.post(
    "/logistics/devices/{device_id}/return", response_model=DeviceStatus, tags=["logistics"]
)
def return_device(
    device_id: int, body: ReturnRequest, session: SessionDep, principal: LogisticsOrAdmin
) -> DeviceStatus:
    """DISPATCHED or DELIVERED → RETURNED, with a reason."""
    service.return_device(session, device_id, principal, reason=body.reason)
    return _one_status(session, device_id, principal)


@router.post(
    "/logistics/devices/{device_id}/restage", response_model=DeviceStatus, tags=["logistics"]
)
def restage(
    device_id: int, body: ReasonRequest, session: SessionDep, principal: LogisticsOrAdmin
) -> DeviceStatus:
    """A returned laptop goes back to staging (RETURNED → RECEIVED)."""
    service.after_return(session, device_id, Event.RESTAGE, principal, reason=body.reason)
    return _one_status(session, device_id, principal)


@router.post(
    "/logistics/devices/{device_id}/retire", response_model=DeviceStatus, tags=["logistics"]
)
def retire(
    device_id: int, body: ReasonRequest, session: SessionDep, principal: LogisticsOrAdmin
) -> DeviceStatus:
    """A returned laptop leaves the pipeline for good (RETURNED → RETIRED, reason needed)."""
    service.after_return(session, device_id, Event.RETIRE, principal, reason=body.reason)
    return _one_status(session, device_id, principal)


# Status, counts, the feed.
@router.get("/logistics/status", response_model=StatusPage, tags=["logistics"])
def status(
    session: SessionDep,
    principal: Everyone,
    serial: Annotated[str | None, Query(max_length=64)] = None,
    asset_tag: Annotated[str | None, Query(max_length=64)] = None,
    order_reference: Annotated[str | None, Query(max_length=64)] = None,
    delivery_id: int | None = None,
    teleworker_id: Annotated[
        int | None, Query(description="Logistics and admin only (see /teleworkers/search).")
    ] = None,
    cursor: Annotated[int | None, Query(description="`next_cursor` of the last page.")] = None,
    limit: Limit = 100,
    format: Format = "json",
) -> StatusPage | Response:
    """Where laptops are, by serial, asset tag, order reference, delivery or teleworker.
    Keyset pagination by device id: stable while rows are inserted. `teleworker` is
    null unless the caller is logistics or admin."""
    query = device_status.StatusQuery(
        serial, asset_tag, order_reference, delivery_id, teleworker_id
    )
    items = device_status.status(session, query, principal, cursor=cursor, limit=limit)
    page = StatusPage.of(items, limit, key=lambda i: i.device_id)
    if format == "csv":
        return csv_response(_dumps(items), filename="status.csv", next_cursor=page.next_cursor)
    return page


@router.get(
    "/logistics/deliveries/{delivery_id}/counts", response_model=StateCounts, tags=["logistics"]
)
def delivery_counts(
    delivery_id: int, session: SessionDep, principal: Everyone, format: Format = "json"
) -> StateCounts | Response:
    """How many of a delivery's laptops are in each state."""
    counts = device_status.counts_for_delivery(session, delivery_id, principal)
    if format == "csv":
        return csv_response(_dumps([counts]), filename=f"delivery-{delivery_id}-counts.csv")
    return counts


@router.get("/logistics/counts", response_model=list[StateCounts], tags=["logistics"])
def client_counts(
    session: SessionDep, principal: Everyone, format: Format = "json"
) -> list[StateCounts] | Response:
    """Laptops per state for each client the caller can see."""
    counts = device_status.counts_per_client(session, principal)
    if format == "csv":
        return csv_response(_dumps(counts), filename="client-counts.csv")
    return counts


@router.get("/logistics/changes", response_model=ChangePage, tags=["logistics"])
def changes(
    request: Request,
    session: SessionDep,
    principal: Everyone,
    cursor: Annotated[int, Query(ge=0, description="`next_cursor` of the last call.")] = 0,
    limit: Limit = 100,
    format: Format = "json",
) -> ChangePage | Response:
    """Everything that changed since `cursor`, oldest first: poll with `next_cursor`.

    Ordered by commit (not by insert id), so a cursor never skips an event that was
    still being committed when the previous page was read (docs/logistics.md)."""
    feed.sequence_all(get_db(request))
    rows = feed.changes_since(session, cursor=cursor, limit=limit, client_id=principal.client_scope)
    items = [ChangeRead(type=c.event_type, **{k: v for k, v in c.__dict__.items()}) for c in rows]
    next_cursor = items[-1].seq if items else cursor
    if format == "csv":
        return csv_response(_dumps(items), filename="changes.csv", next_cursor=next_cursor)
    return ChangePage(items=items, next_cursor=next_cursor)


# Teleworkers (personal data: logistics and admin only).
@router.post(
    "/logistics/teleworkers/search", response_model=list[TeleworkerRead], tags=["logistics"]
)
def search_teleworkers(
    body: TeleworkerSearch, session: SessionDep, principal: LogisticsOrAdmin
) -> list[TeleworkerRead]:
    """Find teleworkers by e-mail (in the body, so it never lands in an access log)."""
    rows = service.teleworkers_by_email(session, body.email, principal)
    return [TeleworkerRead.model_validate(r) for r in rows]


@router.get(
    "/logistics/teleworkers/{teleworker_id}", response_model=TeleworkerRead, tags=["logistics"]
)
def get_teleworker(
    teleworker_id: int, session: SessionDep, principal: LogisticsOrAdmin
) -> TeleworkerRead:
    return TeleworkerRead.model_validate(service.get_teleworker(session, teleworker_id, principal))


# Autopilot.
@router.get(
    "/logistics/deliveries/{delivery_id}/autopilot",
    tags=["logistics"],
    response_class=Response,
    responses={
        200: {
            "content": {"text/csv": {}, "application/zip": {}},
            "description": "One CSV (≤ 500 rows) or a zip of CSVs.",
        },
        422: {"description": "Devices that cannot be exported, each with why."},
    },
)
def autopilot_export(delivery_id: int, session: SessionDep, principal: Exporters) -> Response:
    """The Windows Autopilot hardware-hash CSV of a delivery's laptops, validated."""
    delivery = inventory.get_delivery(session, delivery_id, principal)
    assert delivery.id is not None
    done = autopilot.export(delivery, inventory_repo.devices_of_delivery(session, delivery.id))
    return Response(
        done.content,
        media_type=done.media_type,
        headers={
            "content-disposition": f'attachment; filename="{done.filename}"',
            "x-autopilot-files": str(done.files),
            "x-autopilot-rows": str(done.rows),
        },
    )


# Labels.
_LABEL_TYPES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/zpl": {}, "application/pdf": {}}}
}


Serial = Annotated[str | None, Query(max_length=64, description="Serial or asset tag.")]
LabelFormatQ = Annotated[
    labels.LabelFormat,
    Query(
        description="`zpl` (send raw to tcp://printer:9100), `pdf` (one label per page) "
        "or `pdf-a4` (sheets of 24)."
    ),
]


def _render_labels(
    items: list[labels.Label], kind: labels.LabelKind, fmt: labels.LabelFormat
) -> Response:
    if fmt is labels.LabelFormat.ZPL:
        return Response(labels.zpl(items, kind), media_type="application/zpl")
    body = labels.pdf(items, kind, a4=fmt is labels.LabelFormat.PDF_A4)
    return Response(body, media_type="application/pdf")


@router.get("/labels/asset", tags=["labels"], response_class=Response, responses=_LABEL_TYPES)
def asset_labels(
    session: SessionDep,
    principal: LabelPrinters,
    serial: Serial = None,
    device_id: int | None = None,
    delivery_id: int | None = None,
    format: LabelFormatQ = labels.LabelFormat.ZPL,
) -> Response:
    """Asset-tag labels (QR code of the asset tag, serial, client, order) for one laptop
    or a whole delivery."""
    kind = labels.LabelKind.ASSET
    items = labels.collect(
        session, kind, principal, serial=serial, device_id=device_id, delivery_id=delivery_id
    )
    return _render_labels(items, kind, format)


@router.get("/labels/shipping", tags=["labels"], response_class=Response, responses=_LABEL_TYPES)
def shipping_labels(
    session: SessionDep,
    principal: LogisticsOrAdmin,
    serial: Serial = None,
    device_id: int | None = None,
    delivery_id: int | None = None,
    format: LabelFormatQ = labels.LabelFormat.ZPL,
) -> Response:
    """Shipping labels (recipient, address, carrier, tracking, QR code of the asset tag)
    for a DISPATCHED laptop, or every dispatched laptop of a delivery."""
    kind = labels.LabelKind.SHIPPING
    items = labels.collect(
        session, kind, principal, serial=serial, device_id=device_id, delivery_id=delivery_id
    )
    return _render_labels(items, kind, format)
