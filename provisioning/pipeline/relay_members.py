"""The parts of a relay wave in the engine (``pipeline/relays.py``): what a run hands
its wave, the group it waits in, the source's pace, and how a member's outcome becomes
its step's error."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioning.errors import (
    Aborted,
    ChecksumMismatch,
    CommandFailed,
    ConnectFailed,
    DiskFull,
    ProvisioningError,
)
from provisioning.imaging.cache import CachedImage
from provisioning.imaging.pacing import TokenBucket
from provisioning.relay.wave import Wave
from provisioning.transports.base import SshEndpoint

if TYPE_CHECKING:
    from provisioning.pipeline.relays import RelayWaves


@dataclass
class MemberRequest:
    """One run's laptop, as its stream step hands it to the waves."""

    run_id: int
    image_id: int
    site_id: int
    endpoint: SshEndpoint
    disk: str
    cached: CachedImage
    cache_dir: Path
    timeout: float
    progress: Callable[[int, int], None]
    """(bytes verified, raw size): the run's progress; raises when it was aborted."""
    on_event: Callable[[dict[str, Any]], None]
    mark: Callable[[dict[str, Any] | None], None]
    """Records the run's place in its wave on its row (the bandwidth ledger reads it)."""
    bucket: TokenBucket | None = None
    """The run's share of its site's rate (None: uncapped)."""
    session: socket.socket | None = None
    """The worker's connected SSH socket to this PE: its local address is where the
    PE reaches the worker, so where the wave's source listens (``relay/address.py``)."""


@dataclass
class Member:
    req: MemberRequest
    name: str
    inbox: queue.Queue[tuple[str, Any]] = field(default_factory=queue.Queue)
    host: str = ""
    """The worker's address toward this laptop: where its wave's source listens."""
    done: bool = False
    carrier: bool | None = None
    added_at: float | None = None
    """When its relay was started (monotonic): the first-chunk bound counts from it."""
    received: bool = False
    """Its relay verified and wrote at least one chunk from the wave."""
    lost: str = ""
    """Why its relay last lost (or could not reach) an upstream, for the fallback's line."""


@dataclass
class Group:
    key: tuple[int, int]
    members: list[Member] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    wave: Wave | None = None
    closing: bool = False
    plain: bool = False
    """Left with one member (the others aborted): it streams plainly."""
    host: str = ""
    """Where its source listens: its first member's address toward the worker."""
    failed: str = ""

    def carrier(self) -> Member | None:
        live = [m for m in self.members if not m.done]
        return min(live, key=lambda m: m.req.run_id) if live else None


class WavePace:
    """What leaves the server: the test's or bench's hold first, then the carrier's
    share of the site's rate (uncapped: nothing)."""

    def __init__(self, waves: RelayWaves, group: Group) -> None:
        self.waves, self.group = waves, group

    def take(self, n: int) -> None:
        if self.waves.hold is not None:
            self.waves.hold.take(n)
        while not self.group.closing:
            carrier = self.group.carrier()
            bucket = carrier.req.bucket if carrier is not None else None
            if bucket is None:
                return
            try:
                bucket.take(n)
                return
            except Aborted:  # the carrier was aborted: the next one carries the wave
                time.sleep(0.25)
        raise OSError("the wave is over")


def describe(event: dict[str, Any]) -> str:
    fields = ", ".join(f"{k} {v}" for k, v in event.items() if k != "event")
    return f"relay {event.get('event')}: {fields}"[:300]


def error_of(reason: str) -> ProvisioningError:
    """A member's failure as the step's error: a laptop that went away may come back
    (retried, it resumes from its verified offset); a disk that lies or fills is fatal."""
    if "No space left" in reason:
        return DiskFull(reason)
    if "corrupt" in reason or "does not match" in reason:
        return ChecksumMismatch(f"relay: {reason}")
    if "stopped before" in reason or "ended first" in reason:
        return ConnectFailed(f"relay: {reason}")
    return CommandFailed(f"relay: {reason}")
