"""All of the forecast's SQL: what it reads of the wave, and its own tables."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, datetime

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from forecast.learn import StepRecord
from forecast.models import (
    ForecastChange,
    ForecastDelivery,
    ForecastNotice,
    ForecastSite,
    ForecastSnapshot,
)
from inventory.models import Bench, Delivery, Device, DeviceEvent, Site
from inventory.states import DeviceState
from provisioning.runs.models import ProvisioningRun, RunStepEvent
from provisioning.runs.states import STEP_NAMES

S = DeviceState
IN_THE_WAVE = (
    S.EXPECTED,
    S.RECEIVED,
    S.QUEUED,
    S.IMAGING,
    S.CONFIGURING,
    S.VERIFYING,
    S.FAILED_IMAGING,
    S.FAILED_CONFIGURING,
    S.FAILED_VERIFYING,
    S.READY,
)
"""Laptops not yet handed to a carrier: the wave is made of them and their deliveries."""
_KINDS = ("step_started", "step_done", "retry", "failed")


# The wave.
def sites(session: Session) -> list[tuple[Site, int, ForecastSite | None]]:
    """Each site with its benches' slots and its forecast settings."""
    slots = dict(
        session.exec(
            select(Bench.site_id, func.coalesce(func.sum(Bench.slots), 0)).group_by(
                col(Bench.site_id)
            )
        ).all()
    )
    settings = {f.site_id: f for f in session.exec(select(ForecastSite)).all()}
    rows = session.exec(select(Site).order_by(col(Site.id))).all()
    return [(s, int(slots.get(s.id or 0, 0)), settings.get(s.id or 0)) for s in rows]


def bench_sites(session: Session) -> dict[int, int]:
    return {b: s for b, s in session.exec(select(Bench.id, Bench.site_id)).all() if b is not None}


def wave_devices(session: Session) -> Sequence[Device]:
    """Laptops not yet dispatched, and every laptop of their deliveries (the ones gone
    already count as done)."""
    states = [s.value for s in IN_THE_WAVE]
    open_deliveries = (
        select(Device.delivery_id)
        .where(col(Device.state).in_(states), col(Device.delivery_id).is_not(None))
        .distinct()
    )
    stmt = (
        select(Device)
        .where(col(Device.state).in_(states) | col(Device.delivery_id).in_(open_deliveries))
        .order_by(col(Device.id))
    )
    return session.exec(stmt).all()


def latest_runs(session: Session, device_ids: Collection[int]) -> dict[int, ProvisioningRun]:
    out: dict[int, ProvisioningRun] = {}
    ids = sorted(device_ids)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        stmt = (
            select(ProvisioningRun)
            .where(col(ProvisioningRun.device_id).in_(chunk))
            .order_by(col(ProvisioningRun.id))
        )
        for run in session.exec(stmt).all():
            out[run.device_id] = run
    return out


def step_started_at(session: Session, run_ids: Collection[int]) -> dict[int, datetime]:
    """When each run's current step started (its last ``step_started``)."""
    out: dict[int, datetime] = {}
    ids = sorted(run_ids)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        stmt = (
            select(RunStepEvent.run_id, func.max(RunStepEvent.at))
            .where(col(RunStepEvent.run_id).in_(chunk), RunStepEvent.kind == "step_started")
            .group_by(col(RunStepEvent.run_id))
        )
        out.update({r: at for r, at in session.exec(stmt).all()})
    return out


def dispatched_at(session: Session, device_ids: Collection[int]) -> dict[int, datetime]:
    """When each laptop was dispatched, and when it became ready."""
    out: dict[int, datetime] = {}
    ids = sorted(device_ids)
    for i in range(0, len(ids), 500):
        stmt = (
            select(DeviceEvent.device_id, func.max(DeviceEvent.at))
            .where(
                col(DeviceEvent.device_id).in_(ids[i : i + 500]),
                DeviceEvent.to_state == S.DISPATCHED.value,
            )
            .group_by(col(DeviceEvent.device_id))
        )
        out.update(dict(session.exec(stmt).all()))
    return out


def ready_at(session: Session, device_ids: Collection[int]) -> dict[int, datetime]:
    out: dict[int, datetime] = {}
    ids = sorted(device_ids)
    for i in range(0, len(ids), 500):
        stmt = (
            select(DeviceEvent.device_id, func.max(DeviceEvent.at))
            .where(
                col(DeviceEvent.device_id).in_(ids[i : i + 500]),
                DeviceEvent.to_state == S.READY.value,
            )
            .group_by(col(DeviceEvent.device_id))
        )
        out.update(dict(session.exec(stmt).all()))
    return out


def deliveries(session: Session, ids: Collection[int]) -> dict[int, Delivery]:
    if not ids:
        return {}
    rows = session.exec(select(Delivery).where(col(Delivery.id).in_(sorted(ids)))).all()
    return {d.id: d for d in rows if d.id is not None}


def delivery_settings(session: Session, ids: Collection[int]) -> dict[int, ForecastDelivery]:
    if not ids:
        return {}
    stmt = select(ForecastDelivery).where(col(ForecastDelivery.delivery_id).in_(sorted(ids)))
    return {d.delivery_id: d for d in session.exec(stmt).all()}


# Learning.
def step_records(
    session: Session, *, since: datetime, bench_site: dict[int, int], limit: int = 200_000
) -> list[StepRecord]:
    """Step attempts logged since ``since``: each ``step_started`` paired with what
    followed it in its run's log (done, a retry, the run's failure)."""
    stmt = (
        select(RunStepEvent)
        .where(RunStepEvent.at >= since, col(RunStepEvent.kind).in_(_KINDS))
        .order_by(col(RunStepEvent.run_id), col(RunStepEvent.seq))
        .limit(limit)
    )
    rows = [(e.run_id, e.step, e.kind, e.at, e.details) for e in session.exec(stmt).all()]
    run_ids = sorted({r[0] for r in rows})
    info: dict[int, tuple[str, str, int, int]] = {}
    for i in range(0, len(run_ids), 500):
        chunk = run_ids[i : i + 500]
        # Where each run's laptop sits (its site: attempts share a site's machines).
        where = select(ProvisioningRun.id, Device.bench_id).join(
            Device, col(Device.id) == col(ProvisioningRun.device_id)
        )
        benches = dict(session.exec(where.where(col(ProvisioningRun.id).in_(chunk))).all())
        q = (
            select(
                ProvisioningRun.id,
                ProvisioningRun.os_family,
                ProvisioningRun.progress_total,
                Device.hardware_model_id,
            )
            .join(Device, col(Device.id) == col(ProvisioningRun.device_id))
            .where(col(ProvisioningRun.id).in_(chunk))
        )
        for rid, family, total, model in session.exec(q).all():
            if rid is not None:
                bench = benches.get(rid)
                site = bench_site.get(int(bench), 0) if bench is not None else 0
                info[rid] = (profile_key(model, family), family, int(total or 0), site)
    out: list[StepRecord] = []
    open_: dict[int, tuple[str, datetime]] = {}
    for run_id, step, kind, at, details in rows:
        if kind == "step_started":
            open_[run_id] = (step, at)
            continue
        started = open_.pop(run_id, None)
        if started is None or started[0] != step or step not in STEP_NAMES:
            continue
        key, family, total, site = info.get(run_id, ("?", "linux", 0, 0))
        size = 0.0
        if step == "stream":
            size = float(total)
        elif step == "installers" and kind == "step_done":
            items = (details or {}).get("installers") or []
            size = float(sum(int(i.get("size") or 0) for i in items if i.get("written")))
        outcome = {"step_done": "ok", "retry": "retry", "failed": "failed"}[kind]
        seconds = max(0.0, (at - started[1]).total_seconds())
        out.append(
            StepRecord(
                key,
                family,
                STEP_NAMES.index(step),
                seconds,
                outcome,
                size,
                started[1].timestamp(),
                site=site,
            )
        )
    return out


def installer_bytes(records: Sequence[StepRecord]) -> float:
    sizes = [r.size for r in records if r.step == STEP_NAMES.index("installers") and r.size > 0]
    return float(sorted(sizes)[len(sizes) // 2]) if sizes else 0.0


def delivery_arrivals(session: Session, *, since: datetime) -> list[tuple[date, datetime]]:
    """(expected date, first scan-in) of deliveries received since ``since``."""
    first = (
        select(Device.delivery_id, func.min(DeviceEvent.at).label("first"))
        .join(Device, col(Device.id) == col(DeviceEvent.device_id))
        .where(DeviceEvent.event == "receive", DeviceEvent.at >= since)
        .group_by(col(Device.delivery_id))
        .subquery()
    )
    stmt = select(col(Delivery.expected_date), first.c.first).join(
        first, first.c.delivery_id == col(Delivery.id)
    )
    return [(e, f) for e, f in session.exec(stmt).all() if e is not None]


def technician_delays(session: Session, *, since: datetime, limit: int = 500) -> list[float]:
    """Seconds from a run's failure to the technician's retry (recent retries)."""
    retries = session.exec(
        select(DeviceEvent.device_id, DeviceEvent.at)
        .where(DeviceEvent.event == "retry", DeviceEvent.at >= since)
        .order_by(col(DeviceEvent.id).desc())
        .limit(limit)
    ).all()
    out: list[float] = []
    for device_id, at in retries:
        failed = session.exec(
            select(func.max(DeviceEvent.at)).where(
                DeviceEvent.device_id == device_id,
                DeviceEvent.event == "fail",
                DeviceEvent.at <= at,
            )
        ).first()
        if failed is not None:
            out.append((at - failed).total_seconds())
    return out


def profile_key(model_id: int | None, os_family: str) -> str:
    return f"{model_id or 0}/{os_family}"


def site(session: Session, site_id: int) -> Site | None:
    return session.get(Site, site_id)


# The forecast's own tables.
def site_settings(session: Session, site_id: int) -> ForecastSite | None:
    return session.get(ForecastSite, site_id)


def delivery_setting(session: Session, delivery_id: int) -> ForecastDelivery | None:
    return session.get(ForecastDelivery, delivery_id)


def delivery_setting_for_update(session: Session, delivery_id: int) -> ForecastDelivery | None:
    stmt = select(ForecastDelivery).where(ForecastDelivery.delivery_id == delivery_id)
    return session.exec(stmt.with_for_update()).first()


def snapshots(
    session: Session, *, scope: str | None = None, client_id: int | None = None
) -> Sequence[ForecastSnapshot]:
    stmt = select(ForecastSnapshot).order_by(
        col(ForecastSnapshot.scope), col(ForecastSnapshot.scope_id)
    )
    if scope is not None:
        stmt = stmt.where(ForecastSnapshot.scope == scope)
    if client_id is not None:
        stmt = stmt.where(ForecastSnapshot.client_id == client_id)
    return session.exec(stmt).all()


def version(session: Session) -> tuple[int, int, datetime | None]:
    """Moves whenever what the console's forecast panel shows may have: the stored
    forecast replaced (new ids), a notice, a committed date set. Three ``max()`` in
    one round trip."""
    stmt = select(
        select(func.max(ForecastSnapshot.id)).scalar_subquery(),
        select(func.max(ForecastNotice.id)).scalar_subquery(),
        select(func.max(ForecastDelivery.committed_at)).scalar_subquery(),
    )
    snapshots, notices, committed = session.exec(stmt).one()
    return int(snapshots or 0), int(notices or 0), committed


def snapshot(session: Session, scope: str, scope_id: int) -> ForecastSnapshot | None:
    stmt = select(ForecastSnapshot).where(
        ForecastSnapshot.scope == scope, ForecastSnapshot.scope_id == scope_id
    )
    return session.exec(stmt).first()


def replace_snapshots(session: Session, rows: Sequence[ForecastSnapshot]) -> None:
    """The latest forecast replaces the previous one, scope by scope, in one go."""
    session.exec(delete(ForecastSnapshot))
    session.add_all(rows)
    session.flush()


def mark_changed(session: Session, reason: str) -> None:
    """Append a change mark, unless one is already waiting (a cheap read first: a burst
    of scans adds one row, not thousands)."""
    if session.exec(select(ForecastChange.id).limit(1)).first() is None:
        session.add(ForecastChange(reason=reason[:32]))
        session.flush()


def pending_changes(session: Session) -> tuple[int, datetime, datetime] | None:
    """(last id, first mark, last mark) of the marks waiting, or None."""
    row = session.exec(
        select(
            func.max(ForecastChange.id), func.min(ForecastChange.at), func.max(ForecastChange.at)
        )
    ).first()
    if row is None or row[0] is None:
        return None
    return int(row[0]), row[1], row[2]


def clear_changes(session: Session, *, up_to: int) -> None:
    session.exec(delete(ForecastChange).where(col(ForecastChange.id) <= up_to))


def notices(
    session: Session, *, client_id: int | None, limit: int = 50
) -> Sequence[ForecastNotice]:
    stmt = select(ForecastNotice).order_by(col(ForecastNotice.id).desc()).limit(limit)
    if client_id is not None:
        stmt = stmt.where(ForecastNotice.client_id == client_id)
    return session.exec(stmt).all()
