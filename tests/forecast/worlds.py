"""Small worlds checked by hand, and the index the answers need beside them."""

from __future__ import annotations

from datetime import UTC, datetime, time

import numpy as np

from forecast import calendar, scenario
from forecast.inputs import Index, SiteSettings
from forecast.world import Lateness, Profile, Status, StepDist, World
from provisioning.pipeline.scheduling import SENDING_STEPS
from provisioning.runs.states import STEP_NAMES

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
"""A Monday, 07:00 in Paris: deliveries due today are at the bench at 09:00 (t0 + 7200 s)."""
ARRIVAL = 7200.0
# identify 10 + pick_disk 5 + verify 60 + reboot 100 + configure 200 + gate 30 = 405 s of
# timed steps; a 10 GB stream at the laptop's own 110 MB/s takes 90.909 s.
STEPS: dict[str, float] = {
    "identify": 10,
    "pick_disk": 5,
    "verify": 60,
    "reboot": 100,
    "configure": 200,
    "gate": 30,
}
IMAGE = 10e9
ONE_LAPTOP = 405 + IMAGE / 110e6  # 495.909 s
MIXED_MEDIANS = {
    "identify": 25.0,
    "pick_disk": 4.0,
    "verify": 70.0,
    "reboot": 380.0,
    "configure": 700.0,
    "gate": 80.0,
}


def fixed(
    *,
    laptops: int,
    stream_limit: int,
    bandwidth: int | None = None,
    slots: int = 100,
    deliveries: int = 1,
    hours: calendar.Hours | None = None,
) -> tuple[World, Index]:
    """Windows laptops (no configure waves) whose steps take exactly ``STEPS``, all due
    today, one site."""
    settings = SiteSettings(
        site_id=1,
        name="PAR",
        slots=slots,
        stream_limit=stream_limit,
        workers=1,
        parallel=16,
        bandwidth=bandwidth,
        hours=hours or calendar.Hours(always_open=True),
        tech_delay=1800.0,
    )
    world = scenario.wave(
        t0=T0,
        sites=[scenario.SiteSpec()],
        profiles=[scenario.fixed_profile(STEPS, os_family="windows")],
        laptops=laptops,
        image_bytes=IMAGE,
        deliveries=deliveries,
    )
    world = world.with_sites((settings.build(t0=T0),))
    world.fleet.site[:] = 0
    index = Index(
        t0=T0,
        device_ids=np.arange(1, laptops + 1),
        client_ids=np.ones(laptops, dtype=np.int64),
        delivery_ids=list(range(1, deliveries + 1)),
        delivery_clients=dict.fromkeys(range(1, deliveries + 1), 1),
        sites=[settings],
    )
    return world, index


def mixed(*, laptops: int = 240) -> World:
    """A seeded world that takes every path of the simulator: two sites (one capped,
    one open office hours), a learnt Windows profile with a contention term on three
    steps and failures, a default Linux profile (configure waves), installers that
    send, late deliveries, and laptops in every state (ready, dispatched, set aside,
    live at each step, failed, queued fresh or from a later step after a retry,
    expected, or here but not scanned). Its answers are pinned
    (tests/forecast/test_pinned.py): a change meant to be faster must not move them."""
    rng = np.random.default_rng(2026)
    windows = []
    for name in STEP_NAMES:
        if name in SENDING_STEPS:
            samples = 95e6 * np.exp(0.15 * rng.standard_normal(300))
        else:
            samples = MIXED_MEDIANS[name] * np.exp(0.35 * rng.standard_normal(300))
        p_retry, p_fatal = {"identify": (0.03, 0.002), "stream": (0.04, 0.004)}.get(
            name, (0.02, 0.003)
        )
        beta = {"stream": 0.3, "verify": 0.5, "configure": 0.8}.get(name, 0.0)
        windows.append(
            StepDist(
                samples=samples, p_retry=p_retry, p_fatal=p_fatal, learned_from=300, contention=beta
            )
        )
    profiles = [
        Profile(name="learnt/windows", os_family="windows", steps=tuple(windows)),
        scenario.default_profile(os_family="linux", raw_bytes=12e9),
    ]
    office = calendar.Hours(week=(*((time(7), time(21)),) * 5, None, None), cutoffs=(time(18),))
    world = scenario.wave(
        t0=T0,
        sites=[
            scenario.SiteSpec(
                name="PAR", slots=60, stream_limit=12, workers=1, bandwidth=600_000_000
            ),
            scenario.SiteSpec(name="LYO", slots=40, stream_limit=8, workers=1, hours=office),
        ],
        profiles=profiles,
        laptops=laptops,
        image_bytes=12e9,
        deliveries=12,
        due_days=[i % 3 for i in range(12)],
        lateness=Lateness(pmf=np.asarray([0.6, 0.25, 0.1, 0.05])),
    )
    f = world.fleet
    f.sent_bytes[::3, STEP_NAMES.index("installers")] = 2e9
    n = len(f)
    # The first two deliveries are in: their laptops in every state but expected.
    states = [
        Status.READY,
        Status.DISPATCHED,
        Status.ASIDE,
        Status.RUNNING,
        Status.RUNNING,
        Status.RUNNING,
        Status.FAILED,
        Status.WAITING,
        Status.WAITING,
    ]
    first = np.flatnonzero(f.delivery < 2)
    for i, j in enumerate(first):
        state = states[i % len(states)]
        f.status[j] = state
        f.order[j] = float(i)
        if state in (Status.READY, Status.DISPATCHED):
            f.ready_at[j] = -3600.0 + 60 * i
            if state == Status.DISPATCHED:
                f.dispatched_at[j] = -600.0
        elif state == Status.RUNNING:
            f.step[j] = i % len(STEP_NAMES)
            f.elapsed[j] = 5.0 * i
            f.progress[j] = 1e9 if STEP_NAMES[f.step[j]] in SENDING_STEPS else 0.0
            f.retries[j] = i % 2
        elif state == Status.FAILED:
            f.step[j] = i % len(STEP_NAMES)
            f.retry_at[j] = 100.0 * i
            f.retries[j] = i % 2
        elif state == Status.WAITING:
            f.step[j] = (i % 3) * 2
            f.retries[j] = int(f.step[j] > 0 and i % 2 == 0)
    # The third is at one site's door, not scanned yet; the fourth is a day late.
    f.here[f.delivery == 2] = True
    f.late_at_least[f.delivery == 3] = 1
    assert n == laptops
    return world
