"""The forecast shares the engine's rules: change one in its one place
(``provisioning/pipeline/scheduling.py``) and both the engine's decision and the
forecast move."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from core.db import Database
from forecast import montecarlo, rules
from inventory.models import Device, Site
from provisioning.pipeline import bandwidth, scheduling
from provisioning.pipeline.config import EngineConfig
from provisioning.pipeline.engine import JobEngine
from provisioning.pipeline.scheduling import Candidate, SiteKey
from provisioning.runs.models import ProvisioningRun, RunStatus
from tests.forecast.worlds import fixed
from tests.support.factories import World


@contextmanager
def rule_changed(rule: Callable[..., Any], variant: Callable[..., Any]) -> Iterator[None]:
    """Replace ``rule``'s body, in place: every caller, whatever name it imported it
    under, now runs ``variant``'s code (what editing scheduling.py would do)."""
    saved = rule.__code__
    rule.__code__ = variant.__code__
    try:
        yield
    finally:
        rule.__code__ = saved


def _admit_one_below_the_limit(
    candidates: Sequence[Candidate],
    *,
    free: int,
    site_limits: Mapping[SiteKey, int],
    default_limit: int,
    live: Mapping[SiteKey, Iterable[int]],
) -> list[int]:
    # The admit rule, with a site's limit counted one lower.
    running = {site: set(ids) for site, ids in live.items()}
    taken: list[int] = []
    for c in candidates:
        if len(taken) >= free:
            break
        at_site = running.setdefault(c.site_id, set())
        if len(at_site - {c.run_id}) >= site_limits.get(c.site_id, default_limit) - 1:
            continue
        at_site.add(c.run_id)
        taken.append(c.run_id)
    return taken


def _rerate_keeping_a_share_back(
    site_rate: int, granted: Mapping[int, int], mine: Iterable[int]
) -> dict[int, int]:
    # The rerate rule, with one share's worth of the rate never granted.
    shares = dict(granted)
    fair = site_rate // (max(1, len(shares)) + 1)
    out: dict[int, int] = {}
    for run_id in sorted(mine):
        if run_id not in shares:
            continue
        others = sum(v for k, v in shares.items() if k != run_id)
        new = max(0, min(fair, site_rate - others))
        shares[run_id] = new
        out[run_id] = new
    return out


def _claims(db: Database, world: World, tmp: Path) -> int:
    """Three runs queued at a site whose stream limit is 2: how many the engine claims."""
    with db.session() as s:
        site = s.exec(select(Site)).one()
        site.max_imaging_streams = 2
        s.add(site)
        for device in s.exec(select(Device)).all():
            assert device.id is not None
            s.add(ProvisioningRun(device_id=device.id, site_id=site.id, status=RunStatus.QUEUED))
    engine = JobEngine(db, EngineConfig(worker_id="w1", cache_dir=tmp))
    return len(engine.claim())


def test_a_changed_stream_limit_rule_moves_the_engine_and_the_forecast(
    db: Database, world: World, tmp_path: Path
) -> None:
    wave, _ = fixed(laptops=12, stream_limit=4)
    before = montecarlo.simulate(wave, runs=2, seed=1).ready.max()
    assert rules.live_limit(site_limit=4, workers=1) == 4
    with rule_changed(scheduling.admit, _admit_one_below_the_limit):
        assert _claims(db, world, tmp_path) == 1  # the engine: one run, not two
        assert rules.live_limit(site_limit=4, workers=1) == 3
        changed, _ = fixed(laptops=12, stream_limit=4)
        after = montecarlo.simulate(changed, runs=2, seed=1).ready.max()
    # 12 laptops in rounds of 3 instead of 4: a fourth round.
    assert after > before


def test_the_engine_claims_up_to_the_limit_under_the_rule_as_it_is(
    db: Database, world: World, tmp_path: Path
) -> None:
    assert _claims(db, world, tmp_path) == 2


def test_a_changed_share_rule_moves_the_bandwidth_loop_and_the_forecast() -> None:
    wave, _ = fixed(laptops=8, stream_limit=4, bandwidth=200_000_000)
    before = montecarlo.simulate(wave, runs=2, seed=1).ready.max()
    # What the engine's bandwidth loop grants two streams of a 1000 B/s site: the rule
    # under the name the loop imported it as (not one the module exports).
    loop_rerate = bandwidth.rerate  # type: ignore[attr-defined]
    assert loop_rerate(1000, {1: 0, 2: 0}, [1, 2]) == {1: 500, 2: 500}
    with rule_changed(scheduling.rerate, _rerate_keeping_a_share_back):
        assert loop_rerate(1000, {1: 0, 2: 0}, [1, 2]) == {1: 333, 2: 333}
        changed, _ = fixed(laptops=8, stream_limit=4, bandwidth=200_000_000)
        assert changed.sites[0].shares[4] == pytest.approx(200_000_000 // 5)
        after = montecarlo.simulate(changed, runs=2, seed=1).ready.max()
    assert after > before


def test_retries_and_backoffs_come_from_the_engine_rules() -> None:
    # stream: 3 attempts, so two retryable failures are retried; backoffs 2 s then 4 s.
    table = rules.retry_table("stream")
    assert table.allowed == scheduling.STEP_RULES["stream"].max_attempts == 3
    assert list(table.waited) == [0.0, 2.0, 6.0]


def test_phases_split_at_the_steps_that_hold_a_bandwidth_share() -> None:
    names = [[rules.STEP_NAMES[i] for i in p.steps] for p in rules.phases()]
    assert names == [
        ["identify", "pick_disk"],
        ["stream"],
        ["verify"],
        ["installers"],
        ["reboot", "configure", "gate"],
    ]
    assert [p.sending for p in rules.phases()] == [False, True, False, True, False]


def test_the_configure_wave_rule_decides_whether_the_leader_waits() -> None:
    table = rules.wave_wait_table(4, window=1.0)
    # Alone, the leader does not wait; with others on their way, up to the window.
    assert list(table) == [0.0, 0.0, 1.0, 1.0, 1.0]
