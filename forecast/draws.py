"""Every random quantity of a Monte Carlo forecast, drawn up front as arrays.

For each run and laptop of one site: each step's cost (an empirical draw from its
profile), how many of its attempts fail and whether it fails for good (from the per-attempt
rates, the step's attempts and backoffs as ``rules.retry_table`` read them from the
engine's rules), folded into the simulator's phases (``rules.phases``); where a retried
run restarts; whether a failed laptop is set aside; when its delivery comes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecast import rules
from forecast.world import N_STEPS, Fleet, Lateness, Profile, Site, Status

PHASES = rules.phases()
N_PHASES = len(PHASES)
PHASE_OF = np.asarray([i for i, p in enumerate(PHASES) for _ in p.steps])
SENDING = np.asarray([p.sending for p in PHASES])
FIRST_STEP = np.asarray([p.steps[0] for p in PHASES])
RESTART = np.asarray([rules.restart_step(s) for s in range(N_STEPS)] + [N_STEPS])
CONFIGURE_PHASE = int(PHASE_OF[rules.CONFIGURE])
_RETRIES = [rules.retry_table(name) for name in rules.STEP_NAMES]


@dataclass
class Draws:
    """One site's draws; ``(R, n, N_PHASES)`` unless said otherwise."""

    steps: np.ndarray
    """``(R, n, N_STEPS)``: seconds (timed step) or bytes (sending step) of each step
    done without failing for good, its retried attempts and backoffs included."""
    amount: np.ndarray
    """Each phase done without failing: the sum of its steps."""
    first: np.ndarray
    """Each phase of the laptop's first run: as ``amount`` up to the phase it fails in,
    which ends with the failed try; nothing after it."""
    ceiling: np.ndarray
    """Bytes per second the laptop can take in a sending phase."""
    fail_phase: np.ndarray
    """``(R, n)``: the phase in which the first run fails for good (N_PHASES: never)."""
    restart_step: np.ndarray
    """``(R, n)``: where a technician's retry restarts it."""
    give_up: np.ndarray
    """``(R, n)``: a failure sets it aside instead of being retried."""
    arrival: np.ndarray
    """``(R, n)``: when it is at the bench (-inf: already there)."""
    contention: np.ndarray
    """``(n, N_STEPS)``: each step's ``beta`` (``StepDist.contention``)."""
    share: np.ndarray
    """``(n, N_STEPS)``: each step's share of its phase's mean cost: the walk scales a
    timed phase by ``sum(share * c ** beta)`` over its steps, ``c`` the runs under way
    when it starts (a sending phase, one step: its ceiling divided by ``c ** beta``)."""

    def rest_of_phase(self, r: np.ndarray, lap: np.ndarray, step: np.ndarray) -> np.ndarray:
        """What is left of each run's phase from ``step`` on (its steps from there)."""
        return (self.steps[r, lap] * _FROM_STEP[step]).sum(axis=1)


_FROM_STEP = np.asarray(
    [
        [1.0 if PHASE_OF[t] == PHASE_OF[s] and t >= s else 0.0 for t in range(N_STEPS)]
        for s in range(N_STEPS)
    ]
)
"""``_FROM_STEP[s]``: the steps of ``s``'s phase from ``s`` on."""


def _phase_sums(steps: np.ndarray) -> np.ndarray:
    """Each phase's steps added up, ``(R, n, N_PHASES)``, bit for bit as
    ``np.add.reduceat`` over the step axis adds them (the first step plus the sum of
    the others, left to right; a phase has fewer than nine steps, where reduceat would
    switch to pairwise sums) and five times faster: its inner loop runs once per
    laptop and phase over two or three numbers."""
    amount = np.empty((*steps.shape[:2], N_PHASES), dtype=steps.dtype)
    for p, phase in enumerate(PHASES):
        first, *rest = phase.steps
        if not rest:
            amount[:, :, p] = steps[:, :, first]
            continue
        others = steps[:, :, rest[0]].copy()
        for s in rest[1:]:
            others += steps[:, :, s]
        np.add(steps[:, :, first], others, out=amount[:, :, p])
    return amount


def _step_draws(
    rng: np.random.Generator, profiles: tuple[Profile, ...], fleet: Fleet, runs: int, step: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray, np.ndarray | float]:
    """(cost, cost when it fails for good, fails for good, ceiling, backoff to carry)
    of one step, each ``(R, n)`` (None: it never fails). A sending step's cost is bytes,
    its ceiling the bytes per second drawn, and its backoffs are carried to the next
    step (a stream backing off sends nothing); a timed step's ceiling is meaningless."""
    n = len(fleet)
    base = np.empty((runs, n))
    p_retry = np.zeros(n)
    p_fatal = np.zeros(n)
    for k, profile in enumerate(profiles):
        mine = np.flatnonzero(fleet.profile == k)
        if not len(mine):
            continue
        dist = profile.steps[step]
        samples = np.asarray(dist.samples, dtype=np.float64)
        if len(samples) == 1:
            base[:, mine] = samples[0]
        else:
            base[:, mine] = samples[rng.integers(0, len(samples), size=(runs, len(mine)))]
        p_retry[mine] = dist.p_retry
        p_fatal[mine] = dist.p_fatal
    sending = rules.STEP_NAMES[step] in rules.SENDING_STEPS
    work = fleet.sent_bytes[:, step] * np.ones((runs, 1)) if sending else base
    table = _RETRIES[step]
    if not (p_retry.any() or p_fatal.any()):
        return work, None, None, base, 0.0
    # One uniform per attempt sequence: how many retryable failures in a row (geometric,
    # by inverting its distribution), then, within that outcome's share of [0, 1), the
    # position says whether the next attempt fails for good.
    q = np.clip(p_retry, 0.0, 0.999)
    u = rng.random((runs, n))
    if not q.any():  # only failures for good: one comparison
        fatal = u < p_fatal
        return work, work * 0.5, fatal, base, 0.0
    with np.errstate(divide="ignore"):
        failed = np.floor(np.log(u) / np.log(np.where(q > 0, q, 0.5))).astype(np.int64)
    failed = np.where(q > 0, failed, 0)
    top = q**failed
    within = (top - u) / np.maximum(top * (1.0 - q), 1e-300)
    exhausted = failed >= table.allowed
    fatal = ~exhausted & (within < p_fatal / np.maximum(1e-12, 1.0 - q))
    kept = np.minimum(failed, table.allowed - 1)
    waited = table.waited[kept]
    full = work * (1.0 + 0.5 * kept) + (0.0 if sending else waited)
    # A failing attempt costs half of a whole one, on average.
    tried = np.where(exhausted, table.allowed, kept + 1)
    fail_cost = work * 0.5 * tried + (0.0 if sending else table.waited[np.minimum(tried - 1, kept)])
    return full, fail_cost, exhausted | fatal, base, (waited if sending else 0.0)


def arrivals(
    rng: np.random.Generator, site: Site, fleet: Fleet, lateness: Lateness, runs: int
) -> np.ndarray:
    """When each laptop is at the bench, per run: -inf for those already there; the
    laptops of one delivery come together, ``pmf``-many days after it was due (given
    how late it already is)."""
    n = len(fleet)
    out = np.full((runs, n), -np.inf)
    expected = np.flatnonzero((fleet.status == Status.EXPECTED) & ~fleet.here)
    out[:, (fleet.status == Status.EXPECTED) & fleet.here] = 0.0
    if not len(expected):
        return out
    pmf = np.asarray(lateness.pmf, dtype=np.float64)
    keys = fleet.delivery[expected] * 1000 + fleet.late_at_least[expected]
    for key in np.unique(keys):
        members = expected[keys == key]
        at_least = int(fleet.late_at_least[members[0]])
        due = int(fleet.due_day[members[0]])
        tail = pmf[at_least:] if at_least < len(pmf) else np.zeros(0)
        if tail.sum() > 0:
            late = at_least + rng.choice(len(tail), size=runs, p=tail / tail.sum())
        else:
            # Later than anything seen: a day more, then each day even odds.
            late = at_least + rng.geometric(0.5, size=runs)
        when = site.calendar.arrival_on(due + late)
        # Already late today and past the carriers' round: tomorrow at the earliest.
        bump = when < 0
        while bump.any():
            late = np.where(bump, late + 1, late)
            when = site.calendar.arrival_on(due + late)
            bump = when < 0
        out[:, members] = when[:, None]
    return out


def contention(profiles: tuple[Profile, ...], fleet: Fleet) -> tuple[np.ndarray, np.ndarray]:
    """(``Draws.contention``, ``Draws.share``): learnt figures, nothing drawn."""
    beta = np.zeros((len(fleet), N_STEPS))
    share = np.zeros((len(fleet), N_STEPS))
    for k, profile in enumerate(profiles):
        mine = np.flatnonzero(fleet.profile == k)
        if not len(mine):
            continue
        # Every profile gets its shares, including one that learnt no power: the walk
        # scales a phase by sum(share * c ** beta) for every laptop walked beside one
        # that did, and a share of 0 there made that laptop's phase take no time.
        for phase in PHASES:
            s = np.asarray(phase.steps, dtype=np.int64)
            cost = np.asarray([float(np.mean(profile.steps[i].samples)) for i in s])
            beta[np.ix_(mine, s)] = [profile.steps[i].contention for i in s]
            total = cost.sum()
            share[np.ix_(mine, s)] = cost / total if total > 0 else 1.0 / len(s)
    return beta, share


def draw(
    rng: np.random.Generator,
    *,
    site: Site,
    profiles: tuple[Profile, ...],
    fleet: Fleet,
    lateness: Lateness,
    runs: int,
) -> Draws:
    n = len(fleet)
    # Single precision for the bulk arrays (a hundredth of a second in a day, a
    # kilobyte in 14 GB): half the memory traffic, which is most of a draw's time.
    steps = np.empty((runs, n, N_STEPS), dtype=np.float32)
    ceiling = np.full((runs, n, N_PHASES), np.inf, dtype=np.float32)
    first_fail = np.full((runs, n), N_STEPS, dtype=np.int64)
    fail_cost = np.zeros((runs, n))
    carried: np.ndarray | float = 0.0
    for s in range(N_STEPS):
        full, cost, fails, ceil, carry = _step_draws(rng, profiles, fleet, runs, s)
        sending = bool(SENDING[PHASE_OF[s]])
        steps[:, :, s] = full if sending else full + carried
        carried = carry
        if sending:
            ceiling[:, :, PHASE_OF[s]] = ceil
        if fails is not None and cost is not None:
            new = fails & (first_fail == N_STEPS)
            first_fail[new] = s
            fail_cost[new] = cost[new]
    amount = _phase_sums(steps)
    betas, shares = contention(profiles, fleet)
    failing = first_fail < N_STEPS
    fail_phase = np.where(failing, PHASE_OF[np.minimum(first_fail, N_STEPS - 1)], N_PHASES)
    first = amount.copy()
    r_f, j_f = np.nonzero(failing)
    if len(r_f):
        # Nothing after the phase it fails in (only the failing few need it).
        after = np.arange(N_PHASES) > fail_phase[r_f, j_f][:, None]
        first[r_f, j_f] = np.where(after, 0.0, first[r_f, j_f])
        f = first_fail[r_f, j_f]
        p = PHASE_OF[f]
        # The failing phase: its steps before the failing one, then the failed try.
        before = (steps[r_f, j_f] * (_FROM_STEP[FIRST_STEP[p]] - _FROM_STEP[f])).sum(axis=1)
        first[r_f, j_f, p] = before + fail_cost[r_f, j_f]
    return Draws(
        steps=steps,
        amount=amount,
        first=first,
        ceiling=ceiling,
        fail_phase=fail_phase,
        restart_step=RESTART[first_fail],
        give_up=rng.random((runs, n)) < site.give_up,
        arrival=np.full((runs, n), -np.inf),
        contention=betas,
        share=shares,
    )
