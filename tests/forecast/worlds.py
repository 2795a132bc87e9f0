"""Small worlds checked by hand, and the index the answers need beside them."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from forecast import calendar, scenario
from forecast.inputs import Index, SiteSettings
from forecast.world import World

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
"""A Monday, 07:00 in Paris: deliveries due today are at the bench at 09:00 (t0 + 7200 s)."""
ARRIVAL = 7200.0
# identify 10 + pick_disk 5 + verify 60 + reboot 100 + configure 200 + gate 30 = 405 s of
# timed steps; a 10 GB stream at the laptop's own 110 MB/s takes 90.909 s.
STEPS = {"identify": 10, "pick_disk": 5, "verify": 60, "reboot": 100, "configure": 200, "gate": 30}
IMAGE = 10e9
ONE_LAPTOP = 405 + IMAGE / 110e6  # 495.909 s


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
