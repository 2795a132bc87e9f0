"""What-if and capacity answers against cases checked by hand (the arithmetic is in
each test), and the bottleneck named for what holds a small wave back."""

from __future__ import annotations

from datetime import UTC, datetime, time

import numpy as np
import pytest

from forecast import answers, calendar, capacity, montecarlo
from forecast.errors import BadQuestion
from forecast.world import World
from tests.forecast.worlds import ARRIVAL, ONE_LAPTOP, fixed


def _last(world: World) -> float:
    out = montecarlo.simulate(world, runs=2, seed=1)
    return float(out.ready.max())


def test_more_live_runs_end_the_wave_sooner_by_a_round() -> None:
    # 10 laptops, 4 live runs: rounds of 4, 4, 2 (3 rounds of 495.909 s after 09:00).
    # With 5: rounds of 5 and 5, two rounds.
    world, index = fixed(laptops=10, stream_limit=4)
    assert _last(world) == pytest.approx(ARRIVAL + 3 * ONE_LAPTOP)
    changed, _ = answers.apply(
        world, index, answers.Changes(sites=[answers.SiteChange(site_id=1, stream_limit=5)])
    )
    assert _last(changed) == pytest.approx(ARRIVAL + 2 * ONE_LAPTOP)  # 8191.8 s


def test_another_bandwidth_cap_changes_each_streams_share() -> None:
    # 4 laptops, 4 live runs, one round. At 200 MB/s each stream gets 50 MB/s: 200 s of
    # stream, 405 + 200 = 605 s. Uncapped, each goes at its own 110 MB/s: 495.909 s.
    world, index = fixed(laptops=4, stream_limit=4, bandwidth=200_000_000)
    assert _last(world) == pytest.approx(ARRIVAL + 605)
    changed, _ = answers.apply(
        world, index, answers.Changes(sites=[answers.SiteChange(site_id=1, uncapped=True)])
    )
    assert _last(changed) == pytest.approx(ARRIVAL + ONE_LAPTOP)


def test_longer_hours_let_the_second_batch_in_the_same_evening() -> None:
    # 6 laptops, 3 slots, open 08:00-18:00, carriers at 17:00: the first 3 leave at
    # 17:00, the next 3 are scanned then and ready 495.909 s later (t0 + 10 h + ...).
    # Closing at 16:00 instead (carriers still at 17:00, on open days): the slots free
    # at 17:00 with the site closed, so the next 3 wait for 08:00 the next day
    # (t0 + 25 h) and are ready 495.909 s after.
    world, index = fixed(laptops=6, stream_limit=8, slots=3, hours=calendar.Hours())
    assert _last(world) == pytest.approx(10 * 3600 + ONE_LAPTOP)
    shorter, _ = answers.apply(
        world,
        index,
        answers.Changes(sites=[answers.SiteChange(site_id=1, close_at=time(16))]),
    )
    assert _last(shorter) == pytest.approx(25 * 3600 + ONE_LAPTOP)


def test_a_second_site_takes_half_the_deliveries_not_in_yet() -> None:
    # 2 deliveries of 5 laptops, 4 live runs: rounds of 4, 4, 2 at one site. A second
    # site with 4 live runs takes the second delivery: 5 laptops each, rounds of 4 and
    # 1 at each, two rounds.
    world, index = fixed(laptops=10, stream_limit=4, deliveries=2)
    changed, settings = answers.apply(
        world,
        index,
        answers.Changes(second_site=answers.SecondSite(slots=100, stream_limit=4, share=0.5)),
    )
    assert [s.name for s in settings] == ["PAR", "second site"]
    assert list(np.bincount(changed.fleet.site)) == [5, 5]
    assert _last(changed) == pytest.approx(ARRIVAL + 2 * ONE_LAPTOP)


def test_a_change_to_a_site_that_is_not_in_the_wave_is_refused() -> None:
    world, index = fixed(laptops=2, stream_limit=2)
    with pytest.raises(BadQuestion):
        answers.apply(world, index, answers.Changes(sites=[answers.SiteChange(site_id=99)]))


def test_the_bottleneck_is_what_doubling_helps_most() -> None:
    # 40 laptops through 2 live runs, 100 slots, open day and night: doubling the live
    # runs halves the wave; nothing else changes it.
    world, index = fixed(laptops=40, stream_limit=2)
    out = montecarlo.simulate(world, runs=8, seed=1)
    verdicts = answers.bottlenecks(world, index, out, seed=1)
    assert verdicts[0]["constraint"] == "streams"
    gains = verdicts[0]["gain_hours_if_doubled"]
    # 20 rounds of 495.909 s become 10: 10 * 495.909 s = 1.38 h sooner.
    assert gains["streams"] == pytest.approx(10 * ONE_LAPTOP / 3600, abs=0.01)
    assert gains["slots"] == 0.0
    assert verdicts[0]["evidence"]["hours_waiting_for_a_live_run"] > 0


def test_capacity_arithmetic_for_a_small_wave() -> None:
    # 100 Linux laptops of an 11 GB image in 1 day from Monday 00:00 UTC (Paris: open
    # 08:00-18:00, carriers at 17:00): one collection, so 100 slots. Scanned from 08:00,
    # ready by 17:00: a 9 h window, 100 / 9 = 11.1 laptops an hour. One laptop: identify
    # 20 + pick_disk 5 + verify 11e9 / 400e6 = 27.5 + reboot 120 + configure 300 + gate
    # 60 = 532.5 s, and 100 s of stream (11 GB at 110 MB/s): 632.5 s. Live runs =
    # ceil(11.11 * 632.5 / 3600) = ceil(1.95) = 2. Bandwidth: 100 * 11 GB within
    # 9 - 532.5 / 3600 = 8.852 h, at 80 %: 1.1e12 / 31867.5 s / 0.8 = 43.15 MB/s.
    # Workers: max(ceil(2 / 16), ceil(43 MB/s / 1300 MB/s)) = 1.
    q = capacity.CapacityQuestion(
        laptops=100,
        image_bytes=11e9,
        days=1,
        os_family="linux",
        start=datetime(2026, 12, 7, tzinfo=UTC),
    )
    a = capacity.capacity(q, simulate=False)
    assert a.slots == 100
    assert a.live_runs == 2
    assert a.bandwidth_bps == pytest.approx(1.1e12 / (8.852083 * 3600) / 0.8, rel=1e-4)
    assert a.workers == 1
    assert any("slots = ceil(100 / 1) = 100" in line for line in a.arithmetic)
    assert any("linux laptops" in line for line in a.assumptions)


def test_capacity_is_checked_by_the_simulator() -> None:
    q = capacity.CapacityQuestion(
        laptops=60, image_bytes=5e9, days=2, start=datetime(2026, 12, 7, tzinfo=UTC)
    )
    a = capacity.capacity(q)
    assert a.check["meets_deadline_p90"] is True
    assert a.slots >= 30  # two collections: at least ceil(60 / 2)


def test_a_capacity_question_with_no_collection_is_refused() -> None:
    sunday = datetime(2026, 12, 6, tzinfo=UTC)
    with pytest.raises(BadQuestion):
        capacity.capacity(
            capacity.CapacityQuestion(laptops=10, image_bytes=1e9, days=1, start=sunday)
        )
