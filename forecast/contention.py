"""How much a step slows down when other runs are under way beside it, learnt from the
run log.

Why: a site's steps share its machines (a worker's CPU, the disks, the network): on the
lab's two cores the last laptop's gate took 6.6 s alone against 11-12 s beside three
others, and a wave whose load changes between rounds is forecast early or late by as
much. So each attempt's *concurrency* is measured (the mean number of step attempts under
way at its site while it ran, itself included) and a step's cost is fitted as
``cost = alone * concurrency ** beta`` (a timed step's seconds; a sending step's rate goes
as ``concurrency ** -beta``). ``beta`` is 0 (no term) unless the history shows it: enough
attempts, concurrencies that differ, and a slope clear of the noise. The learnt samples
are brought to "alone" and the simulator multiplies them back by the concurrency it
sees when the run's phase starts (``simulate._Walk.run``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

MIN_ATTEMPTS = 8
"""Successful attempts a fit needs."""
MIN_SPREAD = 0.15
"""Standard deviation of log(concurrency) a fit needs (seen at one level only: no term)."""
MIN_T = 3.0
"""The slope must be this many standard errors from zero (noise learns nothing)."""
MAX_BETA = 1.5
"""A step cannot slow more than this power of its company (a fit beyond it is an outlier)."""


def concurrency(
    starts: np.ndarray, seconds: np.ndarray, groups: Sequence[int] | np.ndarray
) -> np.ndarray:
    """For each attempt ``[start, start + seconds)``, the time-weighted mean number of
    attempts of its group (site) under way while it ran, itself included (at least 1).
    One sweep per group: O(n log n)."""
    starts = np.asarray(starts, dtype=np.float64)
    ends = starts + np.maximum(np.asarray(seconds, dtype=np.float64), 0.0)
    out = np.ones(len(starts))
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[int(g)].append(i)
    for idx in members.values():
        ix = np.asarray(idx)
        a, b = starts[ix], ends[ix]
        times = np.concatenate([b, a])
        delta = np.concatenate([-np.ones(len(b)), np.ones(len(a))])
        # Ends before starts at one instant: a run's next step starts as its last ends.
        order = np.lexsort((delta, times))
        t, level = times[order], np.cumsum(delta[order])
        area = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(t))])
        span = b - a
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = (_integral(t, level, area, b) - _integral(t, level, area, a)) / span
        k = np.clip(np.searchsorted(t, a, "right") - 1, 0, len(t) - 1)
        # A zero-length attempt: what is under way then, and itself (its end sorted first).
        out[ix] = np.maximum(1.0, np.where(span > 0, mean, level[k] + 1))
    return out


def _integral(t: np.ndarray, level: np.ndarray, area: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The number under way, integrated from the first event to each ``x``."""
    k = np.clip(np.searchsorted(t, x, "right") - 1, 0, len(t) - 1)
    return area[k] + level[k] * (x - t[k])


def fit(
    concurrent: np.ndarray, values: np.ndarray, groups: Sequence[str], *, sending: bool
) -> float:
    """``beta`` of ``value ~ concurrency ** beta`` (seconds), or ``** -beta`` (a rate),
    within each group (profile: a slow model is not mistaken for a busy hour); 0 when
    the history does not show it."""
    ok = (concurrent > 0) & (values > 0) & np.isfinite(values)
    if int(ok.sum()) < MIN_ATTEMPTS:
        return 0.0
    x = np.log(concurrent[ok])
    y = np.log(values[ok])
    g = np.asarray(groups)[ok]
    for key in np.unique(g):
        m = g == key
        x[m] -= x[m].mean()
        y[m] -= y[m].mean()
    sxx = float((x * x).sum())
    n = len(x)
    if n < MIN_ATTEMPTS or np.sqrt(sxx / n) < MIN_SPREAD:
        return 0.0
    slope = float((x * y).sum() / sxx)
    resid = y - slope * x
    dof = max(1, n - 1 - len(np.unique(g)))
    se = float(np.sqrt((resid * resid).sum() / dof / sxx))
    beta = -slope if sending else slope
    if beta <= 0 or (se > 0 and beta / se < MIN_T):
        return 0.0
    return min(beta, MAX_BETA)


def alone(values: np.ndarray, concurrent: np.ndarray, beta: float, *, sending: bool) -> np.ndarray:
    """What each attempt would have cost alone (the samples the simulator scales)."""
    if beta == 0.0:
        return values
    factor = concurrent**beta
    return values * factor if sending else values / factor
