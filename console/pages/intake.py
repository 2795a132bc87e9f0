"""Intake: deliveries, ship-notice upload with a dry-run preview (errors on their
lines), reconciliation."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import anyio
from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from api.deps import STAFF, SessionDep
from console import render
from console.deps import BodyLimit, PageAllow, Viewer
from console.i18n import N_
from console.nav import NavItem, register
from console.pages._kit import get_db, page, page_router
from core.errors import FileRejected, InvalidInput
from core.principal import Role
from inventory import intake, intake_publish, reconcile
from inventory import service as inventory
from inventory.schemas import DeliveryCreate, ImportSummary, IntakeError
from logistics import status as device_status

router = page_router()
ROLES = (*STAFF, Role.LOGISTICS)
IntakeViewer = Annotated[Viewer, Depends(PageAllow(*ROLES))]
NAV = register(NavItem("intake", N_("Deliveries"), "/console/deliveries", frozenset(ROLES), 40))
ShipNoticeLimit = Depends(BodyLimit(intake.MAX_BYTES + 64 * 1024))
SHOWN_ERRORS = 200


@router.get("/console/deliveries")
def deliveries(request: Request, session: SessionDep, viewer: IntakeViewer) -> HTMLResponse:
    # The newest hundred: a delivery's figures are one grouped count each.
    rows = list(inventory.list_deliveries(session, viewer.principal, cursor=None, limit=10_000))
    rows = rows[-100:]
    counts = {
        d.id: device_status.counts_for_delivery(session, d.id or 0, viewer.principal) for d in rows
    }
    clients = {c.id: c for c in inventory.list_clients(session, viewer.principal)}
    return page(
        request,
        "intake/deliveries.html",
        viewer=viewer,
        deliveries=list(reversed(rows)),
        counts=counts,
        clients=clients,
    )


@router.post("/console/deliveries")
def create_delivery(
    request: Request,
    session: SessionDep,
    viewer: IntakeViewer,
    vendor: Annotated[str, Form(min_length=1, max_length=64)],
    order_reference: Annotated[str, Form(min_length=1, max_length=64)],
    client_code: Annotated[str | None, Form(max_length=32)] = None,
    carrier: Annotated[str | None, Form(max_length=64)] = None,
    tracking: Annotated[str | None, Form(max_length=128)] = None,
    expected_date: Annotated[date | None, Form()] = None,
) -> Response:
    body = DeliveryCreate(
        client_code=client_code or None,
        vendor=vendor.strip(),
        order_reference=order_reference.strip(),
        carrier=carrier or None,
        tracking=tracking or None,
        expected_date=expected_date,
    )
    row = inventory.create_delivery(session, body, viewer.principal)
    target = f"/console/deliveries/{row.id}"
    if request.headers.get("hx-request") == "true":
        return HTMLResponse("", headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


@router.get("/console/deliveries/{delivery_id}")
def delivery(
    delivery_id: int, request: Request, session: SessionDep, viewer: IntakeViewer
) -> HTMLResponse:
    row = inventory.get_delivery(session, delivery_id, viewer.principal)
    return page(
        request,
        "intake/delivery.html",
        viewer=viewer,
        delivery=row,
        counts=device_status.counts_for_delivery(session, delivery_id, viewer.principal),
        rec=reconcile.reconcile(session, delivery_id, viewer.principal),
        max_mb=intake.MAX_BYTES // (1024 * 1024),
    )


def _preview(
    viewer: Viewer,
    data: bytes,
    summary: ImportSummary | None,
    errors: list[IntakeError],
    *,
    imported: bool,
    delivery_id: int,
) -> HTMLResponse:
    """The outcome: counts, and each error beside the line of the file it is on."""
    try:
        lines = intake.decode(data).splitlines()
    except UnicodeDecodeError:
        lines = []
    shown = [
        {
            "line": e.line,
            "column": e.column,
            "message": e.message,
            "text": lines[e.line - 1] if e.line and 0 < e.line <= len(lines) else None,
        }
        for e in errors[:SHOWN_ERRORS]
    ]
    body = render.render(
        "intake/_preview.html",
        {
            "summary": summary,
            "errors": shown,
            "error_count": len(errors),
            "imported": imported,
            "delivery_id": delivery_id,
        },
        language=viewer.language,
    )
    # 200 either way: the preview worked, and its answer is in the page.
    return HTMLResponse(body)


@router.post("/console/deliveries/{delivery_id}/import", dependencies=[ShipNoticeLimit])
async def import_file(delivery_id: int, request: Request, viewer: IntakeViewer) -> Response:
    """``mode=preview`` (a dry run: what would happen, every error on its line) or
    ``mode=import`` (all or nothing). The import runs its own short transactions
    (``inventory.intake_publish``), so a large file never holds scan-in's write lock."""
    db = get_db(request)

    def visible() -> None:
        # Another company's delivery is "not found" before anything of the body is read.
        with db.session(write=False) as session:
            inventory.get_delivery(session, delivery_id, viewer.principal)

    await anyio.to_thread.run_sync(visible)
    form = await request.form(max_files=1, max_fields=10)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidInput("choose the ship notice file")
    data = await upload.read(intake.MAX_BYTES + 1)
    real = form.get("mode") == "import"

    def work() -> HTMLResponse:
        try:
            summary = intake_publish.import_ship_notice(
                db, delivery_id, data, viewer.principal, dry_run=not real
            )
        except FileRejected as e:
            errors = [IntakeError(**x) for x in e.extra.get("errors", [])]
            return _preview(viewer, data, None, errors, imported=False, delivery_id=delivery_id)
        return _preview(
            viewer, data, summary, list(summary.errors), imported=real, delivery_id=delivery_id
        )

    return await anyio.to_thread.run_sync(work)
