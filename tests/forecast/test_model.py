"""What the lab wave taught the model (docs/forecast.md, "How it is computed"), each on a
case checked by hand: a technician's retry claims before laptops that come later, a
retried run queued or live does not fail again and starts where it failed, a step
already under way is forecast from its elapsed time, recent attempts weigh more."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from forecast import learn, montecarlo, scenario
from forecast.simulate import remaining
from forecast.world import Lateness, Status, StepDist, World
from provisioning.runs.states import STEP_NAMES
from tests.forecast.worlds import ARRIVAL, IMAGE, STEPS, fixed

STREAM = STEP_NAMES.index("stream")
CONFIGURE = STEP_NAMES.index("configure")
GATE = STEP_NAMES.index("gate")
STREAM_S = IMAGE / 110e6  # 90.909 s at the laptop's own 110 MB/s
FROM_STREAM = STREAM_S + 60 + 100 + 200 + 30  # stream, verify, reboot, configure, gate


def _with_failing(world: World, laptops: list[int], *, step: int = -1) -> World:
    """``laptops`` get a second profile, the fixed one whose ``step`` (the stream by
    default) always fails for good on a fresh draw; nobody is set aside."""
    step = STREAM if step < 0 else step
    base = world.profiles[0]
    steps = list(base.steps)
    steps[step] = replace(steps[step], p_fatal=1.0)
    failing = replace(base, name="fixed/failing", steps=tuple(steps))
    world.fleet.profile[laptops] = 1
    sites = tuple(replace(s, give_up=0.0) for s in world.sites)
    return replace(world, profiles=(base, failing), sites=sites)


def test_a_technicians_retry_claims_before_a_laptop_that_comes_the_next_day() -> None:
    # One live run. Laptop 0 is queued now; its stream fails (half a stream, 45.455 s,
    # after identify and pick_disk, 15 s: failed at 60.455 s); the technician retries it
    # 1,800 s later, from the stream: 90.909 + 390 = 480.909 s, ready at 2,341.364 s.
    # Laptop 1 comes tomorrow at 09:00 (t0 + 26 h): it must not take the place first
    # (the retried run is older; walking it after tomorrow's laptop put it a day late).
    world, _ = fixed(laptops=2, stream_limit=1)
    world = _with_failing(world, [0])
    fleet = world.fleet
    fleet.status[0] = Status.WAITING
    fleet.due_day[1] = 1
    world = replace(world, lateness=Lateness(pmf=np.asarray([1.0])))
    out = montecarlo.simulate(world, runs=3, seed=1)
    by_hand = 15 + STREAM_S / 2 + 1800 + FROM_STREAM
    assert out.ready[:, 0] == pytest.approx(np.full(3, by_hand), abs=0.01)
    assert out.ready[:, 1] == pytest.approx(np.full(3, 26 * 3600 + 495.909), abs=0.01)


def test_a_queued_retry_starts_where_it_failed_and_does_not_fail_again() -> None:
    # Laptop 0's run failed at the stream and a technician retried it: it is queued from
    # the stream. Its profile fails every fresh stream, but this retry cleared the
    # fault: ready at 90.909 + 390 = 480.909 s, not from identify, never set aside.
    world, _ = fixed(laptops=1, stream_limit=1)
    world = _with_failing(world, [0])
    fleet = world.fleet
    fleet.status[0] = Status.WAITING
    fleet.step[0] = STREAM
    fleet.retries[0] = 1
    out = montecarlo.simulate(world, runs=3, seed=1)
    assert not out.aside.any()
    assert out.ready[:, 0] == pytest.approx(np.full(3, FROM_STREAM), abs=0.01)


def test_a_live_retry_does_not_fail_again() -> None:
    # A retried run, live at the start of its readback; its profile fails every fresh
    # gate, but not this retry: 60 + 100 + 200 + 30 = 390 s, never set aside.
    world, _ = fixed(laptops=1, stream_limit=1)
    world = _with_failing(world, [0], step=GATE)
    fleet = world.fleet
    fleet.status[0] = Status.RUNNING
    fleet.step[0] = STEP_NAMES.index("verify")
    fleet.retries[0] = 1
    out = montecarlo.simulate(world, runs=3, seed=1)
    assert not out.aside.any()
    assert out.ready[:, 0] == pytest.approx(np.full(3, 390.0), abs=0.01)
    # Its first run would have failed at the gate and waited for a technician.
    fleet.retries[0] = 0
    again = montecarlo.simulate(world, runs=3, seed=1)
    assert (again.ready[:, 0] > 1800).all()


def test_the_time_left_in_a_step_is_drawn_from_the_steps_that_last_that_long() -> None:
    # Draws of a whole step: 100, 200, 300, 400 s; 250 s in. Those longer leave 50 and
    # 150 s; the runs whose own draw is shorter take those in turn (50, then 150).
    drawn = np.asarray([100.0, 200.0, 300.0, 400.0])
    assert remaining(drawn, 250.0).tolist() == [50.0, 150.0, 50.0, 150.0]
    # Not started: the whole draw; past every draw: a tenth of it.
    assert remaining(drawn, 0.0).tolist() == drawn.tolist()
    assert remaining(drawn, 500.0).tolist() == [10.0, 20.0, 30.0, 40.0]


def test_a_laptop_mid_configure_is_forecast_from_its_elapsed_time() -> None:
    # Configure takes 100, 200, 300 or 400 s (evenly); this laptop is 250 s into it, so
    # 50 or 150 s are left, then the 30 s gate: ready at 80 or 180 s, each in about
    # half the runs (before: a fresh draw minus what was spent, at least a tenth of it,
    # so 10 or 20 s left half the time).
    profile = scenario.fixed_profile({k: float(v) for k, v in STEPS.items()}, os_family="windows")
    steps = list(profile.steps)
    steps[CONFIGURE] = StepDist(samples=np.asarray([100.0, 200.0, 300.0, 400.0]))
    world, _ = fixed(laptops=1, stream_limit=1)
    world = replace(world, profiles=(replace(profile, steps=tuple(steps)),))
    fleet = world.fleet
    fleet.status[0] = Status.RUNNING
    fleet.step[0] = CONFIGURE
    fleet.elapsed[0] = 250.0
    out = montecarlo.simulate(world, runs=400, seed=5)
    ready = out.ready[:, 0]
    assert set(np.round(ready, 6).tolist()) == {80.0, 180.0}
    assert 0.4 < float(np.mean(ready == 80.0)) < 0.6


def test_recent_attempts_weigh_more() -> None:
    # Four attempts at t = 0 (16-19 s: a lab's first gates), two at t = 40 (11, 12 s).
    # Weight halves every quarter of the 40 s spanned: the first four weigh 1/16 each,
    # 0.25 in all against 2. Sorted: 11 (1), 12 (1), 16, 17, 18, 19 (1/16 each): the
    # cumulative share reaches 1/2.25 = 0.444 at 11 and 2/2.25 = 0.889 at 12, so the
    # median is 12 s and 200 evenly spaced quantiles hold 16 s or more from the 178th
    # on (p = 177.5/200 = 0.8875 < 0.889 still picks 12): 22 of them.
    values = np.asarray([16.0, 18.0, 19.0, 17.0, 11.0, 12.0])
    started = np.asarray([0.0, 0.0, 0.0, 0.0, 40.0, 40.0])
    samples = learn.recent_weighted(values, started, points=200)
    assert float(np.median(samples)) == 12.0
    assert int(np.sum(samples >= 16.0)) == 22
    # All at once: each counts the same (the plain empirical distribution).
    even = learn.recent_weighted(values, np.zeros(6), points=6)
    assert sorted(even.tolist()) == sorted(values.tolist())


def test_profiles_learn_the_recent_attempts_from_the_run_log() -> None:
    gate = STEP_NAMES.index("gate")
    records = [
        learn.StepRecord("m/linux", "linux", gate, s, "ok", at=at)
        for s, at in (
            (16.0, 0.0),
            (18.0, 0.0),
            (19.0, 0.0),
            (17.0, 0.0),
            (11.0, 40.0),
            (12.0, 40.0),
        )
    ]
    got = learn.profiles(records, {"m/linux": ("linux", 8e6)}).profiles["m/linux"]
    assert float(np.median(got.steps[gate].samples)) == 12.0


def test_a_learnt_configure_time_already_holds_the_waves_wait() -> None:
    # Three Linux laptops come at 09:00 (t0 + 7,200 s), start together (3 live runs) and
    # reach configure together:
    # the last one walked sees two others on their way and, with the stated defaults,
    # waits the engine's wave window (1 s): 495.909 s twice, then 496.909 s. A
    # configure time learnt from the run log was measured around that wait (the leader
    # waits inside its configure step): nobody waits on top of it.
    world, _ = fixed(laptops=3, stream_limit=3)
    linux = scenario.fixed_profile({k: float(v) for k, v in STEPS.items()}, os_family="linux")
    one = ARRIVAL + STREAM_S + 405
    for learned, by_hand in ((0, [one, one, one + 1.0]), (12, [one, one, one])):
        steps = list(linux.steps)
        steps[CONFIGURE] = replace(steps[CONFIGURE], learned_from=learned)
        w = replace(world, profiles=(replace(linux, steps=tuple(steps)),), wave_window=1.0)
        out = montecarlo.simulate(w, runs=2, seed=1)
        assert sorted(out.ready[0].tolist()) == pytest.approx(by_hand, abs=0.01)


def test_a_run_queued_from_a_later_step_may_still_fail_unless_a_technician_retried_it() -> None:
    # Queued from the readback (its worker went away there): 60 + 100 + 200 + 30 = 390 s
    # when a technician's retry cleared the fault; a first run whose gate always fails
    # still fails there and waits for a technician (1,800 s).
    world, _ = fixed(laptops=1, stream_limit=1)
    world = _with_failing(world, [0], step=GATE)
    fleet = world.fleet
    fleet.status[0] = Status.WAITING
    fleet.step[0] = STEP_NAMES.index("verify")
    fleet.retries[0] = 1
    out = montecarlo.simulate(world, runs=3, seed=1)
    assert out.ready[:, 0] == pytest.approx(np.full(3, 390.0), abs=0.01)
    fleet.retries[0] = 0
    again = montecarlo.simulate(world, runs=3, seed=1)
    assert (again.ready[:, 0] > 1800).all()
