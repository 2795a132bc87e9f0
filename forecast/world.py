"""What the simulator is given: sites, laptop profiles, the fleet, delivery lateness.

Plain data (numpy arrays and frozen dataclasses), no database: the service builds it from
the tables (``forecast/inputs.py``), the benchmarks from a simulated history, the tests by
hand. Times are seconds since the forecast's ``t0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np

from forecast.calendar import Calendar
from provisioning.runs.states import STEP_NAMES

N_STEPS = len(STEP_NAMES)


class Status(IntEnum):
    EXPECTED = 0
    """On a ship notice, not yet at the site."""
    WAITING = 1
    """Scanned in (holds a bench slot), its run queued (from ``step``: a technician's
    retry restarts at the step that failed)."""
    RUNNING = 2
    """Its run is live at ``step`` since ``elapsed`` seconds (``progress`` bytes sent)."""
    FAILED = 3
    """Its run failed at ``step``; a technician retries it at ``retry_at``."""
    READY = 4
    """Ready since ``ready_at``, waiting for the carrier (holds its slot)."""
    DISPATCHED = 5
    """Gone, at ``dispatched_at``."""
    ASIDE = 6
    """Quarantined or retired: not in "every laptop" any more."""


@dataclass(frozen=True)
class StepDist:
    """One step for one profile: what an attempt costs, and how often it fails.

    ``samples`` are seconds for a timed step, and bytes per second achieved for a
    sending step (the laptop's own ceiling, before any site cap)."""

    samples: np.ndarray
    p_retry: float = 0.0
    """A retryable failure (connection dropped, timeout), per attempt."""
    p_fatal: float = 0.0
    """A failure no retry can help (checksum, disk), per attempt."""
    learned_from: int = 0
    """How many attempts these figures come from (0: the stated defaults)."""
    contention: float = 0.0
    """``beta``: an attempt beside ``c - 1`` others costs ``samples * c ** beta`` seconds
    (a sending step: its rate divided by that); ``samples`` are a run alone
    (``forecast/contention.py``). 0: no term learnt."""


@dataclass(frozen=True)
class Profile:
    """Laptops that behave alike: one hardware model with one OS family."""

    name: str
    os_family: str
    steps: tuple[StepDist, ...]


@dataclass(frozen=True)
class Site:
    name: str
    slots: int
    live: int
    """Runs the engine keeps live here (``rules.live_limit``)."""
    shares: np.ndarray
    """``shares[n]``: each stream's bytes per second when ``n`` send (``rules.share_table``)."""
    calendar: Calendar
    tech_delay: float = 1800.0
    """Seconds from a failed run to a technician's retry (counted while open)."""
    give_up: float = 0.1
    """Share of failed runs set aside (quarantined, retired) rather than retried."""
    max_retries: int = 2
    """Technician retries of one laptop before it is set aside."""


@dataclass(frozen=True)
class Lateness:
    """How many days after its expected date a delivery comes: ``pmf[k]`` for k days."""

    pmf: np.ndarray = field(default_factory=lambda: np.asarray([0.6, 0.25, 0.1, 0.05]))
    learned_from: int = 0


@dataclass
class Fleet:
    """Every laptop of the wave, as parallel arrays (one entry per laptop)."""

    site: np.ndarray
    profile: np.ndarray
    status: np.ndarray
    sent_bytes: np.ndarray
    """``(N, N_STEPS)``: bytes each step sends (sending steps; 0 elsewhere)."""
    order: np.ndarray
    """Claim order among the queued (the run id)."""
    step: np.ndarray
    elapsed: np.ndarray
    progress: np.ndarray
    due_day: np.ndarray
    """EXPECTED: the local day (0: t0's) its delivery is due."""
    late_at_least: np.ndarray
    """EXPECTED: days late it already is (it has not come yet)."""
    here: np.ndarray
    """EXPECTED, but its delivery is at the site (others of it were scanned in): it
    waits for a slot, not for a carrier."""
    delivery: np.ndarray
    """An index into the caller's deliveries (-1: none); laptops of one delivery arrive
    together."""
    retry_at: np.ndarray
    ready_at: np.ndarray
    dispatched_at: np.ndarray
    retries: np.ndarray
    """Technicians' retries of its run so far: a retried run is not drawn to fail again
    (the technician cleared what failed it)."""

    @classmethod
    def empty(cls, n: int) -> Fleet:
        z = np.zeros(n)
        return cls(
            site=np.zeros(n, dtype=np.int64),
            profile=np.zeros(n, dtype=np.int64),
            status=np.zeros(n, dtype=np.int64),
            sent_bytes=np.zeros((n, N_STEPS)),
            order=np.arange(n, dtype=np.float64),
            step=np.zeros(n, dtype=np.int64),
            elapsed=z.copy(),
            progress=z.copy(),
            due_day=np.zeros(n, dtype=np.int64),
            late_at_least=np.zeros(n, dtype=np.int64),
            here=np.zeros(n, dtype=bool),
            delivery=np.full(n, -1, dtype=np.int64),
            retry_at=z.copy(),
            ready_at=np.full(n, np.inf),
            dispatched_at=np.full(n, np.inf),
            retries=np.zeros(n, dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.site)

    def take(self, index: np.ndarray) -> Fleet:
        return Fleet(**{k: v[index] for k, v in self.__dict__.items()})


@dataclass(frozen=True)
class World:
    sites: tuple[Site, ...]
    profiles: tuple[Profile, ...]
    fleet: Fleet
    lateness: Lateness = field(default_factory=Lateness)
    wave_window: float | None = None
    """Configure waves' window (None: the engine's default)."""

    def with_sites(self, sites: tuple[Site, ...]) -> World:
        return replace(self, sites=sites)
