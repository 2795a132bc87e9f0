"""The job engine: a durable, database-backed runner of provisioning runs.

Why not DBOS (a durable workflow library on SQLite or PostgreSQL, the first choice of
the engineering notes, which was tried on paper against this code's needs):

* the per-site stream limit lives in ``Site.max_imaging_streams`` and changes at run
  time; a DBOS queue's ``partition_concurrency`` is one number fixed when the queue is
  registered, for every partition;
* the run row must already hold the step saved before it runs, attempts, progress and
  the last error for the API and the bench view; DBOS's checkpoints would be a second
  source of truth that can disagree with it after a crash (its steps are at-least-once
  anyway, so our steps must be idempotent either way);
* enqueueing from the API process after commit needs a ``DBOSClient`` on a second system
  database, and the per-test PostgreSQL database (truncated between tests) does not reset
  DBOS's own tables, so workflow ids collide from one test to the next.

So the queue *is* the ``provisioning_run`` table, with the semantics DBOS gave us:
a run is claimed under a lease (``worker_id``, ``lease_until``) renewed by a heartbeat;
the step about to run is committed before it runs; a worker restarted with the same id
takes its own runs back at once (DBOS's executor id), any worker takes runs whose lease
expired (DBOS's recovery of a dead executor); a site's live runs never exceed its
``max_imaging_streams`` (the claim locks the site row on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` serialises claims). Nothing else in the code knows how runs are
scheduled: services queue a run by committing it ``queued``.

This module only claims, leases and dispatches: which runs to take is the pure rule
``scheduling.admit``; executing a claimed run is ``execution.RunExecutor``'s; what
happens to the device is ``stages``'; a run's status changes only in ``runs/lifecycle``.

The site's bytes-per-second cap is shared the same way, through the database: each run's
context records the rate its stream is granted, and every worker re-rates its own streams
about once a second so that the grants at a site never add up to more than the cap
(``pipeline/bandwidth.py``, from the pure rule ``scheduling.rerate``).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING

from core.db import Database
from core.timeutil import utcnow
from provisioning.pipeline import stages
from provisioning.pipeline.bandwidth import SiteShares
from provisioning.pipeline.config import EngineConfig
from provisioning.pipeline.context import ContextBuilder, owned_by
from provisioning.pipeline.execution import LiveRuns, RunExecutor
from provisioning.pipeline.scheduling import Candidate, admit, on_their_way_to
from provisioning.pipeline.steps import CONFIGURE_INDEX, STREAM_INDEX
from provisioning.runs import lifecycle, repository
from provisioning.runs.models import ProvisioningRun, RunStatus

if TYPE_CHECKING:
    from provisioning.pipeline.relays import RelayWaves

log = logging.getLogger("masterline.worker")


class JobEngine:
    """Claims queued runs and executes their steps on a thread pool.

    The bulk bytes of a stream go through an ``ssh`` subprocess per stream, so threads
    here only move 1 MiB buffers between a file and a pipe (GIL released) and the
    process scales to the site's stream limit.
    """

    def __init__(self, db: Database, config: EngineConfig) -> None:
        self.db = db
        self.config = config
        self.me = config.worker_id
        self.live = LiveRuns()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=config.max_parallel, thread_name_prefix="run")
        self._last_sweep = 0.0
        self.shares = SiteShares(
            db, interval=config.share_seconds, stop=self._stop, owns=self._mine
        )
        # Imported here, with ansible-runner behind it: only a process that runs jobs
        # pays for it, not every importer of the engine's types.
        from provisioning.pipeline.waves import LinuxWaves

        self.waves = LinuxWaves(
            window=config.configure_wave_seconds, pending=self._linux_up_to_configure
        )
        self._queued: dict[tuple[int, int], tuple[float, int]] = {}
        self.relays = self._relay_waves(config)
        self.contexts = ContextBuilder(
            db,
            config,
            shares=self.shares,
            waves=self.waves,
            relays=self.relays,
            cancelled=lambda run_id: self.executor.cancelled(run_id),
        )
        self.executor = RunExecutor(
            db,
            self.contexts,
            shares=self.shares,
            live=self.live,
            stop=self._stop,
            backoff_base=config.backoff_base,
            backoff_cap=config.backoff_cap,
            pe_wait_seconds=config.pe_wait_seconds,
        )

    # Loop.
    def run_forever(self, stop: threading.Event | None = None) -> None:
        stop = stop or self._stop
        beat = threading.Thread(target=self._heartbeat, args=(stop,), daemon=True)
        beat.start()
        log.info("worker %s started", self.me)
        try:
            while not stop.is_set():
                try:
                    self.tick()
                except Exception:
                    log.exception("worker tick failed; retrying")
                stop.wait(self.config.poll_seconds)
        finally:
            self._stop.set()
            self._pool.shutdown(wait=True, cancel_futures=False)
            log.info("worker %s stopped", self.me)

    def stop(self) -> None:
        self._stop.set()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep >= self.config.sweep_seconds:
            self._last_sweep = now
            stages.sweep_timeouts(self.db, self.config.state_timeouts)
        for run_id in self.claim():
            self._pool.submit(self.executor.execute, run_id)

    def active(self) -> set[int]:
        return self.live.ids()

    # Claiming.
    def claim(self) -> list[int]:
        """Claim the runs this worker may take now (``scheduling.admit``): committed
        ``running`` under its lease before they are handed to a thread."""
        active = self.live.ids()
        free = self.config.max_parallel - len(active)
        if free <= 0:
            return []
        with self.db.session() as s:
            now = utcnow()
            runs = repository.claimable_runs(
                s, now=now, worker_id=self.me, exclude=sorted(active), limit=free * 4
            )
            by_id = {r.id: r for r in runs if r.id is not None}
            sites = sorted({r.site_id for r in runs if r.site_id is not None})
            # Lock every site a candidate is at (in id order), then count what runs there.
            limits: dict[int | None, int] = {}
            for site_id in sites:
                site = repository.lock_site(s, site_id)
                if site is not None:
                    limits[site_id] = site.max_imaging_streams
            live = {
                site_id: repository.live_run_ids_at_site(s, site_id=site_id, now=now)
                for site_id in {r.site_id for r in runs}
            }
            chosen = admit(
                [Candidate(run_id, by_id[run_id].site_id) for run_id in by_id],
                free=free,
                site_limits=limits,
                default_limit=self.config.max_parallel,
                live=live,
            )
            lease_until = now + timedelta(seconds=self.config.lease_seconds)
            for run_id in chosen:
                lifecycle.claim(
                    s, by_id[run_id], worker_id=self.me, lease_until=lease_until, now=now
                )
            s.flush()
        self.live.add(chosen)
        return chosen

    def _heartbeat(self, stop: threading.Event) -> None:
        every = max(0.5, self.config.lease_seconds / 3)
        while not stop.wait(every):
            ids = self.live.ids()
            if not ids:
                continue
            try:
                with self.db.session() as s:
                    until = utcnow() + timedelta(seconds=self.config.lease_seconds)
                    for run_id in ids:
                        run = repository.get_run_for_update(s, run_id)
                        if run and run.worker_id == self.me and run.status == RunStatus.RUNNING:
                            run.lease_until = until
                            s.add(run)
            except Exception:
                log.exception("lease renewal failed")

    def _relay_waves(self, config: EngineConfig) -> RelayWaves | None:
        if not config.relay:
            return None
        from provisioning.pipeline.relays import RelayWaves
        from provisioning.relay.plan import SlowRule, WaveRule

        return RelayWaves(
            rule=WaveRule(
                window_seconds=config.relay_window_seconds, max_members=config.relay_max_members
            ),
            chunk_bytes=config.relay_chunk_bytes,
            source_host=config.relay_host,
            first_chunk_seconds=config.relay_first_chunk_seconds,
            slow=SlowRule(ratio=config.relay_slow_ratio) if config.relay_slow_ratio > 0 else None,
            pending=self._up_to_stream,
        )

    def _up_to_stream(self, writes: tuple[int, int]) -> int:
        """The runs a relay wave's first laptop may wait for (up to its window): this
        worker's runs writing the same image at the same site (``writes``: the wave's
        key) in the stream step or a step before it, and the queued runs of that image
        and site not past it. A laptop scanned with others boots its PE when it boots: its
        run is queued, holding no thread, until the PE registers, and the laptop whose PE
        came up first would otherwise find no one coming and stream alone (as the VM
        laptops of tests/lab/test_vm_e2e.py did). Only as many queued runs as this worker
        has free threads for count: with every thread busy (a wave of 16 laptops on a
        4-thread worker) none of them can reach this stream step before the window
        ends, and waiting for them cost every group of four its whole window. Runs of
        another image or site never join this wave: a laptop of another client scanned
        but not yet plugged in cost every wave its window before they were left out."""
        live = self.live.up_to(STREAM_INDEX, writes)
        free = max(0, self.config.max_parallel - len(self.live.ids()))
        return live + min(free, self._queued_up_to_stream(writes))

    def _queued_up_to_stream(self, writes: tuple[int, int]) -> int:
        # Read at most once a second per key: the leader asks every 50 ms, under its lock.
        now = time.monotonic()
        at, count = self._queued.get(writes, (float("-inf"), 0))
        if now - at >= 1.0:
            site_id, image_id = writes
            try:
                with self.db.session(write=False) as s:
                    count = repository.queued_up_to_step(
                        s, step_index=STREAM_INDEX, site_id=site_id or None, image_id=image_id
                    )
            except Exception:  # the database is away: wait for no one more
                log.exception("could not count the queued runs")
                count = 0
            self._queued[writes] = (now, count)
        return count

    def _linux_up_to_configure(self) -> int:
        """This worker's Linux runs in configure or a step before it: those not yet in a
        wave are the ones a wave's leader waits for (up to its window)."""
        return on_their_way_to(self.live.where(), family="linux", step_index=CONFIGURE_INDEX)

    def _mine(self, run: ProvisioningRun | None) -> bool:
        return owned_by(run, self.me)
