"""The job engine: a durable, database-backed runner of provisioning runs.

Why not DBOS (which ../shared/research/engineering-choices.md §1 recommends and which
was tried first on paper against this code's needs):

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

The site's bytes-per-second cap is shared the same way, through the database: each run's
context records the rate its stream is granted, and every worker re-rates its own streams
about once a second so that the grants at a site never add up to more than the cap
(``provisioning.pipeline.bandwidth``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session

from core.db import Database
from core.errors import MasterlineError
from core.timeutil import utcnow
from inventory import lifecycle
from inventory import repository as inventory_repo
from inventory.models import Bench, Device, HardwareModel, Site
from inventory.states import TIMEOUT_OF, DeviceState, Event
from provisioning.errors import Aborted, CommandFailed, ProvisioningError
from provisioning.imaging.stream import TokenBucket
from provisioning.pipeline import stages
from provisioning.pipeline.bandwidth import SENDING_STEPS, SiteShares, drop_share
from provisioning.pipeline.steps import (
    STEP_NAMES,
    STEPS,
    GateFailed,
    Step,
    StepContext,
    image_source,
    run_image,
    sleep_backoff,
)
from provisioning.pipeline.targets import default_plan_builder
from provisioning.runs import repository, service
from provisioning.runs.models import ProvisioningRun, RunStatus
from provisioning.transports.ssh import SshEndpoint

log = logging.getLogger("masterline.worker")


@dataclass
class EngineConfig:
    worker_id: str
    cache_dir: Path
    lease_seconds: float = 30.0
    poll_seconds: float = 0.5
    max_parallel: int = 16
    backoff_base: float = 2.0
    backoff_cap: float = 30.0
    sweep_seconds: float = 5.0
    share_seconds: float = 1.0
    """How often this worker re-reads its sites' streaming runs to re-rate its streams."""
    configure_wave_seconds: float = 1.0
    """How long the first Linux laptop reaching configure waits for others to join its
    ansible-runner run (``configure.LinuxWaves``); 0 configures each on its own."""
    step_timeouts: dict[str, float] = field(default_factory=dict)
    state_timeouts: dict[DeviceState, timedelta] = field(default_factory=lambda: dict(TIMEOUT_OF))
    plan_builder: (
        Callable[[Session, Device, Any, dict[str, Any], SshEndpoint], tuple[Any, Any]] | None
    ) = None


CONFIGURE_INDEX = STEP_NAMES.index("configure")


class StepLost(Exception):
    """The run is no longer ours (aborted, failed by a timeout, taken by another)."""


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
        self._active: set[int] = set()
        # Run id -> (OS family, index of the step it is in) for the runs this worker is
        # executing: how many Linux laptops are still on their way to configure.
        self._where: dict[int, tuple[str, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=config.max_parallel, thread_name_prefix="run")
        self._last_sweep = 0.0
        self.shares = SiteShares(
            db, interval=config.share_seconds, stop=self._stop, owns=self._mine
        )
        # Imported here, with ansible-runner behind it: only a process that runs jobs
        # pays for it, not every importer of the engine's types.
        from provisioning.configure.linux import LinuxWaves

        self.waves = LinuxWaves(
            window=config.configure_wave_seconds, pending=self._linux_up_to_configure
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
        for run_id in self._claim():
            self._pool.submit(self._execute, run_id)

    def active(self) -> set[int]:
        with self._lock:
            return set(self._active)

    # Claiming.
    def _claim(self) -> list[int]:
        with self._lock:
            free = self.config.max_parallel - len(self._active)
            exclude = list(self._active)
        if free <= 0:
            return []
        claimed: list[int] = []
        with self.db.session() as s:
            now = utcnow()
            runs = repository.claimable_runs(
                s, now=now, worker_id=self.me, exclude=exclude, limit=free * 4
            )
            for run in runs:
                if len(claimed) >= free:
                    break
                limit = self.config.max_parallel
                if run.site_id is not None:
                    site = repository.lock_site(s, run.site_id)
                    if site is not None:
                        limit = site.max_imaging_streams
                live = repository.live_runs_at_site(
                    s, site_id=run.site_id, now=now, exclude=run.id or 0
                )
                if live >= limit:
                    continue
                resumed = run.status == RunStatus.RUNNING
                run.status = RunStatus.RUNNING
                run.worker_id = self.me
                run.lease_until = now + timedelta(seconds=self.config.lease_seconds)
                run.started_at = run.started_at or now
                run.updated_at = now
                s.add(run)
                service.add_event(
                    s,
                    run,
                    step=run.step_name or STEPS[min(run.step_index, len(STEPS) - 1)].name,
                    kind="resumed" if resumed else "claimed",
                    message=f"{'resumed' if resumed else 'claimed'} by worker {self.me}",
                )
                s.flush()
                assert run.id is not None
                claimed.append(run.id)
        with self._lock:
            self._active.update(claimed)
        return claimed

    def _heartbeat(self, stop: threading.Event) -> None:
        every = max(0.5, self.config.lease_seconds / 3)
        while not stop.wait(every):
            ids = self.active()
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

    # Executing.
    def _execute(self, run_id: int) -> None:
        try:
            while not self._stop.is_set():
                begun = self._begin_step(run_id)
                if begun is None:
                    return
                step, attempt, ctx, setup_error = begun
                with self._lock:
                    self._where[run_id] = (ctx.os_family if ctx else "", STEPS.index(step))
                try:
                    if setup_error is not None:
                        raise setup_error
                    assert ctx is not None
                    out = step.run(ctx)
                except (Aborted, StepLost):
                    self._finish_abort(run_id)
                    return
                except ProvisioningError as e:
                    if e.retryable and attempt < step.max_attempts:
                        self._record_retry(run_id, step, e)
                        try:
                            sleep_backoff(
                                attempt,
                                base=self.config.backoff_base,
                                cap=self.config.backoff_cap,
                                check=lambda: self._check_abort(run_id),
                            )
                        except (Aborted, StepLost):
                            self._finish_abort(run_id)
                            return
                        continue
                    self._fail(run_id, step, e)
                    return
                except Exception as e:
                    log.exception("run %s step %s crashed", run_id, step.name)
                    self._fail(run_id, step, CommandFailed(f"internal error ({type(e).__name__})"))
                    return
                finally:
                    self.shares.unregister(run_id)
                    if ctx is not None:
                        ctx.close()
                if self._end_step(run_id, step, out):
                    return
        finally:
            with self._lock:
                self._active.discard(run_id)
                self._where.pop(run_id, None)

    def _linux_up_to_configure(self) -> int:
        """This worker's Linux runs in configure or a step before it: those not yet in a
        wave are the ones a wave's leader waits for (up to its window)."""
        with self._lock:
            return sum(
                1
                for family, index in self._where.values()
                if family == "linux" and index <= CONFIGURE_INDEX
            )

    def _mine(self, run: ProvisioningRun | None) -> bool:
        return run is not None and run.status == RunStatus.RUNNING and run.worker_id == self.me

    def _begin_step(
        self, run_id: int
    ) -> tuple[Step, int, StepContext | None, ProvisioningError | None] | None:
        with self.db.session() as s:
            run = repository.get_run_for_update(s, run_id)
            if not self._mine(run):
                return None
            assert run is not None
            if run.abort_requested:
                service.finish_aborted(
                    s, run, actor=f"worker:{self.me}", reason="aborted by a technician"
                )
                return None
            step = STEPS[min(run.step_index, len(STEPS) - 1)]
            device = inventory_repo.get_device_for_update(s, run.device_id)
            assert device is not None
            if not stages.enter(s, device, step.stage, run, actor=f"worker:{self.me}"):
                service.finish_failed(
                    s,
                    run,
                    step=step.name,
                    failed_step=step.name,
                    reason=f"{step.name}: device left the pipeline ({device.state})",
                )
                return None
            run.step_name = step.name
            run.step_attempt += 1
            run.updated_at = utcnow()
            drop_share(run, step.name)
            s.add(run)
            service.add_event(
                s,
                run,
                step=step.name,
                kind="step_started",
                message=f"{step.name} attempt {run.step_attempt}",
            )
            attempt = run.step_attempt
            try:
                ctx = self._context(s, run, device, step)
            except ProvisioningError as e:
                return step, attempt, None, e
            except MasterlineError as e:  # no image, file gone, no configuration...
                return step, attempt, None, CommandFailed(e.message)
        return step, attempt, ctx, None

    def _context(self, s: Session, run: ProvisioningRun, device: Device, step: Step) -> StepContext:
        assert run.id is not None
        if device.bench_id is None or device.slot is None:
            raise CommandFailed(f"{device.serial} is not in a bench slot")
        endpoint_row = repository.get_endpoint(s, device.bench_id, device.slot)
        if endpoint_row is None:
            raise CommandFailed(
                f"no provisioning-environment address for bench slot "
                f"{device.bench_id}/{device.slot}"
            )
        endpoint = SshEndpoint(
            host=endpoint_row.host,
            port=endpoint_row.ssh_port,
            user=endpoint_row.ssh_user,
            key_path=Path(endpoint_row.key_path),
            known_hosts_path=Path(endpoint_row.known_hosts_path),
        )
        bench = s.get(Bench, device.bench_id)
        site = s.get(Site, bench.site_id) if bench else None
        site_code = site.code if site else "default"
        model = s.get(HardwareModel, device.hardware_model_id) if device.hardware_model_id else None
        source = image_source(run_image(s, run.image_id))
        image_id = run.image_id
        options = dict(endpoint_row.options)
        device_id = device.id
        db = self.db
        builder = self.config.plan_builder or default_plan_builder
        cache: dict[str, tuple[Any, Any]] = {}

        def plan_loader() -> tuple[Any, Any]:
            if "plan" not in cache:
                # A write session: the first plan of a WireGuard device stores its key.
                with db.session() as rs:
                    fresh = rs.get(Device, device_id)
                    assert fresh is not None
                    img = run_image(rs, image_id)
                    cache["plan"] = builder(rs, fresh, img, options, endpoint)
            return cache["plan"]

        timeout = self.config.step_timeouts.get(step.name, step.timeout)
        bucket: TokenBucket | None = None
        if step.name in SENDING_STEPS and site is not None and site.max_bytes_per_second:
            assert site.id is not None
            bucket = self.shares.register(run.id, site.id)
        return StepContext(
            run_id=run.id,
            serial=device.serial,
            os_family=run.os_family,
            endpoint=endpoint,
            endpoint_options=options,
            disk_rule=model.disk_rule if model else "largest",
            site_code=site_code,
            cache_dir=self.config.cache_dir / site_code,
            image=source,
            state=dict(run.context),
            timeout=timeout,
            progress=self._progress_reporter(run.id),
            on_event=self._event_recorder(run.id, step.name),
            plan_loader=plan_loader,
            cancelled=lambda: self._cancelled(run.id or 0),
            bucket=bucket,
            waves=self.waves if self.config.configure_wave_seconds > 0 else None,
        )

    def _cancelled(self, run_id: int) -> bool:
        try:
            self._check_abort(run_id)
        except (Aborted, StepLost):
            return True
        return False

    def _check_abort(self, run_id: int) -> None:
        with self.db.session(write=False) as s:
            run = repository.get_run(s, run_id)
            if not self._mine(run):
                raise StepLost()
            assert run is not None
            if run.abort_requested:
                raise Aborted("aborted by a technician")

    def _progress_reporter(self, run_id: int) -> Callable[[int, int], None]:
        state = {
            "last": 0.0,
            "t0": time.monotonic(),
            "rate": 0.0,
            "prev_bytes": 0,
            "prev_t": time.monotonic(),
        }

        def report(sent: int, total: int) -> None:
            now = time.monotonic()
            if sent < total and now - state["last"] < 0.5 and sent != 0:
                return
            dt = now - state["prev_t"]
            if dt > 0 and sent > state["prev_bytes"]:
                inst = (sent - state["prev_bytes"]) / dt
                state["rate"] = inst if state["rate"] == 0 else 0.7 * state["rate"] + 0.3 * inst
            state["prev_bytes"], state["prev_t"], state["last"] = sent, now, now
            rate = state["rate"]
            with self.db.session() as s:
                run = repository.get_run_for_update(s, run_id)
                if not self._mine(run):
                    raise StepLost()
                assert run is not None
                run.progress_bytes, run.progress_total = sent, total
                run.rate_bps = float(rate)
                run.eta_seconds = (total - sent) / rate if rate > 0 else None
                run.updated_at = utcnow()
                s.add(run)
                if run.abort_requested:
                    raise Aborted("aborted by a technician")

        return report

    def _event_recorder(self, run_id: int, step: str) -> Callable[[dict[str, Any]], None]:
        def record(event: dict[str, Any]) -> None:
            try:
                with self.db.session() as s:
                    run = repository.get_run(s, run_id)
                    if run is None:
                        return
                    kind = str(event.get("event") or event.get("kind") or "event")[:24]
                    message = str(event.get("message") or event.get("task") or kind)[:1000]
                    service.add_event(
                        s,
                        run,
                        step=step,
                        kind=kind,
                        message=message,
                        details={
                            k: v
                            for k, v in event.items()
                            if isinstance(v, str | int | float | bool)
                        },
                    )
            except Exception:
                log.exception("could not record a configure event of run %s", run_id)

        return record

    def _end_step(self, run_id: int, step: Step, out: dict[str, Any]) -> bool:
        """Commit a step's result; returns True when the run is over."""
        with self.db.session() as s:
            run = repository.get_run_for_update(s, run_id)
            if not self._mine(run):
                return True
            assert run is not None
            run.context = {**run.context, **out}
            if "identity" in out:
                stages.record_identity(s, run.device_id, out["identity"])
            done = {k: v for k, v in out.items() if k != "identity"}
            service.add_event(
                s, run, step=step.name, kind="step_done", message=f"{step.name} done", details=done
            )
            run.step_index += 1
            run.step_attempt = 0
            run.updated_at = utcnow()
            if run.step_index < len(STEPS):
                s.add(run)
                return False
            device = inventory_repo.get_device_for_update(s, run.device_id)
            assert device is not None
            checks = out.get("checks", [])
            lifecycle.apply(
                s,
                device,
                Event.DONE,
                actor=f"worker:{self.me}",
                details={"run_id": run.id, "checks": checks},
            )
            run.status = RunStatus.SUCCEEDED
            run.step_name = None
            run.last_error = None
            run.worker_id = None
            run.lease_until = None
            run.finished_at = utcnow()
            s.add(run)
            service.add_event(s, run, step=step.name, kind="succeeded", message="device READY")
            return True

    def _record_retry(self, run_id: int, step: Step, e: ProvisioningError) -> None:
        with self.db.session() as s:
            run = repository.get_run_for_update(s, run_id)
            if not self._mine(run):
                return
            assert run is not None
            run.last_error = f"{step.name}: {e.message}"[:1000]
            run.updated_at = utcnow()
            drop_share(run, step.name)  # backing off: nothing to send
            s.add(run)
            service.add_event(
                s, run, step=step.name, kind="retry", message=f"{type(e).__name__}: {e.message}"
            )

    def _fail(self, run_id: int, step: Step, e: ProvisioningError) -> None:
        with self.db.session() as s:
            run = repository.get_run_for_update(s, run_id)
            if not self._mine(run):
                return
            assert run is not None
            reason = f"{step.name}: {e.message}"[:1000]
            details: dict[str, Any] = {
                "run_id": run.id,
                "step": step.name,
                "error": type(e).__name__,
            }
            if isinstance(e, GateFailed):
                details["failed_checks"] = e.failed
            device = inventory_repo.get_device_for_update(s, run.device_id)
            assert device is not None
            if device.state == DeviceState.QUEUED:
                lifecycle.apply(s, device, Event.IMAGE, actor=f"worker:{self.me}")
            if device.state in DeviceState.working():
                lifecycle.apply(
                    s, device, Event.FAIL, actor=f"worker:{self.me}", reason=reason, details=details
                )
            service.finish_failed(
                s, run, step=step.name, failed_step=step.name, reason=reason, details=details
            )

    def _finish_abort(self, run_id: int) -> None:
        with self.db.session() as s:
            run = repository.get_run_for_update(s, run_id)
            if not self._mine(run):
                return
            assert run is not None
            service.finish_aborted(
                s, run, actor=f"worker:{self.me}", reason="aborted by a technician"
            )
