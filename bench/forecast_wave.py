"""A simulated 2,500-laptop, 5-day wave over two sites with late deliveries: the "truth"
(the event-by-event simulation, its own hidden seed, step times drawn from distributions
the forecast never sees) against the forecast made with only what was known at the end
of day 1 (the steps finished by then, the laptops' states, the ship notices).

Used by ``python -m bench.forecast`` (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time

import numpy as np

from forecast import calendar, exact, learn, montecarlo, rules, scenario
from forecast.world import Fleet, Lateness, Profile, Status, StepDist, World
from provisioning.runs.states import STEP_NAMES

T0 = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
"""Monday 06:00 in Paris."""
DAY = 86400.0
CUT = 1 * DAY + 13 * 3600.0
"""The end of day 1: Monday 19:00 in Paris (the site closed at 18:00)."""
HIDDEN_SEED = 424242
HOURS = calendar.Hours(week=(*((time(7), time(21)),) * 5, None, None), cutoffs=(time(18),))
"""Monday to Friday, 07:00-21:00; carriers collect at 18:00."""
TRUE_MEDIANS = {
    "windows": {
        "identify": 25,
        "pick_disk": 4,
        "verify": 70,
        "reboot": 380,
        "configure": 700,
        "gate": 80,
    },
    "linux": {
        "identify": 18,
        "pick_disk": 4,
        "verify": 50,
        "reboot": 150,
        "configure": 260,
        "gate": 50,
    },
}
TRUE_FAILURES = {"identify": (0.03, 0.002), "stream": (0.04, 0.004), "configure": (0.05, 0.003)}


def true_profiles(rng: np.random.Generator) -> list[Profile]:
    """The hidden truth: log-normal step times (spread 0.35) and failure rates the
    forecast's defaults do not know."""
    out = []
    for family in ("windows", "linux"):
        steps = []
        for name in STEP_NAMES:
            if name in ("stream", "installers"):
                samples = 95e6 * np.exp(0.15 * rng.standard_normal(4000))
            else:
                samples = TRUE_MEDIANS[family][name] * np.exp(0.35 * rng.standard_normal(4000))
            p_retry, p_fatal = TRUE_FAILURES.get(name, (0.0, 0.002))
            steps.append(StepDist(samples=samples, p_retry=p_retry, p_fatal=p_fatal))
        out.append(Profile(name=f"true/{family}", os_family=family, steps=tuple(steps)))
    return out


def truth_world() -> World:
    rng = np.random.default_rng(HIDDEN_SEED)
    hours = HOURS
    sites = [
        scenario.SiteSpec(
            name="PAR", slots=360, stream_limit=48, workers=3, bandwidth=1_500_000_000, hours=hours
        ),
        scenario.SiteSpec(
            name="LYO", slots=240, stream_limit=32, workers=2, bandwidth=1_000_000_000, hours=hours
        ),
    ]
    # 25 deliveries of 100 laptops due Monday to Wednesday; a quarter come a day or two
    # late (the truth's lateness, not the forecast's default).
    world = scenario.wave(
        t0=T0,
        sites=sites,
        profiles=true_profiles(rng),
        laptops=2500,
        image_bytes=14e9,
        deliveries=25,
        due_days=[i % 3 for i in range(25)],
        lateness=Lateness(pmf=np.asarray([0.75, 0.17, 0.08])),
    )
    for site in world.sites:
        object.__setattr__(site, "tech_delay", 2400.0)
        object.__setattr__(site, "give_up", 0.15)
    return world


@dataclass
class Known:
    """What the database would hold at the cut."""

    world: World
    records: int


def known_at(world: World, truth: exact.Truth, cut: float) -> Known:
    """The forecast's world at ``cut``: each laptop's state then, profiles learned from
    the step attempts finished by then, lateness from the deliveries in by then."""
    f = world.fleet
    n = len(f)
    known = Fleet.empty(n)
    for name in ("site", "profile", "sent_bytes", "delivery", "due_day"):
        setattr(known, name, getattr(f, name).copy())
    by_laptop: dict[int, list[exact.Attempt]] = {}
    records = []
    for a in truth.history:
        if a.start <= cut:
            by_laptop.setdefault(a.laptop, []).append(a)
        if a.end <= cut:
            family = world.profiles[int(f.profile[a.laptop])].os_family
            outcome = "ok" if a.outcome == "ok" else a.outcome
            records.append(
                learn.StepRecord(
                    f"model/{family}", family, a.step, a.end - a.start, outcome, a.size, a.start
                )
            )
    shift = cut
    here = {int(f.delivery[j]) for j in range(n) if truth.scanned[j] <= cut}
    for j in range(n):
        if truth.dispatched[j] <= cut:
            known.status[j] = Status.DISPATCHED
            known.ready_at[j] = truth.ready[j] - shift
            known.dispatched_at[j] = truth.dispatched[j] - shift
        elif truth.ready[j] <= cut:
            known.status[j] = Status.READY
            known.ready_at[j] = truth.ready[j] - shift
        elif truth.scanned[j] > cut:
            known.status[j] = Status.EXPECTED
            known.here[j] = int(f.delivery[j]) in here
            day = int((cut + 6 * 3600) // DAY)  # local day of the cut (Paris, UTC+1)
            known.due_day[j] = f.due_day[j] - day
            known.late_at_least[j] = max(0, day - int(f.due_day[j]))
        else:
            tried = by_laptop.get(j, [])
            known.order[j] = truth.scanned[j]
            if not tried:
                known.status[j] = Status.WAITING
                continue
            last = max(tried, key=lambda a: a.start)
            if last.end > cut:
                known.status[j] = Status.RUNNING
                known.step[j] = last.step
                known.elapsed[j] = cut - last.start
            elif last.outcome == "failed":
                known.status[j] = Status.FAILED
                known.step[j] = last.step
                known.retry_at[j] = last.end - shift + world.sites[int(f.site[j])].tech_delay
            else:
                known.status[j] = Status.RUNNING
                known.step[j] = min(
                    last.step + (1 if last.outcome == "ok" else 0), len(STEP_NAMES) - 1
                )
    wanted = {
        f"model/{p.os_family}": (p.os_family, 30e9 if p.os_family == "windows" else 15e9)
        for p in world.profiles
    }
    learned = learn.profiles(records, wanted)
    names = [f"model/{p.os_family}" for p in world.profiles]
    arrived = {}
    for j in range(n):
        if truth.arrived[j] <= cut:
            arrived[int(f.delivery[j])] = (int(truth.arrived[j] // DAY), int(f.due_day[j]))
    late = [max(0, a - d) for a, d in arrived.values()]
    sites = []
    for s in world.sites:
        sites.append(
            scenario.site(
                scenario.SiteSpec(
                    name=s.name,
                    slots=s.slots,
                    stream_limit=s.live,
                    workers=-(-s.live // rules.WORKER_PARALLEL),
                    bandwidth=int(s.shares[1]) if np.isfinite(s.shares[1]) else None,
                    hours=HOURS,
                    tech_delay=s.tech_delay,
                ),
                t0=datetime.fromtimestamp(T0.timestamp() + cut, UTC),
            )
        )
    forecast_world = World(
        sites=tuple(sites),
        profiles=tuple(learned.profiles[k] for k in names),
        fleet=known,
        lateness=learn.lateness(late),
    )
    return Known(forecast_world, len(records))


def run(*, runs: int = 200) -> dict[str, float]:
    world = truth_world()
    truth = exact.truth(world, seed=HIDDEN_SEED)
    real_ready = float(np.where(truth.aside, -np.inf, truth.ready).max())
    real_gone = float(np.where(truth.aside, -np.inf, truth.dispatched).max())
    known = known_at(world, truth, CUT)
    out = montecarlo.simulate(known.world, runs=runs, seed=17)
    d = montecarlo.dates(out, np.arange(len(known.world.fleet)), known.world.fleet.status)
    assert d.ready_p50 is not None and d.dispatched_p50 is not None
    return {
        "truth_ready_h": real_ready / 3600,
        "truth_dispatched_h": real_gone / 3600,
        "forecast_ready_p50_h": (CUT + d.ready_p50) / 3600,
        "forecast_ready_p90_h": (CUT + (d.ready_p90 or np.inf)) / 3600,
        "forecast_dispatched_p50_h": (CUT + d.dispatched_p50) / 3600,
        "forecast_dispatched_p90_h": (CUT + (d.dispatched_p90 or np.inf)) / 3600,
        "records": known.records,
        "laptops_done_at_cut": int(np.sum(known.world.fleet.status >= Status.READY)),
    }
