"""The engine's settings (``pipeline/worker.py`` reads them from the environment)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlmodel import Session

from images.models import Image
from inventory.models import Device
from inventory.states import TIMEOUT_OF, DeviceState
from provisioning.bootcontrol.base import BootControl, PeAccess
from provisioning.configure.plan import ConfigPlan, OsTarget

PlanBuilder = Callable[[Session, Device, Image, BootControl, PeAccess], tuple[OsTarget, ConfigPlan]]
"""``(session, device, image, boot control, PE access) -> (OsTarget, ConfigPlan)``: where
the installed OS answers and what to apply to it (default ``context.default_plan_builder``)."""


@dataclass
class EngineConfig:
    worker_id: str
    cache_dir: Path
    lease_seconds: float = 30.0
    poll_seconds: float = 0.5
    max_parallel: int = 16
    backoff_base: float = 2.0
    backoff_cap: float = 30.0
    sweep_seconds: float = 5.0
    pe_wait_seconds: float = 30.0
    """How long a run waiting for its laptop's PE stays unclaimed before another look
    (a PE's registration makes it claimable at once)."""
    share_seconds: float = 1.0
    """How often this worker re-reads its sites' streaming runs to re-rate its streams."""
    configure_wave_seconds: float = 1.0
    """How long the first Linux laptop reaching configure waits for others to join its
    ansible-runner run (``pipeline/waves.py``); 0 configures each on its own."""
    relay: bool = True
    """Relay imaging (``pipeline/relays.py``, docs/relay.md): the laptops of one image
    and site that reach the stream step together get one copy, relayed PE to PE
    (``MASTERLINE_WORKER_RELAY=0`` turns it off). A laptop alone streams plainly; so
    does a member that got no chunk in ``relay_first_chunk_seconds``."""
    relay_window_seconds: float = 60.0
    """How long the first laptop of a relay wave waits for others (it stops waiting as
    soon as every run of this worker on its way to the stream step has joined)."""
    relay_max_members: int = 32
    relay_chunk_bytes: int = 4 * 1024 * 1024
    """The chunk each relay checks against the manifest (``images.manifest``)."""
    relay_host: str = ""
    """The address the wave's source listens on; empty (the default): learned per
    laptop, the local address of the worker's SSH session to its PE."""
    relay_first_chunk_seconds: float = 60.0
    """A member whose relay verified no chunk this long after it started leaves its
    wave and streams plainly (an unreachable source, a firewall between laptops)."""
    relay_slow_ratio: float = 0.5
    """A member whose disk writes slower than this times the wave's median is moved to
    the tail (``relay.plan.SlowRule``); 0 never moves one."""
    step_timeouts: dict[str, float] = field(default_factory=dict)
    state_timeouts: dict[DeviceState, timedelta] = field(default_factory=lambda: dict(TIMEOUT_OF))
    plan_builder: PlanBuilder | None = None
