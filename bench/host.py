"""What the host did during a measurement, for reading a noisy figure."""

from __future__ import annotations

import os
from pathlib import Path


def steal_seconds() -> float:
    """CPU time the hypervisor gave to other guests (``steal`` in /proc/stat), summed
    over the cores: on a shared VM it lands on whichever side is running, and explains
    a noisy round. 0 where there is no /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0
