"""Worlds built from a few figures: the capacity question's, the benchmarks', the
tests'. A scenario states everything the forecast otherwise learns or reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from forecast import calendar, defaults, rules
from forecast.world import Fleet, Lateness, Profile, Site, StepDist, World
from provisioning.runs.states import STEP_NAMES

STREAM = STEP_NAMES.index("stream")


@dataclass(frozen=True)
class SiteSpec:
    name: str = "S1"
    slots: int = 100
    stream_limit: int = 16
    workers: int = 1
    bandwidth: int | None = None
    """The site's bytes-per-second cap (None: uncapped)."""
    hours: calendar.Hours = field(default_factory=lambda: calendar.Hours(always_open=True))
    tech_delay: float = 1800.0
    give_up: float = 0.1


def site(spec: SiteSpec, *, t0: datetime, days: int = 120) -> Site:
    live = rules.live_limit(site_limit=spec.stream_limit, workers=spec.workers)
    return Site(
        name=spec.name,
        slots=spec.slots,
        live=live,
        shares=rules.share_table(spec.bandwidth, max(live, 1) + 1),
        calendar=calendar.build(spec.hours, t0=t0, days=days),
        tech_delay=spec.tech_delay,
        give_up=spec.give_up,
    )


def fixed_profile(
    seconds: dict[str, float], *, os_family: str = "linux", link_bps: float = 110e6
) -> Profile:
    """Every step takes exactly ``seconds[name]`` (0 if absent), streams go at
    ``link_bps``, nothing fails: for cases checked by hand."""
    steps = tuple(
        StepDist(
            samples=np.asarray(
                [link_bps if name in rules.SENDING_STEPS else seconds.get(name, 0.0)]
            )
        )
        for name in STEP_NAMES
    )
    return Profile(name=f"fixed/{os_family}", os_family=os_family, steps=steps)


def default_profile(*, os_family: str, raw_bytes: float) -> Profile:
    return Profile(
        name=f"default/{os_family}",
        os_family=os_family,
        steps=defaults.steps(os_family=os_family, raw_bytes=raw_bytes),
    )


def wave(
    *,
    t0: datetime,
    sites: list[SiteSpec],
    profiles: list[Profile],
    laptops: int,
    image_bytes: float,
    deliveries: int = 1,
    due_days: list[int] | None = None,
    lateness: Lateness | None = None,
    wave_window: float | None = None,
) -> World:
    """``laptops`` expected laptops, spread over ``deliveries`` deliveries (each due on
    ``due_days[i]``, day 0 by default) and over the sites and profiles in turn."""
    fleet = Fleet.empty(laptops)
    index = np.arange(laptops)
    fleet.delivery[:] = index * deliveries // max(1, laptops)
    fleet.site[:] = fleet.delivery % len(sites)
    fleet.profile[:] = index % len(profiles)
    fleet.sent_bytes[:, STREAM] = image_bytes
    days = np.asarray(due_days or [0] * deliveries)
    fleet.due_day[:] = days[fleet.delivery]
    return World(
        sites=tuple(site(s, t0=t0) for s in sites),
        profiles=tuple(profiles),
        fleet=fleet,
        lateness=lateness or Lateness(pmf=np.asarray([1.0])),
        wave_window=wave_window,
    )
