"""All SQL of the provisioning domain."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import and_, func, or_
from sqlmodel import Session, col, select

from inventory.models import Device, Site
from provisioning.runs.models import ProvisioningRun, RunStatus, RunStepEvent, SlotEndpoint


def get_run(session: Session, run_id: int) -> ProvisioningRun | None:
    return session.get(ProvisioningRun, run_id)


def get_run_for_update(session: Session, run_id: int) -> ProvisioningRun | None:
    stmt = select(ProvisioningRun).where(ProvisioningRun.id == run_id).with_for_update()
    return session.exec(stmt.execution_options(populate_existing=True)).first()


def active_run_of_device(session: Session, device_id: int) -> ProvisioningRun | None:
    stmt = select(ProvisioningRun).where(
        ProvisioningRun.device_id == device_id,
        col(ProvisioningRun.status).in_([RunStatus.QUEUED, RunStatus.RUNNING]),
    )
    return session.exec(stmt).first()


def latest_run_of_device(session: Session, device_id: int) -> ProvisioningRun | None:
    stmt = (
        select(ProvisioningRun)
        .where(ProvisioningRun.device_id == device_id)
        .order_by(col(ProvisioningRun.id).desc())
    )
    return session.exec(stmt).first()


def list_runs(
    session: Session,
    *,
    client_id: int | None,
    status: RunStatus | None = None,
    active_only: bool = False,
    cursor: int | None = None,
    limit: int = 100,
) -> Sequence[tuple[ProvisioningRun, Device]]:
    stmt = select(ProvisioningRun, Device).join(Device, col(Device.id) == ProvisioningRun.device_id)
    if client_id is not None:
        stmt = stmt.where(ProvisioningRun.client_id == client_id)
    if status is not None:
        stmt = stmt.where(ProvisioningRun.status == status)
    if active_only:
        stmt = stmt.where(col(ProvisioningRun.status).in_(list(RunStatus.active())))
    if cursor is not None:
        stmt = stmt.where(col(ProvisioningRun.id) > cursor)
    stmt = stmt.order_by(col(ProvisioningRun.id)).limit(limit)
    return [(r, d) for r, d in session.exec(stmt).all()]


def run_events(session: Session, run_id: int) -> Sequence[RunStepEvent]:
    stmt = select(RunStepEvent).where(RunStepEvent.run_id == run_id).order_by(col(RunStepEvent.seq))
    return session.exec(stmt).all()


def next_event_seq(session: Session, run_id: int) -> int:
    stmt = select(func.max(RunStepEvent.seq)).where(RunStepEvent.run_id == run_id)
    current = session.exec(stmt).one()
    return int(current or 0) + 1


def claimable_runs(
    session: Session, *, now: datetime, worker_id: str, exclude: Sequence[int], limit: int
) -> Sequence[ProvisioningRun]:
    """Queued runs, and running ones whose worker is gone (lease expired) or is us
    after a restart (same worker id, not in our live set)."""
    expired = or_(
        col(ProvisioningRun.lease_until).is_(None),
        col(ProvisioningRun.lease_until) < now,
        col(ProvisioningRun.worker_id) == worker_id,
    )
    stmt = select(ProvisioningRun).where(
        or_(
            col(ProvisioningRun.status) == RunStatus.QUEUED,
            and_(col(ProvisioningRun.status) == RunStatus.RUNNING, expired),
        )
    )
    if exclude:
        stmt = stmt.where(col(ProvisioningRun.id).not_in(list(exclude)))
    stmt = stmt.order_by(col(ProvisioningRun.id)).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return session.exec(stmt).all()


def live_runs_at_site(session: Session, *, site_id: int | None, now: datetime, exclude: int) -> int:
    stmt = select(func.count()).where(
        ProvisioningRun.status == RunStatus.RUNNING,
        ProvisioningRun.site_id == site_id,
        col(ProvisioningRun.lease_until) >= now,
        ProvisioningRun.id != exclude,
    )
    return int(session.exec(stmt).one())


def runs_in_steps_at_site(
    session: Session, *, site_id: int, step_names: Sequence[str], now: datetime
) -> Sequence[ProvisioningRun]:
    """Runs of any worker in one of ``step_names`` at ``site_id`` whose lease is live."""
    stmt = select(ProvisioningRun).where(
        ProvisioningRun.status == RunStatus.RUNNING,
        ProvisioningRun.site_id == site_id,
        col(ProvisioningRun.step_name).in_(list(step_names)),
        col(ProvisioningRun.lease_until) >= now,
    )
    return session.exec(stmt.order_by(col(ProvisioningRun.id))).all()


def lock_runs(session: Session, run_ids: Sequence[int]) -> Sequence[ProvisioningRun]:
    """Lock these runs (in id order, so concurrent lockers never deadlock)."""
    if not run_ids:
        return []
    stmt = (
        select(ProvisioningRun)
        .where(col(ProvisioningRun.id).in_(list(run_ids)))
        .order_by(col(ProvisioningRun.id))
        .with_for_update()
    )
    return session.exec(stmt.execution_options(populate_existing=True)).all()


def lock_site(session: Session, site_id: int) -> Site | None:
    stmt = select(Site).where(Site.id == site_id).with_for_update()
    return session.exec(stmt).first()


def get_site(session: Session, site_id: int | None) -> Site | None:
    return session.get(Site, site_id) if site_id is not None else None


def get_endpoint(session: Session, bench_id: int, slot: int) -> SlotEndpoint | None:
    stmt = select(SlotEndpoint).where(SlotEndpoint.bench_id == bench_id, SlotEndpoint.slot == slot)
    return session.exec(stmt).first()


def devices_in_states(session: Session, states: Sequence[str]) -> Sequence[Device]:
    stmt = select(Device).where(col(Device.state).in_(list(states)))
    return session.exec(stmt).all()


def image_ids_of_active_runs(session: Session, image_ids: Collection[int]) -> set[int]:
    """The ids among ``image_ids`` that a queued or running run writes (gc keeps them)."""
    stmt = select(ProvisioningRun.image_id).where(
        col(ProvisioningRun.image_id).in_(list(image_ids)),
        col(ProvisioningRun.status).in_(list(RunStatus.active())),
    )
    return {i for i in session.exec(stmt).all() if i is not None}


def live_run_ids_at_site(session: Session, *, site_id: int | None, now: datetime) -> set[int]:
    """The runs running at ``site_id`` under a live lease, whichever worker runs them."""
    stmt = select(ProvisioningRun.id).where(
        ProvisioningRun.status == RunStatus.RUNNING,
        ProvisioningRun.site_id == site_id,
        col(ProvisioningRun.lease_until) >= now,
    )
    return {i for i in session.exec(stmt).all() if i is not None}
