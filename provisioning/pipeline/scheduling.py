"""The engine's scheduling rules, as pure functions: no database, no threads, no wall clock.

Which queued runs a worker takes (a site's stream limit), how a site's bytes-per-second
cap is split between the streams sending there (bandwidth shares), when a configure wave
starts (``pipeline/waves.py``), whether a failed step is tried again and after how long.
The engine calls these with what it read from the database and the time it read; a
simulator (the forecast) calls the very same functions with simulated rows and simulated
time, so the forecast and the engine cannot drift apart.

Time is always a number of seconds passed in (``now``), never read here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

SiteKey = int | None
"""A site's id; None for a run whose bench has no site (limited by the worker only)."""


@dataclass(frozen=True)
class Candidate:
    """A run a worker could claim, in claim order (oldest first)."""

    run_id: int
    site_id: SiteKey


def admit(
    candidates: Sequence[Candidate],
    *,
    free: int,
    site_limits: Mapping[SiteKey, int],
    default_limit: int,
    live: Mapping[SiteKey, Iterable[int]],
) -> list[int]:
    """The runs to claim now, in order: at most ``free`` (this worker's free threads),
    and never more live runs at a site than its limit.

    ``site_limits`` is each site's ``max_imaging_streams`` (``default_limit``, the
    worker's own parallelism, for a site not in it); ``live`` the ids of the runs already
    running at each site under a live lease, whoever runs them. A candidate that is
    itself counted live (a run this worker resumes after a restart) does not count
    against its own admission.
    """
    running = {site: set(ids) for site, ids in live.items()}
    taken: list[int] = []
    for c in candidates:
        if len(taken) >= free:
            break
        at_site = running.setdefault(c.site_id, set())
        if len(at_site - {c.run_id}) >= site_limits.get(c.site_id, default_limit):
            continue
        at_site.add(c.run_id)
        taken.append(c.run_id)
    return taken


def rerate(site_rate: int, granted: Mapping[int, int], mine: Iterable[int]) -> dict[int, int]:
    """The new bytes-per-second share of each of ``mine`` (run ids of one worker), taken
    in id order, given every sending run's recorded share at the site (``granted``,
    whichever worker runs it).

    Each share is the fair one (the site's rate over the sending runs), but only grows
    into what the others' recorded shares leave free, so the recorded shares never add
    up to more than ``site_rate``, even while other workers have not re-rated yet. Runs
    of ``mine`` missing from ``granted`` are not sending and get no entry.
    """
    shares = dict(granted)
    fair = site_rate // max(1, len(shares))
    out: dict[int, int] = {}
    for run_id in sorted(mine):
        if run_id not in shares:
            continue
        others = sum(v for k, v in shares.items() if k != run_id)
        new = max(0, min(fair, site_rate - others))
        shares[run_id] = new
        out[run_id] = new
    return out


@dataclass(frozen=True)
class WaveRule:
    """When the leader of a configure wave (the first Linux laptop to reach configure)
    stops waiting for others and starts the one Ansible run for all of them."""

    window: float
    """Seconds the leader waits at most; 0 configures each laptop on its own."""
    max_size: int = 10

    def full(self, size: int) -> bool:
        return size >= self.max_size

    def keep_waiting(
        self, *, now: float, opened_at: float, size: int, pending: int | None, joined: int
    ) -> bool:
        """Whether the leader still waits: within its window, the wave not full, and a
        laptop of this worker may still join (``pending``, the laptops in configure or
        on their way to it, above ``joined``, those already inside; unknown: yes)."""
        if now >= opened_at + self.window or self.full(size):
            return False
        return pending is None or pending > joined


def on_their_way_to(where: Iterable[tuple[str, int]], *, family: str, step_index: int) -> int:
    """How many of a worker's runs (``(OS family, step index)`` each) of ``family`` are
    in the step at ``step_index`` or a step before it: those a configure wave's leader
    may wait for."""
    return sum(1 for f, index in where if f == family and index <= step_index)


class AfterFailure(StrEnum):
    RETRY = "retry"
    FAIL = "fail"


def after_failure(*, retryable: bool, attempt: int, max_attempts: int) -> AfterFailure:
    """A step failed on its ``attempt``-th try: try again (a retryable error with
    attempts left) or fail the run."""
    return AfterFailure.RETRY if retryable and attempt < max_attempts else AfterFailure.FAIL


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait before the next attempt: exponential from ``base``, capped."""
    return min(cap, base * 2.0 ** max(0, attempt - 1))
