"""A laptop's page: history, hardware, runs and their step logs, labels, dispatch."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import SessionDep
from boot.hardware import service as boot_hardware
from console.deps import AnyViewer, StaffViewer
from console.i18n import N_
from console.nav import NavItem, register
from console.pages._kit import EVERYONE, done, page, page_router
from core.errors import InvalidInput, MasterlineError
from core.principal import Role
from inventory import service as inventory
from inventory.states import DeviceState, Event, allowed_events
from logistics import service as logistics
from logistics import status as device_status
from provisioning.runs import overview
from provisioning.runs import service as runs

router = page_router()
NAV = register(NavItem("laptops", N_("Laptops"), "/console/laptops", frozenset(EVERYONE), 30))

# Manual moves offered on the page (with a confirmation), in this order.
OFFERED = (Event.RELEASE, Event.RESTAGE, Event.RETURN, Event.RETIRE, Event.REJECT)
EVENT_LABELS = {
    Event.QUARANTINE: N_("Quarantine"),
    Event.RELEASE: N_("Release from quarantine"),
    Event.RESTAGE: N_("Stage again"),
    Event.RETURN: N_("Record a return"),
    Event.RETIRE: N_("Retire"),
    Event.REJECT: N_("Reject"),
}


@router.get("/console/laptops")
def search(
    request: Request,
    session: SessionDep,
    viewer: AnyViewer,
    q: Annotated[str | None, Query(max_length=64)] = None,
    state: DeviceState | None = None,
) -> Response:
    """Find laptops by serial (prefix) or asset tag; one match opens its page."""
    found = []
    if q and q.strip():
        found = list(
            inventory.list_devices(
                session, viewer.principal, serial_prefix=q.strip(), state=state, limit=100
            )
        )
        if not found:
            try:
                found = [logistics.find_device(session, q, viewer.principal)]
            except MasterlineError:  # not found, or a serial of several vendors
                found = []
        if len(found) == 1:
            return RedirectResponse(f"/console/laptops/{found[0].id}", status_code=303)
    elif state is not None:
        found = list(inventory.list_devices(session, viewer.principal, state=state, limit=100))
    return page(request, "laptops/search.html", viewer=viewer, q=q or "", found=found, state=state)


@router.get("/console/laptops/{device_id}")
def laptop(
    device_id: int, request: Request, session: SessionDep, viewer: AnyViewer
) -> HTMLResponse:
    device = inventory.get_device(session, device_id, viewer.principal)
    run_views = overview.device_runs(session, device)
    logs = {
        r.id: list(runs.events(session, runs.get_run(session, r.id, viewer.principal)))
        for r in run_views
    }
    status = device_status.render_status(session, [device], viewer.principal)[0]
    staff = viewer.principal.role in (Role.ADMIN, Role.TECHNICIAN)
    state = DeviceState(device.state)
    moves = [e for e in OFFERED if e in allowed_events(state)] if staff else []
    return page(
        request,
        "laptops/laptop.html",
        viewer=viewer,
        device=device,
        state=state,
        model=inventory.hardware_model_of(session, device),
        client=inventory.client_of(session, device),
        history=list(inventory.history(session, device)),
        runs=run_views,
        logs=logs,
        hardware=boot_hardware.device_hardware(session, device_id, viewer.principal),
        status=status,
        personal=device_status.sees_personal_data(viewer.principal),
        staff=staff,
        moves=moves,
        can_quarantine=staff and Event.QUARANTINE in allowed_events(state),
        event_labels=EVENT_LABELS,
        can_label=viewer.principal.role in (Role.ADMIN, Role.TECHNICIAN, Role.LOGISTICS),
        can_welcome=viewer.principal.role in (Role.ADMIN, Role.LOGISTICS),
        can_dispatch=state is DeviceState.READY
        and viewer.principal.role in (Role.ADMIN, Role.LOGISTICS),
    )


@router.post("/console/laptops/{device_id}/events/{event}")
def move(
    device_id: int,
    event: Event,
    request: Request,
    session: SessionDep,
    viewer: StaffViewer,
    reason: Annotated[str | None, Form(max_length=500)] = None,
) -> Response:
    """A manual lifecycle move (release, restage, return, retire, reject)."""
    if event not in OFFERED:
        raise InvalidInput(f"'{event.value}' is not offered here")
    device = inventory.transition(session, device_id, event, viewer.principal, reason=reason)
    return done(
        request,
        viewer,
        N_("%(serial)s is now %(state)s."),
        fallback=f"/console/laptops/{device_id}",
        serial=device.serial,
        state=str(device.state),
    )
