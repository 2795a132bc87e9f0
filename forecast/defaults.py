"""What the forecast assumes of a step before any run has taught it (docs/forecast.md).

Each default is a spread, not a point: twenty evenly spaced quantiles of a log-normal
around the stated median (a quarter of it either way is common), so that a forecast
made on day one already has a P90 above its P50.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from forecast.world import StepDist
from provisioning.runs.states import STEP_NAMES

LINK_BPS = 110e6
"""A laptop's own link: 1 GbE carries about 117 MB/s of payload (docs/benchmarks.md)."""
READBACK_BPS = 400e6
"""Reading the written range back on the laptop (a SATA SSD; NVMe is faster)."""
SECONDS: dict[str, dict[str, float]] = {
    "identify": {"linux": 20, "windows": 20},
    "pick_disk": {"linux": 5, "windows": 5},
    "reboot": {"linux": 120, "windows": 420},
    "configure": {"linux": 300, "windows": 600},
    "gate": {"linux": 60, "windows": 90},
}
"""Median seconds of the timed steps per OS family (Windows' first boot runs Setup's
specialize pass; configuring it over WinRM takes longer than one Ansible run)."""
P_RETRY = {"identify": 0.02, "stream": 0.02, "installers": 0.02, "configure": 0.03}
"""A retryable failure per attempt (a dropped link, a laptop slow to answer)."""
P_FATAL = 0.003
"""A failure no retry helps, per attempt of any step (a checksum, a disk)."""
SPREAD = 0.25


def spread(median: float, *, sigma: float = SPREAD, points: int = 20) -> np.ndarray:
    normal = NormalDist()
    z = np.asarray([normal.inv_cdf((i + 0.5) / points) for i in range(points)])
    return median * np.exp(sigma * z)


def step(name: str, *, os_family: str, raw_bytes: float) -> StepDist:
    """The default of one step for one OS family (``raw_bytes``: the image's raw size,
    which the readback reads)."""
    family = os_family if os_family in ("linux", "windows") else "linux"
    if name in ("stream", "installers"):
        samples = spread(LINK_BPS, sigma=0.1)
    elif name == "verify":
        samples = spread(max(5.0, raw_bytes / READBACK_BPS))
    else:
        samples = spread(SECONDS[name][family])
    return StepDist(samples=samples, p_retry=P_RETRY.get(name, 0.0), p_fatal=P_FATAL)


def steps(*, os_family: str, raw_bytes: float) -> tuple[StepDist, ...]:
    return tuple(step(name, os_family=os_family, raw_bytes=raw_bytes) for name in STEP_NAMES)
