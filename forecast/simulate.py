"""The Monte Carlo simulator: one site's runs advanced together, laptop by laptop.

Rows are Monte Carlo runs. The loop walks the site's laptops once, in the order the
engine claims them (runs live at t0, failed runs a technician will retry, queued runs
oldest first, then deliveries in their order of arrival in that run), and each turn is a
few dozen numpy operations over every run at once: a bench slot (the one freed first:
slots are held from scan-in until the carrier collects), a live place (``admit``'s limit:
the one freed first), then the run's phases one after the other.

What the engine decides comes from its own rules (``forecast/rules.py``). What the walk
approximates, and ``forecast/exact.py`` (an event-by-event simulation of the same rules,
re-rating shares every second) measures on small cases (tests/forecast/test_exact.py):

* **bandwidth**: a stream goes at its own speed, or at the share ``rerate`` grants when
  the streams already sending at its start are counted, and never ends before the site
  has sent, at the rate the shares add up to, every byte of the streams that started
  before it. The site's total is exact; within a congested spell, streams end one after
  the other rather than all together;
* a failed attempt costs half a whole one; a retried run does not fail again; a failure
  in the phase a laptop is in at t0 is not drawn again;
* a retried run takes the place freed last before the technician's retry (else the next
  one to free); the gap it leaves is not used by later laptops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forecast.draws import (
    CONFIGURE_PHASE,
    N_PHASES,
    PHASE_OF,
    PHASES,
    RESTART,
    SENDING,
    Draws,
)
from forecast.world import Fleet, Site, Status

_SENDING = [bool(x) for x in SENDING]
RETRY_BATCH = 8
"""Laptops walked between two walks of the technicians' retries."""


@dataclass
class SiteRun:
    ready: np.ndarray
    """``(R, n)``: when each laptop is ready (inf: set aside, or never)."""
    aside: np.ndarray
    scanned: np.ndarray
    """``(R, n)``: when it took its bench slot (-inf: before t0)."""
    claimed: np.ndarray
    """``(R, n)``: when its (last) run was claimed."""
    sent: dict[str, float] = field(default_factory=dict)


class _Walk:
    def __init__(
        self, site: Site, fleet: Fleet, d: Draws, wave: np.ndarray, linux: np.ndarray
    ) -> None:
        runs, n = d.fail_phase.shape
        self.site, self.fleet, self.d, self.wave, self.linux = site, fleet, d, wave, linux
        self.cal = site.calendar
        self.rows = np.arange(runs)
        width = max(1, site.live)
        self.place_free = np.full((runs, width), 0.0 if site.live > 0 else np.inf)
        self.stream_start = np.full((runs, width), np.inf)
        self.stream_end = np.full((runs, width), -np.inf)
        self.slot_free = np.full((runs, max(1, site.slots)), -np.inf if site.slots else np.inf)
        self.held = 0
        self.fresh = 0 if site.slots else self.slot_free.shape[1]
        """The first slot no laptop has taken yet (every run takes them in order)."""
        self.pending: list[tuple[np.ndarray, ...]] = []
        self.pending_last = -np.inf
        """The latest retry time among ``pending``."""
        self.walked = 0
        """How many of the queue the walk has taken (the rest are still to claim)."""
        self.queue_at: np.ndarray | None = None
        """``(R, queue)``: when each of the queue comes (sorted within a run)."""
        self.backlog = np.full(runs, -np.inf)
        """When the site will have sent every byte of the streams started so far."""
        self.ready = np.full((runs, n), np.inf)
        self.aside = np.zeros((runs, n), dtype=bool)
        self.scanned = np.full((runs, n), -np.inf)
        self.claimed = np.full((runs, n), np.inf)
        self.tries = np.broadcast_to(fleet.retries, (runs, n)).copy()
        self.shares = site.shares
        self.waves = bool(wave.any() and linux.any())
        self.capped = bool(np.isfinite(site.shares[1:]).any())
        self.totals = np.asarray(
            [k * s if np.isfinite(s) else np.inf for k, s in enumerate(self.shares)]
        )
        # Computed once per forecast, not once per laptop and phase: each phase's learnt
        # contention powers and shares, and whether any laptop of the site has one.
        steps = [list(phase.steps) for phase in PHASES]
        self.beta = [d.contention[:, s] for s in steps]
        self.beta_share = [d.share[:, s] for s in steps]
        self.contended = [bool(b.any()) for b in self.beta]
        self.fails = d.fail_phase < N_PHASES
        self.ceiling = [
            np.ascontiguousarray(d.ceiling[:, :, p]) if _SENDING[p] else d.ceiling[:0, :0, p]
            for p in range(N_PHASES)
        ]
        """Each sending phase's ceilings, ``(R, n)`` in one block (gathered per laptop)."""

    # Resources.
    def take_place(
        self, r: np.ndarray, after: np.ndarray, *, retry: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(place, claim time), in rows ``r``, for a run claimable from ``after``: the
        place freed first; for a retried run, the one freed last before ``after`` if any
        (it leaves the least idle gap)."""
        every = r is self.rows
        free = self.place_free if every else self.place_free[r]
        place = free.argmin(axis=1)
        at = r if every else np.arange(len(r))
        if retry:
            before = np.where(free <= after[:, None], free, -np.inf)
            late = before.argmax(axis=1)
            place = np.where(np.isfinite(before[at, late]), late, place)
        return place, np.maximum(after, free[at, place])

    def take_slot(self, arrival: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slot, scan-in time): the slot freed first (the lowest of those never used
        while there are some: every run takes its slots in the same order until then,
        so no search is needed), when the laptop is there and the site open."""
        if self.fresh < self.slot_free.shape[1]:
            slot = np.full(len(self.rows), self.fresh)
            self.fresh += 1
            return slot, self.cal.next_open(arrival)
        slot = self.slot_free.argmin(axis=1)
        free_at = self.slot_free[self.rows, slot]
        return slot, self.cal.next_open(np.maximum(arrival, free_at))

    def hold_slot(self) -> np.ndarray | None:
        """A slot already held at t0 (filled in when its laptop leaves)."""
        if self.held >= self.slot_free.shape[1]:
            return None
        slot = np.full(len(self.rows), self.held)
        self.slot_free[:, self.held] = np.inf
        self.held += 1
        self.fresh = max(self.fresh, self.held)
        return slot

    # A run: its phases one after the other, from its claim until it ends.
    def run(
        self,
        r: np.ndarray,
        lap: np.ndarray,
        place: np.ndarray,
        claim: np.ndarray,
        amounts: np.ndarray,
        *,
        in_order: bool = True,
    ) -> np.ndarray:
        """When the runs, in rows ``r``, of laptops ``lap`` claimed at ``claim`` in
        ``place`` end, ``amounts[:, p]`` of each phase to do (0: skipped); the place is
        freed then. ``in_order``: the walk reaches this run in the order its streams
        start (a technician's retry is walked when it fails, before laptops whose
        streams start earlier than it: it neither waits for their bytes nor delays
        them)."""
        t = claim
        every = r is self.rows
        free_table = self.place_free if every else self.place_free[r]
        for p in range(N_PHASES):
            todo = amounts[:, p]
            sending = _SENDING[p]
            if sending and not todo.any():
                continue  # nothing to send: the phase takes no time
            free: np.ndarray | None = None
            coming: np.ndarray | None = None
            slower: np.ndarray | float = 1.0
            if self.contended[p]:
                beta = self.beta[p][lap]
                if beta.any():
                    free, coming = self._free_and_coming(free_table, r, t)
                    slower = self._contention(p, lap, beta, free, coming)
            if sending:
                ceiling = self.ceiling[p][r, lap]
                if self.contended[p]:
                    ceiling = ceiling / slower
                t = self._send(r, t, todo, ceiling, place, free_table, coming, in_order=in_order)
            elif p == CONFIGURE_PHASE and self.waves:
                if free is None:
                    free = (free_table <= t[:, None]).sum(axis=1)
                wait = self.wave[np.minimum(free_table.shape[1] - free, len(self.wave) - 1)]
                t = t + todo * slower + np.where(self.linux[lap] & (todo > 0), wait, 0.0)
            elif self.contended[p]:
                t = t + todo * slower
            else:  # alone: the same sum as times 1.0, one pass less
                t = t + todo
        self.place_free[r, place] = t
        return t

    def amounts(
        self,
        r: np.ndarray,
        lap: np.ndarray,
        *,
        fail: bool,
        start: np.ndarray | None = None,
        left: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(what each phase of the run costs, whether it fails): from phase ``start``
        (``left`` of it to do) or the first; ending with the failed try of the phase it
        fails in, if ``fail``."""
        d = self.d
        if start is None:
            if fail:
                return d.first[r, lap], self.fails[r, lap]
            return d.amount[r, lap], np.zeros(len(r), dtype=bool)
        assert left is not None
        phase = np.arange(N_PHASES)
        amounts = np.where(phase < start[:, None], 0.0, d.amount[r, lap])
        amounts[np.arange(len(r)), start] = left
        if not fail:
            return amounts, np.zeros(len(r), dtype=bool)
        # A run live at t0: a failure later than where it is now still comes.
        where = d.fail_phase[r, lap]
        failing = (where > start) & (where < N_PHASES)
        if failing.any():
            f = np.flatnonzero(failing)
            amounts = np.where(phase > np.where(failing, where, N_PHASES)[:, None], 0.0, amounts)
            amounts[f, where[f]] = d.first[r[f], lap[f], where[f]]
        return amounts, failing

    def _free_and_coming(
        self, free_table: np.ndarray, r: np.ndarray, t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(places free at ``t``, laptops that will take them): the places free by then
        go to queued laptops already at the site, which stream right after their first
        steps (this is what keeps laptops started together streaming together, as under
        ``rerate``, and slowing each other alike, whichever the walk reaches first)."""
        free = (free_table <= t[:, None]).sum(axis=1)
        coming = np.maximum(np.minimum(free - 1, self._ready_to_claim(r, t)), 0)
        return free, coming

    def _contention(
        self, p: int, lap: np.ndarray, beta: np.ndarray, free: np.ndarray, coming: np.ndarray
    ) -> np.ndarray:
        """How much slower phase ``p`` goes than alone: the runs under way when it
        starts, this one included, to the learnt power ``beta`` (``lap``'s, per step of
        the phase). Those are the places busy then (the runs walked so far: claimed
        before it) and ``coming``, the free places that laptops already at the site
        will take."""
        c = np.asarray(self.place_free.shape[1] - free + coming + 1, dtype=np.float64)
        # Each step of the phase at its own power, weighed by its share of the phase.
        return (self.beta_share[p][lap] * c[:, None] ** beta).sum(axis=1)

    def _send(
        self,
        r: np.ndarray,
        start: np.ndarray,
        size: np.ndarray,
        ceiling: np.ndarray,
        place: np.ndarray,
        free_table: np.ndarray,
        coming: np.ndarray | None,
        *,
        in_order: bool = True,
    ) -> np.ndarray:
        """When a stream of ``size`` bytes started at ``start`` ends: at its own speed
        or its share (``coming``: as ``_free_and_coming`` counts it at ``start``, if the
        caller has it), never before the site has sent the bytes started before it."""
        if not self.capped:
            return start + size / ceiling
        every = r is self.rows
        at = start[:, None]
        began = self.stream_start if every else self.stream_start[r]
        ends = self.stream_end if every else self.stream_end[r]
        sending = ((began <= at) & (ends > at)).sum(axis=1)
        if coming is None:
            _, coming = self._free_and_coming(free_table, r, start)
        n = np.minimum(sending + coming + 1, len(self.shares) - 1)
        own = start + size / np.minimum(ceiling, self.shares[n])
        if not in_order:
            self.stream_start[r, place] = start
            self.stream_end[r, place] = own
            return own
        backlog = self.backlog if every else self.backlog[r]
        queue = np.maximum(backlog, start) + size / self.totals[n]
        queue = np.where(size > 0, queue, -np.inf)
        end = np.maximum(own, queue)
        self.backlog[r] = np.maximum(backlog, queue)
        self.stream_start[r, place] = start
        self.stream_end[r, place] = end
        return end

    def _ready_to_claim(self, r: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Laptops after the one being walked that are at the site by ``at``, counted up
        to as many as there are places (no more can claim one): the queue is sorted
        per run, so only its next ``width`` laptops are looked at, not searched whole."""
        if self.queue_at is None:
            return np.zeros(len(r), dtype=np.int64)
        upto = slice(self.walked, self.walked + self.place_free.shape[1])
        window = self.queue_at[:, upto] if r is self.rows else self.queue_at[r, upto]
        return (window <= at[:, None]).sum(axis=1)

    def finish(
        self,
        lap: np.ndarray,
        slot: np.ndarray | None,
        end: np.ndarray,
        failed: np.ndarray,
    ) -> None:
        """Ready at ``end``, or failed: a technician retries it (or sets it aside)."""
        rows = self.rows
        leave = self.cal.next_cutoff(end)
        if failed.any():
            self.ready[rows, lap] = np.where(failed, self.ready[rows, lap], end)
            f = np.flatnonzero(failed)
            leave[f] = self._retry(f, lap[f], end[f], None if slot is None else slot[f])
        else:
            self.ready[rows, lap] = end
        if slot is not None:
            self.slot_free[rows, slot] = leave

    def _retry(
        self, r: np.ndarray, lap: np.ndarray, end: np.ndarray, slot: np.ndarray | None
    ) -> np.ndarray:
        """Rows ``r`` whose run failed at ``end``: when each laptop leaves its slot (a
        retried one holds it until its retry is walked: ``flush_retries``)."""
        d = self.d
        tries = self.tries[r, lap] + 1
        self.tries[r, lap] = tries
        back_at = self.cal.next_open(end + self.site.tech_delay)
        aside = d.give_up[r, lap] | (tries > self.site.max_retries)
        if not aside.any():  # the usual case: every one of them is retried
            held = np.full(len(r), -1) if slot is None else slot
            self.pending.append((r, lap, d.restart_step[r, lap], back_at, held))
            self.pending_last = max(self.pending_last, float(back_at.max()))
            return np.full(len(r), np.inf)
        self.aside[r[aside], lap[aside]] = True
        leave = np.where(aside, back_at, np.inf)
        again = ~aside
        if again.any():
            g = np.flatnonzero(again)
            held = np.full(len(g), -1) if slot is None else slot[g]
            self.pending.append((r[g], lap[g], d.restart_step[r[g], lap[g]], back_at[g], held))
            self.pending_last = max(self.pending_last, float(back_at[g].max()))
        return leave

    def flush_retries(self) -> None:
        """Walk the technicians' retries waiting (a few laptops' worth at once: each
        walk turn costs the same whatever the number of runs in it); a run retried
        twice in the batch is walked in a second round."""
        if not self.pending:
            return
        r, lap, step, at, slot = (np.concatenate(x) for x in zip(*self.pending, strict=True))
        self.pending = []
        self.pending_last = -np.inf
        while len(r):
            _, first = np.unique(r, return_index=True)
            leave = self.retry_from(r[first], lap[first], step[first], at[first])
            held = slot[first] >= 0
            self.slot_free[r[first][held], slot[first][held]] = leave[held]
            rest = np.ones(len(r), dtype=bool)
            rest[first] = False
            r, lap, step, at, slot = r[rest], lap[rest], step[rest], at[rest], slot[rest]

    def retry_from(
        self, r: np.ndarray, lap: np.ndarray, step: np.ndarray, at: np.ndarray
    ) -> np.ndarray:
        """A technician's retry, in rows ``r``, of ``lap``'s run from ``step`` at ``at``;
        returns when each laptop leaves (the carrier's collection after it is ready)."""
        place, claim = self.take_place(r, at, retry=True)
        step = np.minimum(step, len(PHASE_OF) - 1)
        left = self.d.rest_of_phase(r, lap, step)
        amounts, _ = self.amounts(r, lap, fail=False, start=PHASE_OF[step], left=left)
        end = self.run(r, lap, place, claim, amounts, in_order=False)
        self.claimed[r, lap] = claim
        self.ready[r, lap] = end
        return self.cal.next_cutoff(end)


def remaining(drawn: np.ndarray, elapsed: float) -> np.ndarray:
    """What is left of a step already ``elapsed`` seconds in, per run, given each run's
    draw of the whole step: the draws longer than ``elapsed``, less ``elapsed`` (a run
    whose own draw is shorter takes one of those in turn: the time left is drawn from
    the steps that last that long, not a fresh full step nor nothing). Past every draw,
    a tenth of the draw is left (the step has taken longer than any seen)."""
    if elapsed <= 0:
        return drawn
    longer = drawn[drawn > elapsed]
    if not len(longer):
        return 0.1 * drawn
    out = drawn - elapsed
    short = np.flatnonzero(drawn <= elapsed)
    out[short] = longer[np.arange(len(short)) % len(longer)] - elapsed
    return out


def run_site(
    site: Site, fleet: Fleet, d: Draws, *, wave: np.ndarray, linux: np.ndarray, horizon: float
) -> SiteRun:
    """Every run of one site from t0 until each laptop is ready or set aside.
    ``linux``: which laptops are configured in waves; ``horizon``: seconds after which
    a date counts as never."""
    w = _Walk(site, fleet, d, wave, linux)
    runs = len(w.rows)
    status = fleet.status

    def by_order(s: Status) -> np.ndarray:
        idx = np.flatnonzero(status == s)
        return idx[np.argsort(fleet.order[idx], kind="stable")]

    # Laptops waiting for the carrier hold their slots until its collection.
    for j in by_order(Status.READY):
        slot = w.hold_slot()
        w.ready[:, j] = fleet.ready_at[j]
        if slot is not None:
            w.slot_free[w.rows, slot] = site.calendar.next_cutoff(np.full(runs, fleet.ready_at[j]))
    w.aside[:, status == Status.ASIDE] = True
    w.ready[:, status == Status.DISPATCHED] = fleet.ready_at[status == Status.DISPATCHED]
    # Runs live at t0, in their places, from where they are.
    rows = w.rows
    width = w.place_free.shape[1]
    for i, j in enumerate(by_order(Status.RUNNING)):
        lap = np.full(runs, j)
        slot = w.hold_slot()
        s = int(fleet.step[j])
        p = int(PHASE_OF[s])
        left = d.rest_of_phase(rows, lap, np.full(runs, s))
        if SENDING[p]:
            left = np.maximum(0.0, left - fleet.progress[j])
        else:
            this = d.steps[:, j, s]
            left = left - this + remaining(this, float(fleet.elapsed[j]))
        if i < width:
            place, claim = np.full(runs, i), np.zeros(runs)
        else:  # more live than the limit now allows: it waits for a place (rare)
            place, claim = w.take_place(rows, np.zeros(runs))
        fresh = bool(fleet.retries[j] == 0)
        amounts, failed = w.amounts(rows, lap, fail=fresh, start=np.full(runs, p), left=left)
        end = w.run(rows, lap, place, claim, amounts)
        w.claimed[:, j] = claim
        w.finish(lap, slot, end, failed)
    w.flush_retries()
    # Failed runs a technician will retry (older than anything queued: they go first).
    for j in by_order(Status.FAILED):
        lap = np.full(runs, j)
        slot = w.hold_slot()
        at = site.calendar.next_open(np.full(runs, max(0.0, float(fleet.retry_at[j]))))
        step = np.full(runs, RESTART[int(fleet.step[j])])
        leave = w.retry_from(rows, lap, step, at)
        if slot is not None:
            w.slot_free[rows, slot] = leave
    # Queued runs, oldest first, then deliveries as they come.
    waiting = by_order(Status.WAITING)
    expected = np.flatnonzero(status == Status.EXPECTED)
    arrive = d.arrival[:, expected]
    order = np.argsort(arrive, axis=1, kind="stable")
    queue = np.concatenate(
        [np.broadcast_to(waiting, (runs, len(waiting))), expected[order]], axis=1
    )
    at = np.concatenate(
        [np.full((runs, len(waiting)), -np.inf), np.take_along_axis(arrive, order, 1)], axis=1
    )
    zero = np.zeros(runs)
    w.queue_at = at
    for k in range(queue.shape[1]):
        lap = queue[:, k]
        w.walked = k + 1
        if w.pending and at[:, k].min() > w.pending_last:
            # Every run's next laptop comes after every retry waiting: the retries claim
            # first (their runs are older), not behind laptops that come days later.
            w.flush_retries()
        if k < len(waiting):
            slot = w.hold_slot()
            scan, after = np.full(runs, -np.inf), zero
        else:
            slot, scan = w.take_slot(at[:, k])
            after = scan
        place, claim = w.take_place(rows, after)
        w.scanned[rows, lap] = scan
        w.claimed[rows, lap] = claim
        if k < len(waiting) and (fleet.step[lap[0]] > 0 or fleet.retries[lap[0]] > 0):
            # Queued from a later step (a technician's retry restarts at the step that
            # failed); a retried run does not fail again.
            step = np.full(runs, fleet.step[lap[0]])
            left = d.rest_of_phase(rows, lap, step)
            fresh = bool(fleet.retries[lap[0]] == 0)
            amounts, failed = w.amounts(rows, lap, fail=fresh, start=PHASE_OF[step], left=left)
        else:
            amounts, failed = w.amounts(rows, lap, fail=True)
        end = w.run(rows, lap, place, claim, amounts)
        w.finish(lap, slot, end, failed)
        if k % RETRY_BATCH == RETRY_BATCH - 1:
            w.flush_retries()
    w.flush_retries()
    w.ready[w.ready > horizon] = np.inf
    return SiteRun(ready=w.ready, aside=w.aside, scanned=w.scanned, claimed=w.claimed)
