"""The contention term (forecast/contention.py): a step's cost as a function of how many
runs are under way beside it, learnt from synthetic run logs where it must change the
forecast, and nothing learnt where the log does not show it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from core.db import Database
from forecast import contention, learn, montecarlo, scenario
from forecast.world import World
from provisioning.runs.states import STEP_NAMES
from tests.forecast.worlds import ARRIVAL, IMAGE, STEPS, fixed
from tests.support import factories

GATE = STEP_NAMES.index("gate")
STREAM_S = IMAGE / 110e6


def test_concurrency_is_the_time_weighted_number_under_way_per_site() -> None:
    # [0, 10) and [0, 10) and [5, 15): the first two see 2 for 5 s then 3 for 5 s
    # (2.5); the third 3 for 5 s then itself alone for 5 s (2.0). Another site's
    # attempt at the same time counts for nobody here; a zero-length attempt counts
    # what is under way when it happens.
    got = contention.concurrency(
        np.asarray([0.0, 0.0, 5.0, 0.0, 7.0]),
        np.asarray([10.0, 10.0, 10.0, 10.0, 0.0]),
        [1, 1, 1, 2, 1],
    )
    assert got.tolist() == pytest.approx([2.5, 2.5, 2.0, 1.0, 4.0])
    # One run's steps back to back: an end and the next start at one instant are one run.
    chain = contention.concurrency(np.asarray([0.0, 4.0]), np.asarray([4.0, 6.0]), [0, 0])
    assert chain.tolist() == [1.0, 1.0]


def _gate_log(
    alone: list[float], together: list[float], *, per_round: int
) -> list[learn.StepRecord]:
    """Gates run one at a time (``alone``, 100 s apart), then in rounds of
    ``per_round`` started together (``together``, a round every 500 s)."""
    records = [
        learn.StepRecord("m/linux", "linux", GATE, s, "ok", at=100.0 * i)
        for i, s in enumerate(alone)
    ]
    for i, s in enumerate(together):
        at = 10_000.0 + 500.0 * (i // per_round)
        records.append(learn.StepRecord("m/linux", "linux", GATE, s, "ok", at=at))
    return records


ALONE = [10.0, 10.4, 9.7, 10.2, 9.9, 10.1]
FOUR = [40.0, 41.0, 39.0, 40.5, 39.5, 40.2, 40.8, 39.8, 40.1, 39.6, 40.3, 40.4]


def test_a_step_four_times_slower_beside_three_others_learns_a_power_of_one() -> None:
    learned = learn.profiles(_gate_log(ALONE, FOUR, per_round=4), {"m/linux": ("linux", 8e6)})
    gate = learned.profiles["m/linux"].steps[GATE]
    assert gate.contention == pytest.approx(1.0, abs=0.05)
    # The samples are a gate alone (about 10 s), not the mix (mostly 40 s).
    assert float(np.median(gate.samples)) == pytest.approx(10.0, abs=0.5)
    assert "concurrency^1.00" in learned.sources["m/linux"]["gate"]


@pytest.mark.parametrize(
    "log",
    [
        # The same cost whatever the company: nothing to learn.
        _gate_log([10.0, 11.0, 9.0, 10.5, 9.5, 10.0], [10.2, 9.8, 10.6, 9.4] * 3, per_round=4),
        # Every attempt beside three others: no spread, no slope can be told.
        _gate_log([], FOUR, per_round=4),
        # Too few attempts.
        _gate_log([10.0, 10.1], [40.0, 40.5, 39.5, 40.1], per_round=4),
        # Noise as wide as the difference: not clear of it.
        _gate_log([5.0, 30.0, 12.0, 40.0, 8.0, 25.0], [6.0, 35.0, 20.0, 9.0] * 3, per_round=4),
    ],
)
def test_no_term_where_the_log_does_not_show_one(log: list[learn.StepRecord]) -> None:
    gate = learn.profiles(log, {"m/linux": ("linux", 8e6)}).profiles["m/linux"].steps[GATE]
    assert gate.contention == 0.0


def test_a_slow_model_is_not_mistaken_for_a_busy_hour() -> None:
    # Model A (10 s) ran alone, model B (40 s) ran four at a time: the difference is
    # the model's, within each model nothing changes with the company it had.
    records = (
        [
            learn.StepRecord("a/linux", "linux", GATE, 10.0 + 0.1 * (i % 3), "ok", at=100.0 * i)
            for i in range(8)
        ]
        + [
            learn.StepRecord("b/linux", "linux", GATE, 40.0 + 0.1 * (i % 3), "ok", at=5000.0)
            for i in range(4)
        ]
        + [
            learn.StepRecord(
                "b/linux", "linux", GATE, 40.0 + 0.1 * (i % 3), "ok", at=5500.0 + i * 100
            )
            for i in range(4)
        ]
    )
    got = learn.profiles(records, {"b/linux": ("linux", 8e6)}).profiles["b/linux"]
    assert got.steps[GATE].contention == 0.0


def _every_timed_step(world: World, beta: float) -> World:
    profile = world.profiles[0]
    steps = tuple(
        d if name in ("stream", "installers") else replace(d, contention=beta)
        for name, d in zip(STEP_NAMES, profile.steps, strict=True)
    )
    return replace(world, profiles=(replace(profile, steps=steps),))


def test_four_runs_started_together_each_go_four_times_slower_with_a_power_of_one() -> None:
    # Four laptops at 09:00, four live places: every timed step (15 s before the
    # stream, verify 60, then reboot + configure + gate 330) beside three others, at
    # a power of one, takes 4 times as long; the stream (no term) 90.909 s:
    # 60 + 90.909 + 240 + 1320 = 1710.909 s, for every one of the four alike
    # (whichever the walk reaches first). With no term: 495.909 s.
    world, _ = fixed(laptops=4, stream_limit=4)
    assert world.sites[0].live == 4
    plain = montecarlo.simulate(world, runs=2, seed=1).ready[0]
    assert plain.tolist() == pytest.approx([ARRIVAL + 405 + STREAM_S] * 4, abs=0.01)
    slowed = montecarlo.simulate(_every_timed_step(world, 1.0), runs=2, seed=1).ready[0]
    assert slowed.tolist() == pytest.approx([ARRIVAL + 4 * 405 + STREAM_S] * 4, abs=0.01)


def test_a_laptop_alone_is_forecast_at_what_the_log_says_a_gate_alone_costs() -> None:
    # The log: gates alone about 10 s, beside three others about 40 s (mostly). One
    # laptop left: with the term its gate is forecast at ~10 s; the plain empirical
    # distribution of the same log (no term) would say ~40 s.
    log = _gate_log(ALONE, FOUR, per_round=4)
    gate = learn.profiles(log, {"m/linux": ("linux", 8e6)}).profiles["m/linux"].steps[GATE]
    world, _ = fixed(laptops=1, stream_limit=4)
    profile = world.profiles[0]
    with_term = list(profile.steps)
    with_term[GATE] = replace(gate, p_retry=0.0, p_fatal=0.0)
    mixed = np.asarray(ALONE + FOUR)
    without = list(profile.steps)
    without[GATE] = replace(gate, samples=mixed, contention=0.0, p_retry=0.0, p_fatal=0.0)
    before_gate = ARRIVAL + 405 - STEPS["gate"] + STREAM_S
    out = {}
    for name, steps in (("term", with_term), ("none", without)):
        w = replace(world, profiles=(replace(profile, steps=tuple(steps)),))
        ready = montecarlo.simulate(w, runs=200, seed=3).ready[:, 0]
        out[name] = float(np.median(ready)) - before_gate
    assert out["term"] == pytest.approx(10.0, abs=0.6)
    assert out["none"] > 35.0
    # And four together are forecast beside one another: ~40 s each.
    world4, _ = fixed(laptops=4, stream_limit=4)
    w4 = replace(world4, profiles=(replace(profile, steps=tuple(with_term)),))
    ready4 = montecarlo.simulate(w4, runs=200, seed=3).ready
    assert float(np.median(ready4)) - before_gate == pytest.approx(40.0, abs=2.5)


def test_a_simulated_history_without_contention_learns_none() -> None:
    # The wave benchmark's world: runs whose costs do not depend on each other (drawn
    # independently) over a day, many at once: no term is learnt from noise.
    rng = np.random.default_rng(5)
    starts = np.sort(rng.uniform(0, 20_000, 400))
    seconds = rng.lognormal(np.log(60.0), 0.3, 400)
    records = [
        learn.StepRecord("m/linux", "linux", GATE, float(s), "ok", at=float(a))
        for a, s in zip(starts, seconds, strict=True)
    ]
    gate = learn.profiles(records, {"m/linux": ("linux", 8e6)}).profiles["m/linux"].steps[GATE]
    assert gate.contention == 0.0
    assert scenario is not None


def test_the_run_log_says_where_each_attempt_ran(db: Database, world: factories.World) -> None:
    # Two laptops' gates at the same moment, one on a bench of the world's site and one
    # on another site's bench: each record carries its own site, so neither counts
    # the other as company.
    from datetime import timedelta

    from core.timeutil import utcnow
    from forecast import repository
    from inventory import service as inventory
    from inventory.schemas import BenchCreate, SiteCreate
    from provisioning.runs.models import ProvisioningRun, RunStatus, RunStepEvent

    start = utcnow() - timedelta(minutes=5)
    with db.session() as s:
        inventory.create_site(s, SiteCreate(code="LYS", name="Lyon"))
        far = inventory.create_bench(s, BenchCreate(site_code="LYS", code="L1", slots=4))
        here, there = factories.create_devices(
            s, delivery=world.acme_delivery, serials=["ST0001", "ST0002"]
        )
        here.bench_id, there.bench_id = world.bench.id, far.id
        for device in (here, there):
            run = ProvisioningRun(
                device_id=device.id or 0, client_id=device.client_id, status=RunStatus.SUCCEEDED
            )
            s.add(run)
            s.flush()
            for seq, (kind, at) in enumerate(
                (("step_started", start), ("step_done", start + timedelta(seconds=12)))
            ):
                s.add(
                    RunStepEvent(
                        run_id=run.id or 0, seq=seq, step="gate", kind=kind, message="", at=at
                    )
                )
        far_site = far.site_id
    with db.session(write=False) as s:
        records = repository.step_records(
            s, since=start - timedelta(minutes=1), bench_site=repository.bench_sites(s)
        )
    assert sorted(r.site for r in records) == sorted([world.bench.site_id, far_site])
    assert [r.seconds for r in records] == [12.0, 12.0]
    conc = contention.concurrency(
        np.asarray([r.at for r in records]),
        np.asarray([r.seconds for r in records]),
        [r.site for r in records],
    )
    assert conc.tolist() == [1.0, 1.0]


def test_a_laptop_whose_profile_learnt_no_power_is_not_scaled() -> None:
    """In a world where one profile learnt a contention power and another did not, the
    walk scales each phase of every laptop by sum(share * c ** beta): for the laptop
    without a power that must be 1 at any concurrency (its phase as drawn), not 0 (a
    phase that takes no time)."""
    from forecast.draws import PHASES
    from forecast.draws import contention as shares_of
    from tests.forecast.worlds import mixed

    world = mixed()
    beta, share = shares_of(world.profiles, world.fleet)
    learnt = [bool(any(d.contention for d in p.steps)) for p in world.profiles]
    assert any(learnt) and not all(learnt)  # the world mixes both
    plain = np.flatnonzero(~np.asarray(learnt)[world.fleet.profile])
    assert len(plain)
    for phase in PHASES:
        s = np.asarray(phase.steps)
        for c in (1.0, 4.0):
            scale = (share[np.ix_(plain, s)] * c ** beta[np.ix_(plain, s)]).sum(axis=1)
            np.testing.assert_allclose(scale, 1.0)
