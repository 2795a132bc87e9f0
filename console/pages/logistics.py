"""Logistics: dispatch one laptop or a CSV file, shipments, returns, webhooks and their
delivery log."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from api.deps import SessionDep
from console import render
from console.deps import BodyLimit, PageAllow, Viewer
from console.i18n import N_
from console.nav import NavItem, register
from console.pages._kit import done, page, page_router
from core.errors import FileRejected, InvalidInput
from core.principal import Role
from inventory.states import DeviceState
from logistics import imports, webhooks
from logistics import service as logistics
from logistics.schemas import DispatchRequest, ImportLine, TeleworkerIn

router = page_router()
ROLES = (Role.ADMIN, Role.LOGISTICS)
LogisticsViewer = Annotated[Viewer, Depends(PageAllow(*ROLES))]
NAV = register(NavItem("logistics", N_("Logistics"), "/console/logistics", frozenset(ROLES), 60))
CsvLimit = Depends(BodyLimit(20 * 1024 * 1024 + 64 * 1024))


def _message(viewer: Viewer, message: str, *, kind: str, **params: object) -> HTMLResponse:
    body = render.render(
        "_message.html",
        {"message": message, "params": params, "kind": kind},
        language=viewer.language,
    )
    return HTMLResponse(body)


@router.get("/console/logistics")
def home(
    request: Request,
    session: SessionDep,
    viewer: LogisticsViewer,
    serial: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    return page(
        request,
        "logistics/home.html",
        viewer=viewer,
        serial=serial or "",
        ready=logistics.devices_in_state(session, DeviceState.READY, viewer.principal),
        dispatched=logistics.devices_in_state(session, DeviceState.DISPATCHED, viewer.principal),
        returned=logistics.devices_in_state(session, DeviceState.RETURNED, viewer.principal),
        subscriptions=webhooks.list_subscriptions(session, viewer.principal),
    )


@router.post("/console/logistics/dispatch")
def dispatch(
    request: Request,
    session: SessionDep,
    viewer: LogisticsViewer,
    serial: Annotated[str, Form(min_length=1, max_length=64)],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    email: Annotated[str, Form(min_length=3, max_length=320)],
    address: Annotated[str, Form(min_length=1, max_length=500)],
    carrier: Annotated[str, Form(min_length=1, max_length=64)],
    tracking: Annotated[str, Form(min_length=1, max_length=128)],
    phone: Annotated[str | None, Form(max_length=40)] = None,
) -> Response:
    try:
        body = DispatchRequest(
            serial=serial,
            teleworker=TeleworkerIn(name=name, email=email, phone=phone or None, address=address),
            carrier=carrier,
            tracking=tracking,
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise InvalidInput(f"{first['loc'][-1]}: {first['msg']}") from e
    shipment = logistics.dispatch(session, body, viewer.principal)
    return done(
        request,
        viewer,
        N_("%(serial)s dispatched: %(carrier)s %(tracking)s."),
        fallback="/console/logistics",
        serial=serial.upper(),
        carrier=shipment.carrier,
        tracking=shipment.tracking,
    )


@router.post("/console/logistics/dispatch-file", dependencies=[CsvLimit])
async def dispatch_file(request: Request, session: SessionDep, viewer: LogisticsViewer) -> Response:
    """``mode=preview`` (nothing written, every error on its line) or ``mode=import``."""
    form = await request.form(max_files=1, max_fields=10)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidInput("choose the dispatch file")
    data = await upload.read(20 * 1024 * 1024 + 1)
    real = form.get("mode") == "import"

    def work() -> HTMLResponse:
        errors: list[ImportLine]
        try:
            summary = imports.import_dispatch(session, data, viewer.principal, dry_run=not real)
            errors = list(summary.errors)
        except FileRejected as e:
            summary, errors = None, [ImportLine(**x) for x in e.extra.get("errors", [])]
        if real and summary is not None:
            session.commit()
        body = render.render(
            "logistics/_dispatch_preview.html",
            {"summary": summary, "errors": errors[:200], "error_count": len(errors)},
            language=viewer.language,
        )
        return HTMLResponse(body)

    return await anyio.to_thread.run_sync(work)


@router.post("/console/logistics/return")
def record_return(
    request: Request,
    session: SessionDep,
    viewer: LogisticsViewer,
    serial: Annotated[str, Form(min_length=1, max_length=64)],
    reason: Annotated[str, Form(min_length=1, max_length=1000)],
) -> Response:
    device = logistics.find_device(session, serial, viewer.principal)
    logistics.return_device(session, device.id or 0, viewer.principal, reason=reason)
    return done(
        request,
        viewer,
        N_("%(serial)s recorded as returned."),
        fallback="/console/logistics",
        serial=device.serial,
    )


@router.post("/console/logistics/devices/{device_id}/delivered")
def delivered(
    device_id: int, request: Request, session: SessionDep, viewer: LogisticsViewer
) -> Response:
    device = logistics.deliver(session, device_id, viewer.principal)
    return done(
        request,
        viewer,
        N_("%(serial)s recorded as delivered."),
        fallback="/console/logistics",
        serial=device.serial,
    )


@router.get("/console/webhooks/{sub_id}")
def webhook(
    sub_id: int, request: Request, session: SessionDep, viewer: LogisticsViewer
) -> HTMLResponse:
    sub, log = logistics.webhook_log(session, sub_id, viewer.principal)
    return page(request, "logistics/webhook.html", viewer=viewer, sub=sub, log=log)


@router.post("/console/webhooks/{sub_id}/{action}")
def webhook_switch(
    sub_id: int, action: str, request: Request, session: SessionDep, viewer: LogisticsViewer
) -> Response:
    if action not in ("pause", "resume"):
        raise InvalidInput("pause or resume")
    webhooks.set_active(session, sub_id, viewer.principal, active=action == "resume")
    message = N_("Webhook paused.") if action == "pause" else N_("Webhook resumed.")
    return done(request, viewer, message, fallback=f"/console/webhooks/{sub_id}")
