"""The engine's scheduling rules, turned into the tables the simulator reads.

The simulator does not re-state a single rule: it asks ``provisioning.pipeline.scheduling``
(the functions the engine calls) and keeps the answers. A rule is evaluated once per
distinct input and the answer broadcast over the Monte Carlo runs:

* how many runs can be live at a site (``admit``, asked the way the engine's workers ask
  it: each worker claiming in turn until none takes more);
* each stream's bytes per second when ``n`` streams send at a site (``rerate``, iterated
  from zero grants until the ledger settles, as the workers' bandwidth loops do);
* after the k-th failed attempt of a step: retry or fail (``after_failure``), and the
  wait before the next attempt (``backoff_delay``), with the step's attempts from
  ``STEP_RULES``;
* whether the first Linux laptop to reach configure waits for others (``WaveRule``);
* where a retried run restarts (``runs.states.retry_index``), and the step order
  (``STEP_NAMES``) split into phases at the steps that hold a bandwidth share
  (``SENDING_STEPS``).

Change any of those and both the engine and the forecast move (tests/forecast/test_rules.py).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from provisioning.pipeline.config import EngineConfig
from provisioning.pipeline.scheduling import (
    SENDING_STEPS,
    STEP_RULES,
    AfterFailure,
    Candidate,
    WaveRule,
    admit,
    after_failure,
    backoff_delay,
    rerate,
)
from provisioning.runs.states import STEP_NAMES, retry_index

_SITE = 1
_ENGINE_DEFAULTS: dict[str, object] = {f.name: f.default for f in fields(EngineConfig)}


def _engine_default(name: str) -> float:
    value = _ENGINE_DEFAULTS[name]
    assert isinstance(value, int | float), name
    return float(value)


WORKER_PARALLEL = int(_engine_default("max_parallel"))
"""A worker's threads (``MASTERLINE_WORKER_MAX_PARALLEL``'s default)."""
BACKOFF_BASE = _engine_default("backoff_base")
BACKOFF_CAP = _engine_default("backoff_cap")
WAVE_WINDOW = _engine_default("configure_wave_seconds")


def live_limit(*, site_limit: int, workers: int, parallel: int = WORKER_PARALLEL) -> int:
    """How many runs the engine keeps live at one site with enough queued work: its
    workers claim in turn through ``admit`` until none of them takes another run."""
    owned: list[set[int]] = [set() for _ in range(max(0, workers))]
    next_id = 0
    for _ in range(10_000):  # bounded: each round that takes nothing ends the loop
        took = False
        for mine in owned:
            live = set().union(*owned)
            free = parallel - len(mine)
            if free <= 0:
                continue
            candidates = [Candidate(next_id + i, _SITE) for i in range(free + 1)]
            taken = admit(
                candidates,
                free=free,
                site_limits={_SITE: site_limit},
                default_limit=parallel,
                live={_SITE: live},
            )
            if taken:
                took = True
                mine.update(taken)
                next_id += len(candidates)
        if not took:
            break
    return sum(len(m) for m in owned)


def share_table(site_rate: int | None, n_max: int) -> np.ndarray:
    """``table[n]``: the bytes per second each of ``n`` streams is granted at a site
    capped at ``site_rate`` (infinite when uncapped), once the workers' bandwidth loops
    have settled. ``rerate`` is called exactly as the engine calls it, with the ledger
    of recorded grants, until no grant changes; the mean grant is kept (they are equal
    under the current rule)."""
    table = np.full(n_max + 1, np.inf)
    if not site_rate:
        return table
    for n in range(1, n_max + 1):
        granted = dict.fromkeys(range(n), 0)
        for _ in range(4 * n + 4):
            new = rerate(site_rate, granted, range(n))
            if new == granted:
                break
            granted = {**granted, **new}
        table[n] = sum(granted.values()) / n
    return table


@dataclass(frozen=True)
class RetryTable:
    """One step's failure handling: ``allowed`` retryable failures before the run
    fails, and ``waited[k]``, the backoff waited in total after ``k`` failed attempts."""

    allowed: int
    waited: np.ndarray


def retry_table(step: str, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> RetryTable:
    attempts = STEP_RULES[step].max_attempts
    allowed = 0
    waits = [0.0]
    for attempt in range(1, attempts + 1):
        verdict = after_failure(retryable=True, attempt=attempt, max_attempts=attempts)
        if verdict is not AfterFailure.RETRY:
            break
        allowed += 1
        waits.append(waits[-1] + backoff_delay(attempt, base=base, cap=cap))
    return RetryTable(allowed=allowed + 1, waited=np.asarray(waits))


def wave_wait_table(n_max: int, *, window: float = WAVE_WINDOW) -> np.ndarray:
    """``table[p]``: how long the first Linux laptop to reach configure waits when ``p``
    of its worker's Linux runs (itself included) are in configure or on their way: the
    whole window while ``WaveRule`` says to keep waiting (others rarely all arrive
    within it), else nothing."""
    rule = WaveRule(window=window)
    return np.asarray(
        [
            window
            if rule.keep_waiting(now=0.0, opened_at=0.0, size=1, pending=p, joined=1)
            else 0.0
            for p in range(n_max + 1)
        ]
    )


@dataclass(frozen=True)
class Phase:
    """Consecutive steps between two bandwidth-holding steps (timed), or one of those
    (sending): the simulator's unit of work."""

    sending: bool
    steps: tuple[int, ...]


def phases() -> tuple[Phase, ...]:
    out: list[Phase] = []
    for index, name in enumerate(STEP_NAMES):
        sending = name in SENDING_STEPS
        if sending or not out or out[-1].sending:
            out.append(Phase(sending=sending, steps=(index,)))
        else:
            out[-1] = Phase(sending=False, steps=(*out[-1].steps, index))
    return tuple(out)


def restart_step(failed_step: int) -> int:
    """The step a technician's retry of a run that failed at ``failed_step`` starts at."""
    return retry_index(STEP_NAMES[failed_step], failed_step)


CONFIGURE = STEP_NAMES.index("configure")
