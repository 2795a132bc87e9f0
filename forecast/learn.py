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

from forecast import contention, defaults
from forecast.world import Lateness, Profile, StepDist
from provisioning.runs.states import STEP_NAMES

SENDING = {i for i, n in enumerate(STEP_NAMES) if n in ("stream", "installers")}
ENOUGH = 3
"""Samples a level needs before it is used instead of a broader one."""
PRIOR_WEIGHT = 5.0
"""Failure rates: the default counts as this many attempts (a few failures in a small
lab wave move the rate; one lucky attempt does not zero it)."""
MAX_SAMPLES = 2000
HALF_LIFE_SHARE = 0.25
"""A step's samples lose half their weight every this share of the time they span."""
QUANTILES = 200
"""Points of a learnt distribution (its weighted quantiles)."""


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
    at: float = 0.0
    """When the attempt started (seconds, any fixed origin): recent attempts weigh more
    (by their start: weighing by their end would favour the long ones among attempts
    started together)."""
    site: int = 0
    """Where it ran: attempts share a site's machines (``contention``)."""


@dataclass(frozen=True)
class Learned:
    profiles: dict[str, Profile]
    sources: dict[str, dict[str, str]]
    """Per profile and step: where its figures come from ("this model: 14 attempts"...)."""


def _seen(
    records: list[StepRecord], step: int, concurrent: dict[int, float] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(what each successful attempt cost, when it started, how many attempts were
    under way beside it, itself included): seconds, or bytes per second for a sending
    step."""
    conc = concurrent or {}
    if step in SENDING:
        ok = [
            (r.size / r.seconds, r.at, conc.get(id(r), 1.0))
            for r in records
            if r.outcome == "ok" and r.size > 0 and r.seconds > 0
        ]
        ok = [(v, at, c) for v, at, c in ok if np.isfinite(v)]
    else:
        ok = [
            (r.seconds, r.at, conc.get(id(r), 1.0))
            for r in records
            if r.outcome == "ok" and r.seconds >= 0
        ]
    if not ok:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    values, ats, concs = np.asarray(ok, dtype=np.float64).T
    return values, ats, concs


def _rates(records: list[StepRecord], step: int) -> np.ndarray:
    return _seen(records, step)[0]


def recent_weighted(values: np.ndarray, ats: np.ndarray, *, points: int = QUANTILES) -> np.ndarray:
    """The empirical distribution of ``values``, each weighted by how recent it is
    (``ats``: when each was seen), as ``points`` evenly spaced quantiles (what the
    draws pick from uniformly).

    Why: a step's cost drifts as a wave goes (the first laptops of a lab wave pay a
    warm-up: its first gates took 16-19 s, the later ones 11-12 s; a site's load
    changes through a day), and the latest attempts say most about the next ones.
    A sample's weight halves every quarter of the time the samples span, so the
    oldest count a sixteenth of the newest: old attempts still shape the tails."""
    if len(values) <= 1:
        return values.astype(np.float64)
    span = float(ats.max() - ats.min())
    if span <= 0:
        weights = np.ones(len(values))
    else:
        weights = 0.5 ** ((ats.max() - ats) / (span * HALF_LIFE_SHARE))
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    cum /= cum[-1]
    probs = (np.arange(points) + 0.5) / points
    return values[order][np.minimum(np.searchsorted(cum, probs), len(values) - 1)]


def _smoothed(k: int, n: int, prior: float) -> float:
    return (k + PRIOR_WEIGHT * prior) / (n + PRIOR_WEIGHT)


def profiles(records: Iterable[StepRecord], wanted: dict[str, tuple[str, float]]) -> Learned:
    """A profile for each ``wanted`` key (its OS family and its image's raw size), its
    steps' samples brought to a run alone at its site and their contention learnt
    (``contention``)."""
    records = list(records)
    concurrent = _concurrency(records)
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
            if chosen:
                values, ats, concs = _seen(chosen, step, concurrent)
                latest = np.argsort(ats, kind="stable")[-MAX_SAMPLES:]
                values, ats, concs = values[latest], ats[latest], concs[latest]
                sending = step in SENDING
                beta = contention.fit(
                    concs, values, _profiles_of(chosen, step, latest), sending=sending
                )
                samples = recent_weighted(
                    contention.alone(values, concs, beta, sending=sending), ats
                )
            else:
                samples = default.samples
                beta = 0.0
            n = len(chosen)
            retries = sum(1 for r in chosen if r.outcome == "retry")
            failed = sum(1 for r in chosen if r.outcome == "failed")
            steps.append(
                StepDist(
                    samples=samples if len(samples) else default.samples,
                    p_retry=_smoothed(retries, n, default.p_retry),
                    p_fatal=_smoothed(failed, n, default.p_fatal),
                    learned_from=n,
                    contention=beta,
                )
            )
            said[name] = f"{where}: {n} attempt(s)" if n else "default"
            if beta:
                said[name] += f", x concurrency^{beta:.2f}"
        out[key] = Profile(name=key, os_family=os_family, steps=tuple(steps))
        sources[key] = said
    return Learned(profiles=out, sources=sources)


def _concurrency(records: list[StepRecord]) -> dict[int, float]:
    """Each record's concurrency (by ``id``: records are plain values, not keys)."""
    if not records:
        return {}
    conc = contention.concurrency(
        np.asarray([r.at for r in records]),
        np.asarray([r.seconds for r in records]),
        [r.site for r in records],
    )
    return {id(r): float(c) for r, c in zip(records, conc, strict=True)}


def _profiles_of(records: list[StepRecord], step: int, latest: np.ndarray) -> list[str]:
    """The profile of each sample ``_seen`` returned (the same filter, the same order)."""
    if step in SENDING:
        kept = [
            r.profile
            for r in records
            if r.outcome == "ok"
            and r.size > 0
            and r.seconds > 0
            and np.isfinite(r.size / r.seconds)
        ]
    else:
        kept = [r.profile for r in records if r.outcome == "ok" and r.seconds >= 0]
    return [kept[i] for i in latest]


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
