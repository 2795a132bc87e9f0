"""What holds a wave back, what a change would do, and what a wave needs.

* **Bottleneck**: the wave is simulated again with each constraint relaxed in turn
  (twice the slots, twice the live runs, twice the bandwidth, open day and night, every
  delivery here now), from the same random draws; the constraint whose relaxation brings
  "all ready" soonest is the bottleneck, with what it would gain and the evidence from
  the forecast itself (hours laptops waited outside for a slot, for the site to open,
  for a live place; when the last delivery comes).
* **What-if**: the same, with the changes a manager asks for, dates before and after.
* **Capacity** (``capacity.py``): slots, live runs, bandwidth and workers for N laptops
  of an image in D days, from the arithmetic printed beside the answer, then checked by
  the simulator.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import time, timedelta
from typing import Any

import numpy as np

from forecast import calendar, montecarlo
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
