"""What holds a wave back, what a change would do, and what a wave needs.

* **Bottleneck**: the wave is simulated again with each constraint relaxed in turn
  (twice the slots, twice the live runs, twice the bandwidth, open day and night, every
  delivery here now), from the same random draws; the constraint whose relaxation brings
  "all ready" soonest is the bottleneck, with what it would gain and the evidence from
  the forecast itself (hours laptops waited outside for a slot, for the site to open,
  for a live place; when the last delivery comes).
* **What-if**: the same, with the changes a manager asks for, dates before and after.
* **Capacity**: slots, live runs, bandwidth and workers for N laptops of an image in D
  days, from the arithmetic printed beside the answer, then checked by the simulator.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any

import numpy as np

from forecast import calendar, defaults, montecarlo, rules, scenario
from forecast.errors import BadQuestion
from forecast.inputs import Index, SiteSettings
from forecast.world import Fleet, Lateness, Status, World

RELAX_RUNS = 50
LABELS = {
    "slots": "bench slots",
    "streams": "live runs (stream limit, workers)",
    "bandwidth": "the site's bandwidth cap",
    "hours": "opening hours",
    "deliveries": "laptops not yet delivered",
}


def _p50_ready(out: montecarlo.Outcome, members: np.ndarray) -> float:
    last = np.where(out.aside[:, members], -np.inf, out.ready[:, members]).max(axis=1, initial=0.0)
    return float(np.quantile(last, 0.5, method="inverted_cdf"))


def relaxed(world: World, index: Index, kind: str) -> World | None:
    """``world`` with one constraint relaxed (None: it does not bind anywhere)."""
    settings = [copy.copy(s) for s in index.sites]
    if kind == "slots":
        for s in settings:
            s.slots *= 2
    elif kind == "streams":
        for s in settings:
            s.stream_limit *= 2
            s.workers *= 2
    elif kind == "bandwidth":
        if not any(s.bandwidth for s in settings):
            return None
        for s in settings:
            s.bandwidth = s.bandwidth * 2 if s.bandwidth else None
    elif kind == "hours":
        for s in settings:
            s.hours = replace(s.hours, always_open=True)
    elif kind == "deliveries":
        fleet = copy.deepcopy(world.fleet)
        waiting = fleet.status == Status.EXPECTED
        if not waiting.any():
            return None
        fleet.due_day[waiting] = 0
        fleet.late_at_least[waiting] = 0
        return replace(world, fleet=fleet, lateness=Lateness(pmf=np.asarray([1.0])))
    return world.with_sites(tuple(s.build(t0=index.t0) for s in settings))


def bottlenecks(
    world: World, index: Index, out: montecarlo.Outcome, *, seed: int
) -> dict[int, dict[str, Any]]:
    """Per site (its index) and for the wave (-1): what holds "all ready" back."""
    fleet = world.fleet
    groups = {k: np.flatnonzero(fleet.site == k) for k in range(len(world.sites))}
    groups = {k: m for k, m in groups.items() if len(m)}
    groups[-1] = np.arange(len(fleet))
    base = montecarlo.simulate(world, runs=RELAX_RUNS, seed=seed)
    gains: dict[int, dict[str, float]] = {k: {} for k in groups}
    for kind in LABELS:
        other = relaxed(world, index, kind)
        if other is None:
            continue
        alt = montecarlo.simulate(other, runs=RELAX_RUNS, seed=seed)
        for k, members in groups.items():
            before, after = _p50_ready(base, members), _p50_ready(alt, members)
            if np.isfinite(before) and np.isfinite(after):
                gains[k][kind] = max(0.0, before - after)
            elif not np.isfinite(before) and np.isfinite(after):
                gains[k][kind] = np.inf
    verdicts: dict[int, dict[str, Any]] = {}
    for k, members in groups.items():
        g = gains[k]
        best = max(g, key=lambda x: g[x]) if g else None
        top = g.get(best, 0.0) if best else 0.0
        verdicts[k] = {
            "constraint": best if best and top > 60 else None,
            "label": LABELS[best] if best and top > 60 else "none: nothing doubled helps",
            "gain_hours_if_doubled": {x: _hours(v) for x, v in sorted(g.items())},
            "evidence": evidence(world, index, out, members, k),
        }
    return verdicts


def _hours(seconds: float) -> float | None:
    return None if not np.isfinite(seconds) else round(seconds / 3600.0, 2)


def evidence(
    world: World, index: Index, out: montecarlo.Outcome, members: np.ndarray, site: int
) -> dict[str, Any]:
    """Hours the laptops of ``members`` spent waiting, by reason (mean over runs)."""
    fleet = world.fleet
    came = members[fleet.status[members] == Status.EXPECTED]
    seen = members[fleet.status[members] != Status.ASIDE]
    result: dict[str, Any] = {"laptops_not_delivered": len(came)}
    if len(came):
        arrival = out.arrival[:, came]
        scanned = out.scanned[:, came]
        ok = np.isfinite(arrival) & np.isfinite(scanned)
        opened = np.empty_like(arrival)
        for k, s in enumerate(world.sites):
            mine = fleet.site[came] == k
            if mine.any():
                opened[:, mine] = s.calendar.next_open(arrival[:, mine])
        outside = np.where(ok, opened - arrival, 0.0).sum(axis=1)
        for_slot = np.where(ok, scanned - opened, 0.0).sum(axis=1)
        result["hours_waiting_for_opening"] = round(float(outside.mean()) / 3600, 1)
        result["hours_waiting_for_a_slot"] = round(float(for_slot.mean()) / 3600, 1)
        last = np.where(np.isfinite(arrival), arrival, -np.inf).max(axis=1)
        p50 = float(np.quantile(last, 0.5, method="inverted_cdf"))
        result["last_delivery_p50"] = (
            (index.t0 + timedelta(seconds=p50)).isoformat() if np.isfinite(p50) else None
        )
    if len(seen):
        claimed = out.claimed[:, seen]
        scanned = np.maximum(out.scanned[:, seen], 0.0)
        ok = np.isfinite(claimed) & np.isfinite(scanned)
        wait = np.where(ok, np.maximum(0.0, claimed - scanned), 0.0).sum(axis=1)
        result["hours_waiting_for_a_live_run"] = round(float(wait.mean()) / 3600, 1)
    if site >= 0:
        settings = index.sites[site]
        result.update(
            slots=settings.slots,
            live_runs=world.sites[site].live,
            bandwidth_bps=settings.bandwidth,
            open_hours_per_day=round(world.sites[site].calendar.open_hours_per_day(), 1),
        )
    return result


# What-if.
@dataclass
class SiteChange:
    site_id: int
    slots: int | None = None
    stream_limit: int | None = None
    workers: int | None = None
    bandwidth_bps: int | None = None
    uncapped: bool = False
    always_open: bool | None = None
    open_at: time | None = None
    close_at: time | None = None
    saturday: bool | None = None


@dataclass
class SecondSite:
    name: str = "second site"
    slots: int = 100
    stream_limit: int = 16
    workers: int = 1
    bandwidth_bps: int | None = None
    share: float = 0.5
    """Of the laptops not delivered yet, the share sent there (by whole deliveries)."""


@dataclass
class Changes:
    sites: list[SiteChange] = field(default_factory=list)
    second_site: SecondSite | None = None
    deliveries_on_time: bool = False


def apply(world: World, index: Index, changes: Changes) -> tuple[World, list[SiteSettings]]:
    """:raises BadQuestion: a site that is not in the wave."""
    settings = [copy.copy(s) for s in index.sites]
    by_id = {s.site_id: s for s in settings}
    for c in changes.sites:
        s = by_id.get(c.site_id)
        if s is None:
            raise BadQuestion(f"site {c.site_id} is not one of the forecast's sites")
        s.slots = c.slots if c.slots is not None else s.slots
        s.stream_limit = c.stream_limit if c.stream_limit is not None else s.stream_limit
        s.workers = c.workers if c.workers is not None else s.workers
        if c.uncapped:
            s.bandwidth = None
        elif c.bandwidth_bps is not None:
            s.bandwidth = c.bandwidth_bps
        s.hours = _hours_changed(s.hours, c)
    fleet = world.fleet
    lateness = world.lateness
    if changes.deliveries_on_time:
        lateness = Lateness(pmf=np.asarray([1.0]))
        fleet = copy.deepcopy(fleet)
        fleet.late_at_least[:] = 0
    if changes.second_site is not None:
        extra = changes.second_site
        if not 0.0 <= extra.share <= 1.0:
            raise BadQuestion("second_site.share is a fraction between 0 and 1")
        model = settings[0]
        settings.append(
            SiteSettings(
                site_id=0,
                name=extra.name,
                slots=extra.slots,
                stream_limit=extra.stream_limit,
                workers=extra.workers,
                parallel=model.parallel,
                bandwidth=extra.bandwidth_bps,
                hours=model.hours,
                tech_delay=model.tech_delay,
            )
        )
        fleet = _move(fleet, len(settings) - 1, extra.share)
    sites = tuple(s.build(t0=index.t0) for s in settings)
    return replace(world, sites=sites, fleet=fleet, lateness=lateness), settings


def _hours_changed(hours: calendar.Hours, c: SiteChange) -> calendar.Hours:
    if c.always_open is not None:
        hours = replace(hours, always_open=c.always_open)
    week = list(hours.week)
    for i, span in enumerate(week):
        if span is None:
            continue
        week[i] = (c.open_at or span[0], c.close_at or span[1])
    if c.saturday:
        week[5] = next((s for s in week[:5] if s is not None), (time(8), time(18)))
    elif c.saturday is False:
        week[5] = None
    return replace(hours, week=tuple(week))


def _move(fleet: Fleet, site: int, share: float) -> Fleet:
    """Send whole deliveries not yet delivered to ``site`` until ``share`` of those
    laptops go there (in order of their due day)."""
    fleet = copy.deepcopy(fleet)
    waiting = fleet.status == Status.EXPECTED
    total = int(waiting.sum())
    if not total or share <= 0:
        return fleet
    deliveries = sorted(
        {int(d) for d in fleet.delivery[waiting]},
        key=lambda d: int(fleet.due_day[fleet.delivery == d].min()),
    )
    moved = 0
    for i, d in enumerate(deliveries):
        mine = waiting & (fleet.delivery == d)
        # Alternate so that both sites get early and late deliveries.
        if moved / total < share and (
            i % 2 == 1 or share >= 0.99 or (moved == 0 and i == len(deliveries) - 1)
        ):
            fleet.site[mine] = site
            moved += int(mine.sum())
    if moved == 0 and deliveries:
        fleet.site[waiting & (fleet.delivery == deliveries[-1])] = site
    return fleet


# Capacity.
LINK_BPS = 110e6
"""One laptop's own link (1 GbE): no stream goes faster."""
WORKER_BPS = 1.3e9
"""What one worker host of two cores pushes through OpenSSH (aes128-gcm): about
700 MB/s per core (docs/benchmarks.md, physical limits)."""
UTILISATION = 0.8
"""Bandwidth is sized so the streams use 80 % of it: shares stay near the laptops' own
speed instead of queueing at the cap."""


@dataclass(frozen=True)
class CapacityQuestion:
    laptops: int
    image_bytes: float
    days: int
    os_family: str = "windows"
    start: datetime | None = None
    hours: calendar.Hours = field(default_factory=calendar.Hours)


@dataclass
class CapacityAnswer:
    slots: int
    live_runs: int
    bandwidth_bps: int
    workers: int
    assumptions: list[str]
    arithmetic: list[str]
    check: dict[str, Any] = field(default_factory=dict)


def capacity(q: CapacityQuestion, *, simulate: bool = True) -> CapacityAnswer:
    """What ``q.laptops`` laptops of ``q.image_bytes`` need to be dispatched within
    ``q.days`` days (from ``q.start``, the next Monday 00:00 UTC by default).

    :raises BadQuestion: nothing to size (no laptop, no day, no collection in the days).
    """
    if q.laptops <= 0 or q.days <= 0 or q.image_bytes <= 0:
        raise BadQuestion("laptops, image size and days must be positive")
    start = q.start or _next_monday()
    cal = calendar.build(q.hours, t0=start, days=q.days + 1, back=0)
    horizon = q.days * 86400.0
    cutoffs = cal.cutoffs[(cal.cutoffs >= 0) & (cal.cutoffs <= horizon)]
    collections = len(cutoffs)
    if collections == 0:
        raise BadQuestion(f"no carrier collection within {q.days} day(s) with these hours")
    # The daily window: from opening to the day's collection, on an open day.
    window = _window_hours(q.hours)
    # The stated medians of the defaults (defaults.py), not a draw.
    family = q.os_family if q.os_family in ("linux", "windows") else "windows"
    medians = {name: float(by_os[family]) for name, by_os in defaults.SECONDS.items()}
    medians["verify"] = max(5.0, q.image_bytes / defaults.READBACK_BPS)
    timed = {k: medians[k] for k in rules.STEP_NAMES if k in medians}
    stream_s = q.image_bytes / LINK_BPS
    other_s = sum(timed.values())
    per_laptop_s = other_s + stream_s
    per_collection = math.ceil(q.laptops / collections)
    slots = per_collection
    rate = per_collection / window
    live = max(1, math.ceil(rate * per_laptop_s / 3600.0))
    sending_hours = max(0.5, window - other_s / 3600.0)
    bandwidth = math.ceil(per_collection * q.image_bytes / (sending_hours * 3600.0) / UTILISATION)
    workers = max(math.ceil(live / rules.WORKER_PARALLEL), math.ceil(bandwidth / WORKER_BPS))
    arithmetic = [
        f"carrier collections in {q.days} day(s): {collections}; a slot holds its laptop from "
        f"scan-in until the collection after it is ready, so each slot serves one laptop "
        f"per collection: slots = ceil({q.laptops} / {collections}) = {slots}",
        f"each day's {per_collection} laptop(s) are scanned from opening and ready by the "
        f"collection, a window of {window:g} h: {rate:.1f} laptop(s) an hour",
        f"one laptop, alone: {other_s:.0f} s of steps + {stream_s:.0f} s of stream "
        f"({q.image_bytes / 1e9:g} GB at {LINK_BPS / 1e6:g} MB/s) = {per_laptop_s:.0f} s; "
        f"live runs = ceil({rate:.1f}/h * {per_laptop_s / 3600:.3f} h) = {live}",
        f"bytes per collection: {per_collection} * {q.image_bytes / 1e9:g} GB, sent within "
        f"{sending_hours:.2f} h (the window less the steps that send nothing), at "
        f"{UTILISATION:.0%} use: {bandwidth / 1e6:.0f} MB/s ({bandwidth * 8 / 1e9:.2f} Gb/s)",
        f"workers = max(ceil({live} live runs / {rules.WORKER_PARALLEL} per worker), "
        f"ceil({bandwidth / 1e6:.0f} MB/s / {WORKER_BPS / 1e6:.0f} MB/s per worker host)) "
        f"= {workers}",
    ]
    assumptions = [
        f"{q.os_family} laptops, the default step times before any run has been seen "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in timed.items())})",
        f"each laptop's own link: {LINK_BPS / 1e6:g} MB/s (1 GbE); the image "
        f"{q.image_bytes / 1e9:g} GB on the wire",
        f"open {_describe(q.hours)}; carriers collect at "
        f"{', '.join(c.strftime('%H:%M') for c in q.hours.cutoffs)}",
        "every laptop is at the site when the wave starts, none fails for good",
        f"a worker host: {rules.WORKER_PARALLEL} runs at once, {WORKER_BPS / 1e9:g} GB/s "
        f"through OpenSSH on 2 cores",
    ]
    answer = CapacityAnswer(slots, live, bandwidth, workers, assumptions, arithmetic)
    if not simulate:
        return answer
    # The arithmetic has no slack: a laptop that misses a collection keeps its slot a
    # day. The simulator (with the default failures and spreads) says whether it holds;
    # if not, a tenth more slots and a fifth more live runs and bandwidth, and again.
    for _ in range(8):
        answer.check = _check(q, answer, start=start, horizon=horizon)
        if answer.check["meets_deadline_p90"]:
            break
        answer.arithmetic.append(
            f"simulated with {answer.slots} slots, {answer.live_runs} live runs, "
            f"{answer.bandwidth_bps / 1e6:.0f} MB/s: P90 of all dispatched "
            f"{answer.check['dispatched_p90']} misses the deadline; raised"
        )
        answer.slots = math.ceil(answer.slots * 1.1)
        answer.live_runs = math.ceil(answer.live_runs * 1.2)
        answer.bandwidth_bps = math.ceil(answer.bandwidth_bps * 1.2)
        answer.workers = max(
            math.ceil(answer.live_runs / rules.WORKER_PARALLEL),
            math.ceil(answer.bandwidth_bps / WORKER_BPS),
        )
    return answer


def _check(
    q: CapacityQuestion, a: CapacityAnswer, *, start: datetime, horizon: float
) -> dict[str, Any]:
    """The answer, simulated (with the default failure rates and spreads)."""
    spec = scenario.SiteSpec(
        slots=a.slots,
        stream_limit=a.live_runs,
        workers=a.workers,
        bandwidth=a.bandwidth_bps,
        hours=q.hours,
    )
    world = scenario.wave(
        t0=start,
        sites=[spec],
        profiles=[scenario.default_profile(os_family=q.os_family, raw_bytes=q.image_bytes)],
        laptops=q.laptops,
        image_bytes=q.image_bytes,
    )
    fleet = world.fleet  # every laptop there on the first morning, as assumed
    out = montecarlo.simulate(world, runs=RELAX_RUNS, seed=1)
    d = montecarlo.dates(out, np.arange(len(fleet)), fleet.status)

    def at(s: float | None) -> str | None:
        return None if s is None else (start + timedelta(seconds=s)).isoformat()

    return {
        "start": start.isoformat(),
        "deadline": (start + timedelta(seconds=horizon)).isoformat(),
        "dispatched_p50": at(d.dispatched_p50),
        "dispatched_p90": at(d.dispatched_p90),
        "meets_deadline_p90": d.dispatched_p90 is not None and d.dispatched_p90 <= horizon,
    }


def _window_hours(hours: calendar.Hours) -> float:
    if hours.always_open:
        return 24.0
    open_days = [w for w in hours.week if w is not None]
    if not open_days:
        raise BadQuestion("the site is never open")
    opening = open_days[0][0]
    cut = max(hours.cutoffs)
    span = (cut.hour * 60 + cut.minute - opening.hour * 60 - opening.minute) / 60.0
    if span <= 0:
        raise BadQuestion("the carriers collect before the site opens")
    return span


def _describe(hours: calendar.Hours) -> str:
    if hours.always_open:
        return "day and night, every day"
    days = [
        f"{calendar.WEEKDAYS[i]} {w[0].strftime('%H:%M')}-{w[1].strftime('%H:%M')}"
        for i, w in enumerate(hours.week)
        if w is not None
    ]
    return ", ".join(days)


def _next_monday() -> datetime:
    from core.timeutil import utcnow

    now = utcnow()
    day = (now + timedelta(days=(7 - now.weekday()) % 7 or 7)).date()
    return datetime.combine(day, time(0), tzinfo=now.tzinfo)
