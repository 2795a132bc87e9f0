"""An event-by-event simulation of the same rules: the reference the fast simulator is
checked against (tests/forecast/test_exact.py) and the "truth" of the wave benchmark.

One run, scalar, slow and literal: each worker claims through ``admit`` with its own
free threads; each step attempt is drawn and, when it fails, ``after_failure`` and
``backoff_delay`` decide; every second each worker re-rates its own streams through
``rerate`` against the site's ledger (a new stream has no share until then, a stream
backing off keeps counting with none), as ``pipeline/bandwidth.py`` does; a Linux laptop
reaching configure leads or joins its worker's wave, and the leader waits as
``WaveRule.keep_waiting`` says; slots are held from scan-in until the carrier's
collection; technicians retry failed runs while the site is open.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from forecast import draws as D
from forecast import rules
from forecast.world import Status, World
from provisioning.pipeline.scheduling import (
    STEP_RULES,
    AfterFailure,
    Candidate,
    WaveRule,
    admit,
    after_failure,
    backoff_delay,
    on_their_way_to,
    rerate,
)
from provisioning.runs.states import STEP_NAMES

SENDING = frozenset(i for i, n in enumerate(STEP_NAMES) if n in rules.SENDING_STEPS)
TICK = 1.0
"""The workers' bandwidth loop (``MASTERLINE_WORKER_SHARE_SECONDS``)."""


@dataclass
class Attempt:
    """One line of the history: a step attempt of a laptop's run."""

    laptop: int
    step: int
    start: float
    end: float
    outcome: str
    """"ok", "retry" (retryable, tried again), "failed" (the run failed)."""
    size: float = 0.0
    """Bytes it sent (sending steps)."""


@dataclass
class _Run:
    laptop: int
    site: int
    rid: int
    step: int = 0
    attempt: int = 0
    worker: int = -1
    remaining: float = 0.0
    size: float = 0.0
    ceiling: float = np.inf
    started: float = 0.0
    fails: str = "ok"
    token: int = 0


@dataclass
class Truth:
    ready: np.ndarray
    dispatched: np.ndarray
    aside: np.ndarray
    scanned: np.ndarray
    arrived: np.ndarray
    history: list[Attempt] = field(default_factory=list)


class Exact:
    def __init__(
        self,
        world: World,
        *,
        seed: int,
        workers: list[int] | None = None,
        stream_limits: list[int] | None = None,
        parallel: int = rules.WORKER_PARALLEL,
        horizon: float = 60 * 86400.0,
        failure_fraction: Callable[[np.random.Generator], float] | None = None,
    ) -> None:
        self.w = world
        self.rng = np.random.default_rng(seed)
        self.fraction = failure_fraction or (lambda rng: 0.5)
        self.horizon = horizon
        n_sites = len(world.sites)
        self.stream_limits = stream_limits or [s.live for s in world.sites]
        self.workers = workers or [1] * n_sites
        self.parallel = parallel if workers else max([s.live for s in world.sites] + [1])
        f = world.fleet
        n = len(f)
        self.ready = np.full(n, np.inf)
        self.dispatched = np.full(n, np.inf)
        self.aside = np.zeros(n, dtype=bool)
        self.scanned = np.full(n, np.inf)
        self.arrived = np.full(n, np.inf)
        self.history: list[Attempt] = []
        self.events: list[tuple[float, int, str, tuple[int, ...]]] = []
        self.seq = itertools.count()
        self.rid = itertools.count()
        self.t = 0.0
        self.free_slots = [s.slots for s in world.sites]
        self.outside: list[list[tuple[float, int]]] = [[] for _ in world.sites]
        self.queue: list[list[_Run]] = [[] for _ in world.sites]
        self.live: list[list[set[int]]] = [[set() for _ in range(k)] for k in self.workers]
        self.runs: dict[int, _Run] = {}
        self.ledger: list[dict[int, int]] = [{} for _ in world.sites]
        self.backing_off: list[set[int]] = [set() for _ in world.sites]
        self.awaiting: list[list[int]] = [[] for _ in world.sites]
        self.tries = f.retries.copy()
        self.waves: dict[tuple[int, int], tuple[float, list[_Run]]] = {}
        self.wave_rule = WaveRule(
            window=rules.WAVE_WINDOW if world.wave_window is None else world.wave_window
        )
        self.ticking = [False] * n_sites

    # Events.
    def at(self, when: float, kind: str, *args: int) -> None:
        heapq.heappush(self.events, (when, next(self.seq), kind, args))

    def simulate(self) -> Truth:
        self._load()
        for _ in range(50_000_000):  # bounded; ends when nothing is left to happen
            if not self.events:
                break
            when, _, kind, args = heapq.heappop(self.events)
            if when > self.horizon:
                break
            self.t = when
            getattr(self, f"_on_{kind}")(*args)
        return Truth(
            ready=self.ready,
            dispatched=self.dispatched,
            aside=self.aside,
            scanned=self.scanned,
            arrived=self.arrived,
            history=self.history,
        )

    def _load(self) -> None:
        f, w = self.w.fleet, self.w
        for k, site in enumerate(w.sites):
            mine = np.flatnonzero(f.site == k)
            fleet = f.take(mine)
            arrive = D.arrivals(self.rng, site, fleet, w.lateness, 1)[0]
            for j, lap in enumerate(mine):
                st = Status(int(f.status[lap]))
                if st is Status.EXPECTED:
                    self.arrived[lap] = arrive[j]
                    self.at(max(0.0, arrive[j]), "arrive", int(lap))
                elif st in (Status.WAITING, Status.RUNNING, Status.FAILED, Status.READY):
                    self.free_slots[k] -= 1
                    self.arrived[lap] = self.scanned[lap] = -np.inf
            order = mine[np.argsort(f.order[mine], kind="stable")]
            for lap in order:
                st = Status(int(f.status[lap]))
                if st is Status.WAITING or st is Status.RUNNING:
                    run = self._new_run(int(lap), k, step=int(f.step[lap]))
                    self.queue[k].append(run)
                elif st is Status.FAILED:
                    run = self._new_run(int(lap), k, step=rules.restart_step(int(f.step[lap])))
                    when = float(
                        site.calendar.next_open(np.asarray([max(0.0, f.retry_at[lap])]))[0]
                    )
                    self.at(when, "requeue", run.rid)
                elif st is Status.READY:
                    self.ready[lap] = f.ready_at[lap]
                    self.awaiting[k].append(int(lap))
                    self._cutoff_after(k, 0.0)
                elif st is Status.DISPATCHED:
                    self.ready[lap] = f.ready_at[lap]
                    self.dispatched[lap] = f.dispatched_at[lap]
                elif st is Status.ASIDE:
                    self.aside[lap] = True
            for start in site.calendar.opens:
                if 0.0 <= start < self.horizon:
                    self.at(float(start), "open", k)
            self.at(0.0, "open", k)

    def _new_run(self, lap: int, site: int, *, step: int) -> _Run:
        run = _Run(laptop=lap, site=site, rid=next(self.rid), step=step)
        self.runs[run.rid] = run
        return run

    # Arrivals, scans, slots, carriers.
    def _on_arrive(self, lap: int) -> None:
        k = int(self.w.fleet.site[lap])
        self.outside[k].append((self.arrived[lap], lap))
        self.outside[k].sort()
        self._scan(k)

    def _on_open(self, k: int) -> None:
        self._scan(k)
        self._claim(k)

    def _scan(self, k: int) -> None:
        cal = self.w.sites[k].calendar
        if not bool(cal.is_open(np.asarray([self.t]))[0]):
            return
        while self.free_slots[k] > 0 and self.outside[k] and self.outside[k][0][0] <= self.t:
            _, lap = self.outside[k].pop(0)
            self.free_slots[k] -= 1
            self.scanned[lap] = self.t
            self.queue[k].append(self._new_run(lap, k, step=0))
        self._claim(k)

    def _cutoff_after(self, k: int, t: float) -> None:
        cut = float(self.w.sites[k].calendar.next_cutoff(np.asarray([t]))[0])
        if np.isfinite(cut):
            self.at(cut, "cutoff", k)

    def _on_cutoff(self, k: int) -> None:
        gone = [lap for lap in self.awaiting[k] if self.ready[lap] <= self.t]
        for lap in gone:
            self.dispatched[lap] = self.t
            self.awaiting[k].remove(lap)
            self.free_slots[k] += 1
        if gone:
            self._scan(k)

    # Claims: each worker in turn asks admit.
    def _claim(self, k: int) -> None:
        queue = self.queue[k]
        for wid, mine in enumerate(self.live[k]):
            if not queue:
                return
            live = set().union(*self.live[k])
            free = self.parallel - len(mine)
            queue.sort(key=lambda r: r.rid)
            # One site per call: candidates past the first ``free`` cannot change
            # what admit takes (it takes in order, up to ``free``).
            taken = admit(
                [Candidate(r.rid, k) for r in queue[: max(0, free) + 1]],
                free=free,
                site_limits={k: self.stream_limits[k]},
                default_limit=self.parallel,
                live={k: live},
            )
            for rid in taken:
                run = self.runs[rid]
                queue.remove(run)
                mine.add(rid)
                run.worker = wid
                run.attempt = 0
                self._begin_step(run)

    # Steps.
    def _begin_step(self, run: _Run) -> None:
        f, w = self.w.fleet, self.w
        if run.step >= len(STEP_NAMES):
            self._done(run)
            return
        profile = w.profiles[int(f.profile[run.laptop])]
        dist = profile.steps[run.step]
        sample = float(self.rng.choice(np.asarray(dist.samples, dtype=np.float64)))
        run.attempt += 1
        run.started = self.t
        u = self.rng.random()
        run.fails = (
            "retry" if u < dist.p_retry else "fatal" if u < dist.p_retry + dist.p_fatal else "ok"
        )
        part = self.fraction(self.rng) if run.fails != "ok" else 1.0
        if run.step == rules.CONFIGURE and profile.os_family == "linux":
            run.remaining = sample * part
            self._join_wave(run)
            return
        if run.step in SENDING:
            run.size = float(f.sent_bytes[run.laptop, run.step]) * part
            run.remaining = run.size
            run.ceiling = sample
            if run.remaining <= 0:
                self.at(self.t, "step_end", run.rid, run.token)
                return
            self.ledger[run.site][run.rid] = 0
            self._start_ticking(run.site)
            if not np.isfinite(w.sites[run.site].shares[1:]).any():
                self.at(self.t + run.remaining / run.ceiling, "step_end", run.rid, run.token)
            return
        self.at(self.t + sample * part, "step_end", run.rid, run.token)

    def _on_step_end(self, rid: int, token: int) -> None:
        run = self.runs[rid]
        if token != run.token:
            return
        run.token += 1
        self.ledger[run.site].pop(rid, None)
        self.history.append(
            Attempt(
                run.laptop,
                run.step,
                run.started,
                self.t,
                "ok" if run.fails == "ok" else "",
                run.size,
            )
        )
        if run.fails == "ok":
            run.step += 1
            run.attempt = 0
            self._begin_step(run)
            return
        rule = STEP_RULES[STEP_NAMES[run.step]]
        verdict = after_failure(
            retryable=run.fails == "retry", attempt=run.attempt, max_attempts=rule.max_attempts
        )
        if verdict is AfterFailure.RETRY:
            self.history[-1].outcome = "retry"
            delay = backoff_delay(run.attempt, base=rules.BACKOFF_BASE, cap=rules.BACKOFF_CAP)
            if run.step in SENDING:
                self.backing_off[run.site].add(rid)
            self.at(self.t + delay, "backoff_end", rid)
            return
        self.history[-1].outcome = "failed"
        self._fail(run)

    def _on_backoff_end(self, rid: int) -> None:
        run = self.runs[rid]
        self.backing_off[run.site].discard(rid)
        self._begin_step(run)

    def _release(self, run: _Run) -> None:
        self.live[run.site][run.worker].discard(run.rid)
        run.worker = -1
        self._claim(run.site)
        self._check_waves(run.site)

    def _done(self, run: _Run) -> None:
        self.ready[run.laptop] = self.t
        self.awaiting[run.site].append(run.laptop)
        self._cutoff_after(run.site, self.t)
        self._release(run)

    def _fail(self, run: _Run) -> None:
        site = self.w.sites[run.site]
        self._release(run)
        self.tries[run.laptop] += 1
        back = float(site.calendar.next_open(np.asarray([self.t + site.tech_delay]))[0])
        if self.rng.random() < site.give_up or self.tries[run.laptop] > site.max_retries:
            self.at(back, "set_aside", run.laptop, run.site)
            return
        run.step = rules.restart_step(run.step)
        self.at(back, "requeue", run.rid)

    def _on_set_aside(self, lap: int, k: int) -> None:
        self.aside[lap] = True
        self.free_slots[k] += 1
        self._scan(k)

    def _on_requeue(self, rid: int) -> None:
        run = self.runs[rid]
        self.queue[run.site].append(run)
        self._claim(run.site)

    # Bandwidth: every second, each worker re-rates its own streams (rerate).
    def _start_ticking(self, k: int) -> None:
        if not self.ticking[k] and np.isfinite(self.w.sites[k].shares[1:]).any():
            self.ticking[k] = True
            self.at(self.t, "tick", k)

    def _on_tick(self, k: int) -> None:
        ledger = self.ledger[k]
        sending = [self.runs[rid] for rid in ledger]
        for run in sending:
            rate = min(run.ceiling, ledger[run.rid])
            if rate <= 0 or run.remaining <= 0:
                continue
            if run.remaining <= rate * TICK:
                self.at(self.t + run.remaining / rate, "step_end", run.rid, run.token)
                run.remaining = 0.0
            else:
                run.remaining -= rate * TICK
        cap = int(self._site_rate(k))
        granted = {rid: v for rid, v in ledger.items() if self.runs[rid].remaining > 0}
        granted.update(dict.fromkeys(self.backing_off[k], 0))
        for wid in range(self.workers[k]):
            mine = [rid for rid in granted if self.runs[rid].worker == wid and rid in ledger]
            for rid, share in rerate(cap, granted, mine).items():
                granted[rid] = share
                ledger[rid] = share
        if ledger or self.backing_off[k]:
            self.at(self.t + TICK, "tick", k)
        else:
            self.ticking[k] = False

    def _site_rate(self, k: int) -> float:
        shares = self.w.sites[k].shares
        return float(shares[1]) if len(shares) > 1 else 0.0

    # Configure waves.
    def _join_wave(self, run: _Run) -> None:
        key = (run.site, run.worker)
        if key in self.waves:
            self.waves[key][1].append(run)
        else:
            self.waves[key] = (self.t, [run])
            self.at(self.t + self.wave_rule.window, "wave_check", *key)
        self._check_waves(run.site)

    def _on_wave_check(self, k: int, wid: int) -> None:
        self._check_waves(k)

    def _check_waves(self, k: int) -> None:
        f, w = self.w.fleet, self.w
        for key in [key for key in self.waves if key[0] == k]:
            opened, members = self.waves[key]
            where = [
                (w.profiles[int(f.profile[r.laptop])].os_family, r.step)
                for rid in self.live[k][key[1]]
                if (r := self.runs[rid])
            ]
            pending = on_their_way_to(where, family="linux", step_index=rules.CONFIGURE)
            if self.wave_rule.keep_waiting(
                now=self.t,
                opened_at=opened,
                size=len(members),
                pending=pending,
                joined=len(members),
            ):
                continue
            del self.waves[key]
            # One Ansible run for the wave: each laptop's verdict comes when it ends.
            longest = max(r.remaining for r in members)
            for r in members:
                r.started = self.t
                self.at(self.t + longest, "step_end", r.rid, r.token)


def truth(world: World, *, seed: int, **kw: object) -> Truth:
    return Exact(world, seed=seed, **kw).simulate()  # type: ignore[arg-type]
