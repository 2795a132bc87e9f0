"""Capacity: the slots, live runs, bandwidth and workers N laptops of an image need to be
ready in D days, from the arithmetic printed beside the answer, then checked by the
simulator on the same rules as the forecast."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

import numpy as np

from forecast import calendar, defaults, montecarlo, rules, scenario
from forecast.answers import RELAX_RUNS
from forecast.errors import BadQuestion

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
