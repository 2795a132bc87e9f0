"""Provisioning HTTP routes: runs (start, retry, abort, list, show with progress) and the
bench slots' provisioning-environment endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from sqlmodel import Session

from api.deps import AdminOnly, AnyRole, SessionDep, Staff, new_router
from provisioning.runs import service
from provisioning.runs.models import ProvisioningRun, RunStatus
from provisioning.runs.schemas import (
    EndpointCreate,
    EndpointRead,
    RunAbort,
    RunDetail,
    RunEventRead,
    RunPage,
    RunRead,
    RunStart,
)

router = new_router(prefix="/runs", tags=["runs"])
Limit = Annotated[int, Query(ge=1, le=500)]


def _read(session: Session, run: ProvisioningRun) -> RunRead:
    device = service.run_device(session, run)
    return RunRead.of(
        run,
        serial=device.serial,
        bench_id=device.bench_id,
        slot=device.slot,
        device_state=str(device.state),
    )


@router.post("", response_model=RunRead, status_code=201)
def start_run(body: RunStart, session: SessionDep, principal: Staff) -> RunRead:
    """Queue a run for a RECEIVED device (its client needs an image and a configuration).
    A worker picks it up once this request has committed."""
    return _read(session, service.start(session, body.device_id, principal))


@router.get("", response_model=RunPage)
def list_runs(
    session: SessionDep,
    principal: AnyRole,
    status: RunStatus | None = None,
    active: bool = False,
    cursor: int | None = None,
    limit: Limit = 100,
) -> RunPage:
    """Runs with their progress (the bench view). dsi/logistics see their company's."""
    rows = service.list_runs(
        session, principal, status=status, active_only=active, cursor=cursor, limit=limit
    )
    items = [
        RunRead.of(r, serial=d.serial, bench_id=d.bench_id, slot=d.slot, device_state=str(d.state))
        for r, d in rows
    ]
    return RunPage.of(items, limit)


@router.get("/{run_id}", response_model=RunDetail)
def get_run(run_id: int, session: SessionDep, principal: AnyRole) -> RunDetail:
    run = service.get_run(session, run_id, principal)
    base = _read(session, run)
    events = [RunEventRead.of(e) for e in service.events(session, run)]
    return RunDetail(**base.model_dump(), events=events)


@router.post("/{run_id}/retry", response_model=RunRead)
def retry_run(run_id: int, session: SessionDep, principal: Staff) -> RunRead:
    """Re-queue a failed run from its failed step."""
    return _read(session, service.retry(session, run_id, principal))


@router.post("/{run_id}/abort", response_model=RunRead)
def abort_run(
    run_id: int, session: SessionDep, principal: Staff, body: RunAbort | None = None
) -> RunRead:
    """Abort: a queued run stops now, a running one at its next safe point."""
    reason = body.reason if body else None
    return _read(session, service.abort(session, run_id, principal, reason=reason))


@router.put("/endpoints", response_model=EndpointRead)
def put_endpoint(body: EndpointCreate, session: SessionDep, _: AdminOnly) -> EndpointRead:
    """Where a bench slot's laptop answers in its provisioning environment (admin).

    Optional: a laptop in a slot that is not wired is reached through its provisioning
    environment's own registration (`POST /boot/register`); wire a slot for laptops
    whose PE does not register, or to pin its address and host key by hand."""
    row = service.register_endpoint(session, body)
    assert row.id is not None
    return EndpointRead(
        id=row.id,
        bench_id=row.bench_id,
        slot=row.slot,
        host=row.host,
        ssh_port=row.ssh_port,
        ssh_user=row.ssh_user,
    )
