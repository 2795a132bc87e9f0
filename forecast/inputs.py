"""The wave as the simulator sees it, read from the tables: each site's capacity, each
laptop's state, profile and bytes, what the run log taught (``learn.py``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

import numpy as np
from sqlmodel import Session

from core.errors import MasterlineError
from forecast import calendar, learn, repository, rules
from forecast.errors import NothingToForecast
from forecast.models import ForecastSite
from forecast.world import N_STEPS, Fleet, Site, Status, World
from inventory.models import Device
from inventory.states import DeviceState
from provisioning.runs.models import ProvisioningRun, RunStatus
from provisioning.runs.states import STEP_NAMES

S = DeviceState
LOOKBACK = timedelta(days=30)
STREAM = STEP_NAMES.index("stream")
INSTALLERS = STEP_NAMES.index("installers")
DEFAULT_IMAGE_BYTES = 20e9
"""A laptop whose client has no image yet is forecast with a 20 GB Windows image."""
RAW_TO_WIRE = 0.5
"""A raw image crosses the wire zstd-compressed; before a run has measured it, half."""
_RUNNING = {S.IMAGING, S.CONFIGURING, S.VERIFYING}
_FAILED = {S.FAILED_IMAGING, S.FAILED_CONFIGURING, S.FAILED_VERIFYING}
_GONE = {S.DISPATCHED, S.DELIVERED, S.RETURNED}


@dataclass
class SiteSettings:
    """A site's capacity as the forecast uses it (what a what-if may change)."""

    site_id: int
    name: str
    slots: int
    stream_limit: int
    workers: int
    parallel: int
    bandwidth: int | None
    hours: calendar.Hours
    tech_delay: float

    def build(self, *, t0: datetime) -> Site:
        live = rules.live_limit(
            site_limit=self.stream_limit, workers=self.workers, parallel=self.parallel
        )
        return Site(
            name=self.name,
            slots=self.slots,
            live=live,
            shares=rules.share_table(self.bandwidth, max(live, 1) + 1),
            calendar=calendar.build(self.hours, t0=t0),
            tech_delay=self.tech_delay,
        )


@dataclass
class Index:
    """What each row of the world is in the database."""

    t0: datetime
    device_ids: np.ndarray
    client_ids: np.ndarray
    delivery_ids: list[int]
    """``fleet.delivery`` indexes this."""
    delivery_clients: dict[int, int]
    sites: list[SiteSettings]
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)
    image_bytes: dict[str, float] = field(default_factory=dict)


def hours_of(row: ForecastSite | None) -> calendar.Hours:
    if row is None:
        return calendar.Hours()
    base = calendar.Hours()
    week = list(base.week)
    for i, day in enumerate(calendar.WEEKDAYS):
        if day in row.hours:
            span = row.hours[day]
            week[i] = None if not span else (_hm(span[0]), _hm(span[1]))
    return calendar.Hours(
        timezone=row.timezone,
        week=tuple(week),
        closed=frozenset(datetime.fromisoformat(d).date() for d in row.closed_dates),
        cutoffs=tuple(_hm(c) for c in row.cutoffs) or base.cutoffs,
        arrival=_hm(row.arrival_time),
        always_open=row.always_open,
    )


def _hm(text: str) -> time:
    hour, _, minute = text.partition(":")
    return time(int(hour) % 24, int(minute or 0))


def site_settings(session: Session, *, delays: list[float]) -> list[SiteSettings]:
    out = []
    for site, slots, row in repository.sites(session):
        assert site.id is not None
        configured = 60.0 * (row.tech_delay_minutes if row else 30)
        out.append(
            SiteSettings(
                site_id=site.id,
                name=site.code,
                slots=slots,
                stream_limit=site.max_imaging_streams,
                workers=row.workers if row else 1,
                parallel=row.worker_parallel if row else rules.WORKER_PARALLEL,
                bandwidth=site.max_bytes_per_second,
                hours=hours_of(row),
                tech_delay=learn.median_or(delays, configured),
            )
        )
    return out


def _image_of(session: Session, device: Device) -> tuple[str, float, float] | None:
    """(OS family, bytes on the wire, raw bytes) of the image a run for ``device``
    would write, or None when its client has none yet."""
    from images.models import ImageFormat
    from images.service import resolve_for_device

    try:
        image = resolve_for_device(session, device)
    except MasterlineError:
        return None
    wire = float(image.stored_size)
    if image.format != ImageFormat.RAW_ZSTD:
        measured = repository_wire_bytes(session, image.id)
        wire = measured or image.raw_size * RAW_TO_WIRE
    return str(image.os_family), wire, float(image.raw_size)


def repository_wire_bytes(session: Session, image_id: int | None) -> float:
    from sqlmodel import col, func, select

    if image_id is None:
        return 0.0
    stmt = select(func.max(ProvisioningRun.progress_total)).where(
        ProvisioningRun.image_id == image_id, col(ProvisioningRun.status) == RunStatus.SUCCEEDED
    )
    return float(session.exec(stmt).first() or 0)


def build(
    session: Session, *, now: datetime, site_override: list[SiteSettings] | None = None
) -> tuple[World, Index]:
    """The world at ``now``.

    :raises NothingToForecast: no site, or no laptop in the wave.
    """
    since = now - LOOKBACK
    delays = repository.technician_delays(session, since=since)
    settings = site_override or site_settings(session, delays=delays)
    if not settings:
        raise NothingToForecast("no site to forecast: create a site and its benches first")
    devices = [d for d in repository.wave_devices(session) if d.id is not None]
    if not devices:
        raise NothingToForecast("no laptop in the wave: nothing expected, staged or ready")
    site_pos = {s.site_id: i for i, s in enumerate(settings)}
    benches = repository.bench_sites(session)
    ids = [d.id for d in devices if d.id is not None]
    runs = repository.latest_runs(session, ids)
    started = repository.step_started_at(
        session, [r.id for r in runs.values() if r.id is not None and r.status == RunStatus.RUNNING]
    )
    ready = repository.ready_at(session, ids)
    gone = repository.dispatched_at(session, ids)
    delivery_ids = sorted({d.delivery_id for d in devices if d.delivery_id is not None})
    deliveries = repository.deliveries(session, delivery_ids)
    chosen = repository.delivery_settings(session, delivery_ids)
    sites = [s.build(t0=now) for s in settings]
    cal0 = sites[0].calendar
    assumptions: list[str] = []

    # Where each delivery is staged: as set, else where its laptops were scanned, else
    # the first site.
    scanned_at: dict[int, Counter[int]] = {}
    for d in devices:
        if d.delivery_id is not None and d.bench_id is not None and d.bench_id in benches:
            scanned_at.setdefault(d.delivery_id, Counter())[benches[d.bench_id]] += 1

    def site_of(d: Device) -> int:
        if d.bench_id is not None and benches.get(d.bench_id) in site_pos:
            return site_pos[benches[d.bench_id]]
        if d.delivery_id is not None:
            setting = chosen.get(d.delivery_id)
            if setting is not None and setting.site_id in site_pos:
                return site_pos[setting.site_id]
            seen = scanned_at.get(d.delivery_id)
            if seen:
                return site_pos.get(seen.most_common(1)[0][0], 0)
        return 0

    n = len(devices)
    fleet = Fleet.empty(n)
    images: dict[tuple[int | None, int | None], tuple[str, float, float] | None] = {}
    keys: list[str] = []
    wanted: dict[str, tuple[str, float]] = {}
    wire_of: dict[str, float] = {}
    no_image = 0
    t0s = now.timestamp()
    d_index = {d: i for i, d in enumerate(delivery_ids)}
    for i, d in enumerate(devices):
        fleet.site[i] = site_of(d)
        cal = sites[fleet.site[i]].calendar
        group = (d.client_id, d.hardware_model_id)
        if group not in images:
            images[group] = _image_of(session, d)
        run = runs.get(d.id or 0)
        found = images[group]
        if found is None:
            no_image += 1
            family = run.os_family if run else "windows"
            found = (family, DEFAULT_IMAGE_BYTES, DEFAULT_IMAGE_BYTES)
        family, wire, raw = found
        key = repository.profile_key(d.hardware_model_id, family)
        keys.append(key)
        wanted[key] = (family, raw)
        wire_of[key] = wire
        fleet.sent_bytes[i, STREAM] = wire
        fleet.delivery[i] = d_index.get(d.delivery_id, -1) if d.delivery_id is not None else -1
        fleet.order[i] = float(run.id) if run and run.id else 1e12 + (d.id or 0)
        state = S(d.state)
        _place(fleet, i, d, state, run, started, ready, gone, t0s, cal, deliveries, now)
        if fleet.status[i] == Status.FAILED:
            fleet.retry_at[i] += sites[fleet.site[i]].tech_delay
        if fleet.status[i] == Status.EXPECTED and d.delivery_id in scanned_at:
            fleet.here[i] = True  # its delivery is in: it waits for a slot
    records = repository.step_records(session, since=since, bench_site=benches)
    learned = learn.profiles(records, wanted)
    fleet.sent_bytes[:, INSTALLERS] = repository.installer_bytes(records)
    names = sorted(learned.profiles)
    fleet.profile[:] = [names.index(k) for k in keys]
    late = [
        (cal0.day_of(first) - (e - cal0.day0).days)
        for e, first in repository.delivery_arrivals(session, since=since)
    ]
    if no_image:
        assumptions.append(
            f"{no_image} laptop(s) have no image yet: forecast with a 20 GB Windows image"
        )
    world = World(
        sites=tuple(sites),
        profiles=tuple(learned.profiles[k] for k in names),
        fleet=fleet,
        lateness=learn.lateness(late),
    )
    index = Index(
        t0=now,
        device_ids=np.asarray(ids),
        client_ids=np.asarray([d.client_id or 0 for d in devices]),
        delivery_ids=delivery_ids,
        delivery_clients={k: v.client_id for k, v in deliveries.items()},
        sites=settings,
        sources=learned.sources,
        assumptions=assumptions,
        image_bytes=wire_of,
    )
    return world, index


def _place(
    fleet: Fleet,
    i: int,
    d: Device,
    state: DeviceState,
    run: ProvisioningRun | None,
    started: dict[int, datetime],
    ready: dict[int, datetime],
    gone: dict[int, datetime],
    t0s: float,
    cal: calendar.Calendar,
    deliveries: dict[int, Any],
    now: datetime,
) -> None:
    """Set laptop ``i``'s status and where it is."""

    def secs(at: datetime | None) -> float:
        return at.timestamp() - t0s if at is not None else 0.0

    if state is S.EXPECTED:
        fleet.status[i] = Status.EXPECTED
        delivery = deliveries.get(d.delivery_id) if d.delivery_id is not None else None
        expected = delivery.expected_date if delivery is not None else None
        due = (expected - cal.day0).days if expected is not None else 0
        fleet.due_day[i] = due
        fleet.late_at_least[i] = max(0, -due)
    elif state in _RUNNING and run is not None and run.status == RunStatus.RUNNING:
        fleet.status[i] = Status.RUNNING
        fleet.step[i] = min(run.step_index, N_STEPS - 1)
        fleet.elapsed[i] = max(0.0, -secs(started.get(run.id or 0, now)))
        fleet.progress[i] = float(run.progress_bytes) if run.step_name == "stream" else 0.0
        fleet.retries[i] = max(0, run.run_attempt - 1)
    elif state in _FAILED and run is not None:
        fleet.status[i] = Status.FAILED
        failed = run.failed_step or run.step_name or STEP_NAMES[0]
        fleet.step[i] = STEP_NAMES.index(failed) if failed in STEP_NAMES else 0
        fleet.retry_at[i] = secs(run.finished_at or now)
        fleet.retries[i] = max(0, run.run_attempt - 1)
    elif state in _RUNNING or state in (S.RECEIVED, S.QUEUED) or state in _FAILED:
        fleet.status[i] = Status.WAITING
        if run is not None and run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
            # A technician's retry is queued from the step it failed at.
            fleet.step[i] = min(run.step_index, N_STEPS - 1)
            fleet.retries[i] = max(0, run.run_attempt - 1)
    elif state is S.READY:
        fleet.status[i] = Status.READY
        fleet.ready_at[i] = secs(ready.get(d.id or 0, now))
    elif state in _GONE:
        fleet.status[i] = Status.DISPATCHED
        fleet.ready_at[i] = secs(ready.get(d.id or 0))
        fleet.dispatched_at[i] = secs(gone.get(d.id or 0))
    else:  # quarantined, retired, unexpected: not part of "every laptop"
        fleet.status[i] = Status.ASIDE
