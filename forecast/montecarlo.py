"""A forecast: the simulator run ``runs`` times over a world, then read as dates.

Seeded and deterministic: the same world and seed give the same figures, byte for byte.
Each site draws from its own stream (``seed``, site index), so adding a site to a what-if
does not change what the others drew.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecast import draws, rules
from forecast.simulate import run_site
from forecast.world import Status, World

DAY = 86400.0


@dataclass
class Outcome:
    ready: np.ndarray
    """``(R, N)``: seconds since t0 when each laptop is ready (inf: never, or past the
    horizon); -inf-free: laptops already ready keep their (negative) time."""
    dispatched: np.ndarray
    aside: np.ndarray
    scanned: np.ndarray
    """``(R, N)``: when each laptop took its bench slot (-inf: before t0)."""
    claimed: np.ndarray
    """``(R, N)``: when its (last) run was claimed."""
    arrival: np.ndarray
    """``(R, N)``: when it came to the site (-inf: before t0)."""
    horizon: float = 0.0

    @property
    def runs(self) -> int:
        return int(self.ready.shape[0])


def simulate(world: World, *, runs: int = 200, seed: int = 0, horizon_days: float = 60) -> Outcome:
    fleet = world.fleet
    n = len(fleet)
    horizon = horizon_days * DAY
    ready = np.full((runs, n), np.inf)
    dispatched = np.full((runs, n), np.inf)
    aside = np.zeros((runs, n), dtype=bool)
    scanned = np.full((runs, n), -np.inf)
    claimed = np.full((runs, n), np.inf)
    arrival = np.full((runs, n), -np.inf)
    window = rules.WAVE_WINDOW if world.wave_window is None else world.wave_window
    wave = rules.wave_wait_table(64, window=window)
    # The leader's wait is part of its configure step (it waits inside it): a configure
    # time learnt from the run log already holds it; only the defaults lack it.
    linux_profile = np.asarray(
        [
            p.os_family == "linux" and p.steps[rules.CONFIGURE].learned_from == 0
            for p in world.profiles
        ]
        or [False]
    )
    for k, site in enumerate(world.sites):
        idx = np.flatnonzero(fleet.site == k)
        rng = np.random.default_rng([seed, k])
        if not len(idx):
            continue
        sub = fleet.take(idx)
        d = draws.draw(
            rng, site=site, profiles=world.profiles, fleet=sub, lateness=world.lateness, runs=runs
        )
        d.arrival = draws.arrivals(rng, site, sub, world.lateness, runs)
        out = run_site(site, sub, d, wave=wave, linux=linux_profile[sub.profile], horizon=horizon)
        ready[:, idx] = out.ready
        aside[:, idx] = out.aside
        scanned[:, idx] = out.scanned
        claimed[:, idx] = out.claimed
        arrival[:, idx] = d.arrival
        gone = sub.status == Status.DISPATCHED
        when = site.calendar.next_cutoff(out.ready)
        when[:, gone] = sub.dispatched_at[gone]
        dispatched[:, idx] = when
    return Outcome(
        ready=ready,
        dispatched=dispatched,
        aside=aside,
        scanned=scanned,
        claimed=claimed,
        arrival=arrival,
        horizon=horizon,
    )


@dataclass(frozen=True)
class Dates:
    """When every laptop of a group is ready and dispatched: P50 and P90 over the runs,
    seconds since t0 (None: not within the horizon in that share of runs)."""

    laptops: int
    done: int
    """Already dispatched (or ready, for ``ready``) at t0."""
    aside: float
    """Laptops expected to be set aside (mean over runs)."""
    ready_p50: float | None
    ready_p90: float | None
    dispatched_p50: float | None
    dispatched_p90: float | None


def _quantile(values: np.ndarray, q: float, horizon: float) -> float | None:
    v = float(np.quantile(values, q, method="inverted_cdf"))
    return None if not np.isfinite(v) or v > horizon else v


def dates(outcome: Outcome, members: np.ndarray, status: np.ndarray) -> Dates:
    """The group of laptops ``members`` (indices into the fleet)."""
    ready = outcome.ready[:, members]
    gone = outcome.dispatched[:, members]
    aside = outcome.aside[:, members]
    # A laptop set aside no longer holds "every laptop" back.
    last_ready = np.where(aside, -np.inf, ready).max(axis=1, initial=-np.inf)
    last_gone = np.where(aside, -np.inf, gone).max(axis=1, initial=-np.inf)
    h = outcome.horizon
    return Dates(
        laptops=len(members),
        done=int(np.sum(status[members] == Status.DISPATCHED)),
        aside=float(aside.sum(axis=1).mean()) if len(members) else 0.0,
        ready_p50=_quantile(last_ready, 0.5, h),
        ready_p90=_quantile(last_ready, 0.9, h),
        dispatched_p50=_quantile(last_gone, 0.5, h),
        dispatched_p90=_quantile(last_gone, 0.9, h),
    )


def throughput_per_hour(outcome: Outcome, members: np.ndarray, status: np.ndarray) -> float:
    """Laptops made ready per hour from t0 until the group is all ready (median run)."""
    todo = members[(status[members] != Status.READY) & (status[members] != Status.DISPATCHED)]
    if not len(todo):
        return 0.0
    ready = outcome.ready[:, todo]
    ok = np.isfinite(ready)
    span = np.where(ok, ready, -np.inf).max(axis=1, initial=0.0)
    made = ok.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_hour = np.where(span > 0, made / (span / 3600.0), 0.0)
    return float(np.median(per_hour))
