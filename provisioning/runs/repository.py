"""All SQL of the provisioning domain."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, func, or_
from sqlmodel import Session, col, select

from inventory.models import Bench, ClientCompany, Device, DeviceEvent, HardwareModel, Site
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


def last_event(session: Session, run_id: int, kind: str) -> RunStepEvent | None:
    stmt = (
        select(RunStepEvent)
        .where(RunStepEvent.run_id == run_id, RunStepEvent.kind == kind)
        .order_by(col(RunStepEvent.seq).desc())
    )
    return session.exec(stmt).first()


def next_event_seq(session: Session, run_id: int) -> int:
    stmt = select(func.max(RunStepEvent.seq)).where(RunStepEvent.run_id == run_id)
    current = session.exec(stmt).one()
    return int(current or 0) + 1


def claimable_runs(
    session: Session, *, now: datetime, worker_id: str, exclude: Sequence[int], limit: int
) -> Sequence[ProvisioningRun]:
    """Queued runs (a run waiting for its PE once its ``lease_until``, its not-before
    time, has passed), and running ones whose worker is gone (lease expired) or is us
    after a restart (same worker id, not in our live set)."""
    lapsed = or_(
        col(ProvisioningRun.lease_until).is_(None),
        col(ProvisioningRun.lease_until) < now,
    )
    expired = or_(lapsed, col(ProvisioningRun.worker_id) == worker_id)
    stmt = select(ProvisioningRun).where(
        or_(
            and_(col(ProvisioningRun.status) == RunStatus.QUEUED, lapsed),
            and_(col(ProvisioningRun.status) == RunStatus.RUNNING, expired),
        )
    )
    if exclude:
        stmt = stmt.where(col(ProvisioningRun.id).not_in(list(exclude)))
    stmt = stmt.order_by(col(ProvisioningRun.id)).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return session.exec(stmt).all()


def queued_up_to_step(
    session: Session, *, step_index: int, site_id: int | None, image_id: int
) -> int:
    """Queued runs (waiting for a worker, for their PE, or for a retry) of ``image_id``
    at ``site_id`` (None: runs without a site) not yet past step ``step_index``."""
    stmt = select(func.count()).where(
        ProvisioningRun.status == RunStatus.QUEUED,
        col(ProvisioningRun.step_index) <= step_index,
        col(ProvisioningRun.site_id).is_(None)
        if site_id is None
        else col(ProvisioningRun.site_id) == site_id,
        col(ProvisioningRun.image_id) == image_id,
    )
    return int(session.exec(stmt).one())


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


# Read models of the console (bench board, wave overview): see provisioning/runs/overview.py.
def bench_board_rows(
    session: Session, *, bench_id: int, states: Sequence[str]
) -> Sequence[tuple[Device, str | None, str | None, ProvisioningRun | None]]:
    """The laptops holding a slot of ``bench_id`` with their model name, client code and
    latest run, in slot order (one query; the latest run by the device's run index)."""
    latest = (
        select(func.max(ProvisioningRun.id))
        .where(ProvisioningRun.device_id == Device.id)
        .correlate(Device)
        .scalar_subquery()
    )
    stmt = (
        select(Device, HardwareModel.model, ClientCompany.code, ProvisioningRun)
        .outerjoin(HardwareModel, col(HardwareModel.id) == Device.hardware_model_id)
        .outerjoin(ClientCompany, col(ClientCompany.id) == Device.client_id)
        .outerjoin(ProvisioningRun, col(ProvisioningRun.id) == latest)
        .where(
            Device.bench_id == bench_id,
            col(Device.state).in_(list(states)),
            col(Device.slot).is_not(None),
        )
        .order_by(col(Device.slot), col(Device.id))
    )
    return [(d, m, c, r) for d, m, c, r in session.exec(stmt).all()]


def failure_kinds(session: Session, run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The details of each run's last ``failed`` event (error type, failed checks)."""
    out: dict[int, dict[str, Any]] = {}
    for i in range(0, len(run_ids), 500):
        chunk = list(run_ids[i : i + 500])
        stmt = (
            select(RunStepEvent.run_id, RunStepEvent.details)
            .where(col(RunStepEvent.run_id).in_(chunk), RunStepEvent.kind == "failed")
            .order_by(col(RunStepEvent.run_id), col(RunStepEvent.seq))
        )
        for run_id, details in session.exec(stmt).all():
            out[int(run_id)] = dict(details or {})
    return out


def change_marks(session: Session) -> tuple[int, int, datetime | None]:
    """(last device event id, last run event id, last run update): three index lookups
    that change whenever anything a board shows changes."""
    device_event = session.exec(select(func.max(DeviceEvent.id))).one()
    run_event = session.exec(select(func.max(RunStepEvent.id))).one()
    run_update = session.exec(select(func.max(ProvisioningRun.updated_at))).one()
    return int(device_event or 0), int(run_event or 0), run_update


def benches_changed_since(
    session: Session, *, device_event_id: int, run_event_id: int, run_update: datetime | None
) -> set[int]:
    """Benches holding a laptop whose history or run changed after these marks."""
    benches: set[int] = set()
    by_event = (
        select(Device.bench_id)
        .join(DeviceEvent, col(DeviceEvent.device_id) == Device.id)
        .where(col(DeviceEvent.id) > device_event_id, col(Device.bench_id).is_not(None))
        .distinct()
    )
    benches.update(int(b) for b in session.exec(by_event).all() if b is not None)
    # Two queries rather than one OR: each then runs on its own index.
    by_run_event = (
        select(Device.bench_id)
        .join(ProvisioningRun, col(ProvisioningRun.device_id) == Device.id)
        .join(RunStepEvent, col(RunStepEvent.run_id) == ProvisioningRun.id)
        .where(col(RunStepEvent.id) > run_event_id)
        .distinct()
    )
    benches.update(int(b) for b in session.exec(by_run_event).all() if b is not None)
    if run_update is not None:
        by_run = (
            select(Device.bench_id)
            .join(ProvisioningRun, col(ProvisioningRun.device_id) == Device.id)
            .where(col(ProvisioningRun.updated_at) > run_update)
            .distinct()
        )
        benches.update(int(b) for b in session.exec(by_run).all() if b is not None)
    return benches


def _device_filter(
    stmt: Any, *, client_id: int | None, delivery_id: int | None, site_id: int | None
) -> Any:
    if client_id is not None:
        stmt = stmt.where(Device.client_id == client_id)
    if delivery_id is not None:
        stmt = stmt.where(Device.delivery_id == delivery_id)
    if site_id is not None:
        stmt = stmt.where(
            col(Device.bench_id).in_(select(Bench.id).where(Bench.site_id == site_id))
        )
    return stmt


def count_by_state(
    session: Session, *, client_id: int | None, delivery_id: int | None, site_id: int | None
) -> dict[str, int]:
    stmt = select(Device.state, func.count()).group_by(Device.state)
    stmt = _device_filter(stmt, client_id=client_id, delivery_id=delivery_id, site_id=site_id)
    return {str(state): int(n) for state, n in session.exec(stmt).all()}


def arrivals_per_hour(
    session: Session,
    *,
    to_states: Sequence[str],
    since: datetime,
    client_id: int | None,
    delivery_id: int | None,
    site_id: int | None,
) -> Sequence[tuple[str, int, int]]:
    """(state reached, hours after ``since``, how many) of the moves into ``to_states``:
    counted by the database, hour by hour (a day of a busy wave is tens of thousands of
    events; the chart needs 48 numbers). The filters read the client, delivery and site
    each event carries (the laptop's when it moved): one index answers, no laptop is
    joined (a client's day was 12,500 events joined to 60,000 laptops on PostgreSQL)."""
    at = col(DeviceEvent.at)
    if session.get_bind().dialect.name == "postgresql":
        hour: Any = func.floor(func.extract("epoch", at - since) / 3600)
    else:
        # SQLite stores UTC text; julianday() reads it.
        start = since.replace(tzinfo=None).isoformat(sep=" ")
        hour = func.cast((func.julianday(at) - func.julianday(start)) * 24, Integer)
    stmt = (
        select(DeviceEvent.to_state, hour, func.count())
        .where(col(DeviceEvent.to_state).in_(list(to_states)), at >= since)
        .group_by(DeviceEvent.to_state, hour)
    )
    if client_id is not None:
        stmt = stmt.where(DeviceEvent.client_id == client_id)
    if delivery_id is not None:
        stmt = stmt.where(DeviceEvent.delivery_id == delivery_id)
    if site_id is not None:
        stmt = stmt.where(DeviceEvent.site_id == site_id)
    return [(str(s), int(h), int(n)) for s, h, n in session.exec(stmt).all()]


def failed_runs(
    session: Session,
    *,
    states: Sequence[str],
    client_id: int | None,
    delivery_id: int | None,
    site_id: int | None,
    limit: int,
) -> Sequence[tuple[str | None, int | None, str | None, str | None]]:
    """(model, run id, failed step, last error) of each failed laptop's latest run:
    columns only, no objects (a bad day is thousands of them)."""
    latest = (
        select(func.max(ProvisioningRun.id))
        .where(ProvisioningRun.device_id == Device.id)
        .correlate(Device)
        .scalar_subquery()
    )
    stmt = (
        select(
            HardwareModel.model,
            ProvisioningRun.id,
            ProvisioningRun.failed_step,
            ProvisioningRun.last_error,
        )
        .select_from(Device)
        .outerjoin(HardwareModel, col(HardwareModel.id) == Device.hardware_model_id)
        .outerjoin(ProvisioningRun, col(ProvisioningRun.id) == latest)
        .where(col(Device.state).in_(list(states)))
        .limit(limit)
    )
    stmt = _device_filter(stmt, client_id=client_id, delivery_id=delivery_id, site_id=site_id)
    return [(m, r, f, e) for m, r, f, e in session.exec(stmt).all()]


def oldest_in_states(
    session: Session,
    *,
    states: Sequence[str],
    client_id: int | None,
    delivery_id: int | None,
    site_id: int | None,
    limit: int,
) -> Sequence[tuple[Device, str | None, ProvisioningRun | None]]:
    """The laptops that have been in one of ``states`` the longest, with model and run."""
    # The few laptops first, then their latest runs: joined before the limit, the
    # latest-run look-up ran for every laptop in those states (thousands in a wave).
    oldest = select(Device.id).where(col(Device.state).in_(list(states)))
    oldest = _device_filter(oldest, client_id=client_id, delivery_id=delivery_id, site_id=site_id)
    ids = list(
        session.exec(
            oldest.order_by(col(Device.state_changed_at), col(Device.id)).limit(limit)
        ).all()
    )
    if not ids:
        return []
    latest = (
        select(func.max(ProvisioningRun.id))
        .where(ProvisioningRun.device_id == Device.id)
        .correlate(Device)
        .scalar_subquery()
    )
    stmt = (
        select(Device, HardwareModel.model, ProvisioningRun)
        .outerjoin(HardwareModel, col(HardwareModel.id) == Device.hardware_model_id)
        .outerjoin(ProvisioningRun, col(ProvisioningRun.id) == latest)
        .where(col(Device.id).in_(ids))
        .order_by(col(Device.state_changed_at), col(Device.id))
    )
    return [(d, m, r) for d, m, r in session.exec(stmt).all()]


def runs_by_status_and_step(session: Session) -> Sequence[tuple[str, str | None, int]]:
    """(status, step, count) over every run (the /metrics scrape)."""
    status, step = col(ProvisioningRun.status), col(ProvisioningRun.step_name)
    stmt = select(status, step, func.count()).group_by(status, step)
    return [(str(s), n, int(c)) for s, n, c in session.exec(stmt).all()]


def runs_of_device(session: Session, device_id: int) -> Sequence[ProvisioningRun]:
    stmt = (
        select(ProvisioningRun)
        .where(ProvisioningRun.device_id == device_id)
        .order_by(col(ProvisioningRun.id).desc())
    )
    return session.exec(stmt).all()
