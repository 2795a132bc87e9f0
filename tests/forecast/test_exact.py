"""The fast simulator against an event-by-event simulation of the same rules, on cases
small enough to check by hand (the arithmetic is in each test), then on a stochastic
wave with opening hours, carriers, failures and late deliveries."""

from __future__ import annotations

import numpy as np
import pytest

from forecast import calendar, exact, montecarlo, scenario
from forecast.world import Lateness, World
from tests.forecast.worlds import ARRIVAL, ONE_LAPTOP, T0, fixed


def _last_ready_mc(world: World) -> float:
    out = montecarlo.simulate(world, runs=4, seed=1)
    return float(out.ready.max(axis=1)[0])


def test_uncapped_laptops_go_in_rounds_of_the_stream_limit() -> None:
    # 10 laptops, 4 live runs: rounds of 4, 4 and 2, each 495.909 s, from 09:00.
    world, _ = fixed(laptops=10, stream_limit=4)
    by_hand = ARRIVAL + 3 * ONE_LAPTOP  # 8687.727 s
    assert _last_ready_mc(world) == pytest.approx(by_hand, abs=0.01)
    assert float(exact.truth(world, seed=1).ready.max()) == pytest.approx(by_hand, abs=0.01)


def test_a_capped_site_shares_its_rate_between_the_streams_sending() -> None:
    # 250 MB/s shared by 4 streams that start together: 62.5 MB/s each (below the
    # laptops' own 110), so a 10 GB stream takes 160 s and a round 15 + 160 + 390 =
    # 565 s. Two such rounds, then 2 laptops: 125 MB/s each, above 110, so 495.909 s.
    world, _ = fixed(laptops=10, stream_limit=4, bandwidth=250_000_000)
    by_hand = ARRIVAL + 2 * 565 + ONE_LAPTOP  # 8825.909 s
    assert _last_ready_mc(world) == pytest.approx(by_hand, abs=0.01)
    # Event by event, a new stream gets its share at the workers' next bandwidth loop
    # (once a second): up to a second later per round.
    assert float(exact.truth(world, seed=1).ready.max()) == pytest.approx(by_hand, abs=4)


def test_laptops_started_together_stream_together_under_the_cap() -> None:
    # 40 laptops, 8 live runs, 250 MB/s: rounds of 8 streams at 31.25 MB/s, 320 s of
    # stream, 15 + 320 + 390 = 725 s a round, 5 rounds.
    world, _ = fixed(laptops=40, stream_limit=8, bandwidth=250_000_000)
    by_hand = ARRIVAL + 5 * 725  # 10825 s
    assert _last_ready_mc(world) == pytest.approx(by_hand, abs=0.01)
    assert float(exact.truth(world, seed=1).ready.max()) == pytest.approx(by_hand, abs=6)


def test_slots_are_held_until_the_carrier_collects() -> None:
    # 6 laptops, 3 slots, open 08:00-18:00, carriers at 17:00. The first 3 are ready at
    # 09:00 + 495.909 s, collected at 17:00 (t0 + 10 h); the next 3 are scanned then,
    # ready at 17:00 + 495.909 s, collected the next day at 17:00 (t0 + 34 h).
    world, _ = fixed(laptops=6, stream_limit=8, slots=3, hours=calendar.Hours())
    out = montecarlo.simulate(world, runs=2, seed=1)
    assert float(out.ready.max()) == pytest.approx(10 * 3600 + ONE_LAPTOP, abs=0.01)
    assert float(out.dispatched.max()) == pytest.approx(34 * 3600, abs=0.01)
    truth = exact.truth(world, seed=1)
    assert float(truth.ready.max()) == pytest.approx(10 * 3600 + ONE_LAPTOP, abs=0.01)
    assert float(truth.dispatched.max()) == pytest.approx(34 * 3600, abs=0.01)


@pytest.mark.slow
def test_a_stochastic_wave_agrees_with_the_event_by_event_simulation() -> None:
    """Default step spreads and failure rates, a capped site open 08:00-18:00, three
    deliveries due on days 0-2 that may come late: the fast simulator's P50 and P90 of
    "all ready" against 60 event-by-event runs with other seeds."""
    profiles = [
        scenario.default_profile(os_family="windows", raw_bytes=30e9),
        scenario.default_profile(os_family="linux", raw_bytes=20e9),
    ]
    world = scenario.wave(
        t0=T0,
        sites=[
            scenario.SiteSpec(
                slots=40, stream_limit=8, bandwidth=500_000_000, hours=calendar.Hours()
            )
        ],
        profiles=profiles,
        laptops=120,
        image_bytes=12e9,
        deliveries=3,
        due_days=[0, 1, 2],
        lateness=Lateness(),
    )
    out = montecarlo.simulate(world, runs=200, seed=3)
    d = montecarlo.dates(out, np.arange(len(world.fleet)), world.fleet.status)
    ends = []
    for seed in range(60):
        truth = exact.truth(world, seed=100 + seed)
        ends.append(np.where(truth.aside, -np.inf, truth.ready).max())
    assert d.ready_p50 is not None and d.ready_p90 is not None
    span = d.ready_p50 - ARRIVAL
    assert abs(d.ready_p50 - np.quantile(ends, 0.5)) < 0.03 * span
    assert abs(d.ready_p90 - np.quantile(ends, 0.9)) < 0.05 * span
