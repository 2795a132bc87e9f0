"""What finished steps teach: each step's cost and failure rates per laptop profile, how
late deliveries come, how long a technician takes to retry a failed run.

Plain records in, profiles out: the service reads the records from the run log
(``repository.step_records``), the wave benchmark from its simulated history. The
figures are the empirical distribution of what was seen, at the most specific level
that has enough of it (this hardware model and OS, then this OS, then any laptop), so a
lab whose steps take seconds is forecast in seconds from its first finished steps; the
stated defaults (``defaults.py``) stand in only where nothing was seen.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from forecast import defaults
from forecast.world import Lateness, Profile, StepDist
from provisioning.runs.states import STEP_NAMES

SENDING = {i for i, n in enumerate(STEP_NAMES) if n in ("stream", "installers")}
ENOUGH = 3
"""Samples a level needs before it is used instead of a broader one."""
PRIOR_WEIGHT = 5.0
"""Failure rates: the default counts as this many attempts (a few failures in a small
lab wave move the rate; one lucky attempt does not zero it)."""
MAX_SAMPLES = 2000


@dataclass(frozen=True)
class StepRecord:
    """One attempt of one step."""

    profile: str
    os_family: str
    step: int
    seconds: float
    outcome: str
    """"ok", "retry" (failed, tried again) or "failed" (the run failed there)."""
    size: float = 0.0
    """Bytes sent (sending steps)."""


@dataclass(frozen=True)
class Learned:
    profiles: dict[str, Profile]
    sources: dict[str, dict[str, str]]
    """Per profile and step: where its figures come from ("this model: 14 attempts"...)."""


def _rates(records: list[StepRecord], step: int) -> np.ndarray:
    if step in SENDING:
        ok = [r.size / r.seconds for r in records if r.outcome == "ok" and r.size > 0]
        return np.asarray([v for v in ok if v > 0 and np.isfinite(v)])
    return np.asarray([r.seconds for r in records if r.outcome == "ok" and r.seconds >= 0])


def _smoothed(k: int, n: int, prior: float) -> float:
    return (k + PRIOR_WEIGHT * prior) / (n + PRIOR_WEIGHT)


def profiles(records: Iterable[StepRecord], wanted: dict[str, tuple[str, float]]) -> Learned:
    """A profile for each ``wanted`` key (its OS family and its image's raw size)."""
    by_key: dict[tuple[str, int], list[StepRecord]] = defaultdict(list)
    by_os: dict[tuple[str, int], list[StepRecord]] = defaultdict(list)
    by_step: dict[int, list[StepRecord]] = defaultdict(list)
    for r in records:
        by_key[(r.profile, r.step)].append(r)
        by_os[(r.os_family, r.step)].append(r)
        by_step[r.step].append(r)
    out: dict[str, Profile] = {}
    sources: dict[str, dict[str, str]] = {}
    for key, (os_family, raw_bytes) in wanted.items():
        steps: list[StepDist] = []
        said: dict[str, str] = {}
        for step, name in enumerate(STEP_NAMES):
            default = defaults.step(name, os_family=os_family, raw_bytes=raw_bytes)
            chosen: list[StepRecord] = []
            where = "default"
            for label, pool in (
                ("this model", by_key.get((key, step), [])),
                ("this OS", by_os.get((os_family, step), [])),
                ("any laptop", by_step.get(step, [])),
            ):
                if len(_rates(pool, step)) >= ENOUGH:
                    chosen, where = pool, label
                    break
            if not chosen:
                # Anything seen beats a default: a lab's seconds are not minutes.
                for label, pool in (
                    ("this model", by_key.get((key, step), [])),
                    ("this OS", by_os.get((os_family, step), [])),
                    ("any laptop", by_step.get(step, [])),
                ):
                    if len(_rates(pool, step)):
                        chosen, where = pool, label
                        break
            samples = _rates(chosen, step)[-MAX_SAMPLES:] if chosen else default.samples
            n = len(chosen)
            retries = sum(1 for r in chosen if r.outcome == "retry")
            failed = sum(1 for r in chosen if r.outcome == "failed")
            steps.append(
                StepDist(
                    samples=samples if len(samples) else default.samples,
                    p_retry=_smoothed(retries, n, default.p_retry),
                    p_fatal=_smoothed(failed, n, default.p_fatal),
                    learned_from=n,
                )
            )
            said[name] = f"{where}: {n} attempt(s)" if n else "default"
        out[key] = Profile(name=key, os_family=os_family, steps=tuple(steps))
        sources[key] = said
    return Learned(profiles=out, sources=sources)


def lateness(days_late: Iterable[int]) -> Lateness:
    """How late deliveries came (days after their expected date; early counts as on
    time), blended with the default as three deliveries' worth."""
    seen = [max(0, int(d)) for d in days_late]
    prior = Lateness().pmf
    if not seen:
        return Lateness()
    top = max(len(prior), max(seen) + 1)
    counts = np.bincount(seen, minlength=top).astype(np.float64)
    blended = counts + 3.0 * np.pad(prior, (0, top - len(prior)))
    return Lateness(pmf=blended / blended.sum(), learned_from=len(seen))


def median_or(values: Iterable[float], default: float, *, enough: int = ENOUGH) -> float:
    v = [x for x in values if x >= 0]
    return float(np.median(v)) if len(v) >= enough else default
