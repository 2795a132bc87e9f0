"""Running one claimed run, step after step, each in transactions of its own.

Before a step: the step is saved on the run (``step_name``, ``step_attempt``) and the
device moved into the step's stage, then committed, so a killed worker resumes at the
step it was in (Ironic's deploy steps). After it: its result merged into the run's
context, the next step saved, or the device READY and the run succeeded
(``stages.complete``). A failure is retried while the scheduling rule allows
(``scheduling.after_failure``, with its backoff), else the device and the run fail
together (``stages.fail``). A step whose laptop has no live provisioning environment
(``NoLivePe``: a registered laptop not booted yet, or whose PE went away) does not
start: the run goes back to the queue, untouched, until its PE registers (or
``pe_wait_seconds`` pass: another look). The run's status only ever changes through
``runs/lifecycle.py``; the device's through ``inventory/lifecycle.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from core import logs, metrics
from core.db import Database
from core.errors import MasterlineError
from core.timeutil import utcnow
from inventory import repository as inventory_repo
from provisioning.bootcontrol.registered import PE_LEFT
from provisioning.errors import Aborted, CommandFailed, NoLivePe, ProvisioningError
from provisioning.pipeline import stages
from provisioning.pipeline.bandwidth import SiteShares, drop_share
from provisioning.pipeline.context import ContextBuilder, StepLost, owned_by
from provisioning.pipeline.scheduling import AfterFailure, after_failure, backoff_delay
from provisioning.pipeline.steps import STEPS, Step, StepContext, StepResult, step_at
from provisioning.runs import lifecycle, repository, service

log = logging.getLogger("masterline.worker")

Begun = tuple[Step, int, StepContext | None, ProvisioningError | None]


class _WaitForPe(Exception):
    """Raised out of a step's begin transaction to roll it back: the step never began."""

    def __init__(self, error: NoLivePe) -> None:
        super().__init__(error.message)
        self.error = error


def _waiting(step: str, why: str) -> str:
    """A waiting run's ``last_error``: what the bench view shows while it waits."""
    return f"{step}: waiting: {why}"


class LiveRuns:
    """The runs this worker is executing, and where each is: (OS family, step index),
    and what it writes: (site id, image id), a relay wave's key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: set[int] = set()
        self._where: dict[int, tuple[str, int, tuple[int, int]]] = {}

    def add(self, run_ids: list[int]) -> None:
        with self._lock:
            self._active.update(run_ids)

    def discard(self, run_id: int) -> None:
        with self._lock:
            self._active.discard(run_id)
            self._where.pop(run_id, None)

    def place(self, run_id: int, family: str, index: int, writes: tuple[int, int]) -> None:
        with self._lock:
            self._where[run_id] = (family, index, writes)

    def up_to(self, step_index: int, writes: tuple[int, int]) -> int:
        """How many runs writing ``writes`` (site id, image id) are in the step at
        ``step_index`` or a step before it."""
        with self._lock:
            return sum(1 for _, i, w in self._where.values() if i <= step_index and w == writes)

    def ids(self) -> set[int]:
        with self._lock:
            return set(self._active)

    def where(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(family, index) for family, index, _ in self._where.values()]


class RunExecutor:
    """Executes claimed runs on the engine's threads, one thread per run."""

    def __init__(
        self,
        db: Database,
        contexts: ContextBuilder,
        *,
        shares: SiteShares,
        live: LiveRuns,
        stop: threading.Event,
        backoff_base: float,
        backoff_cap: float,
        pe_wait_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.db = db
        self.contexts = contexts
        self.me = contexts.me
        self.actor = f"worker:{self.me}"
        self.shares = shares
        self.live = live
        self._stop = stop
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.pe_wait_seconds = pe_wait_seconds
        self._clock = clock
        self._sleep = sleep

    def execute(self, run_id: int) -> None:
        with logs.bound(run_id=run_id):  # every line logged for this run carries its id
            self._execute(run_id)

    def _execute(self, run_id: int) -> None:
        try:
            while not self._stop.is_set():
                begun = self.begin_step(run_id)
                if begun is None:
                    return
                step, attempt, ctx, setup_error = begun
                writes = (ctx.site_id, ctx.image.image_id) if ctx else (0, 0)
                self.live.place(run_id, ctx.os_family if ctx else "", STEPS.index(step), writes)
                try:
                    if setup_error is not None:
                        raise setup_error
                    assert ctx is not None
                    with logs.bound(laptop=ctx.serial), metrics.step_timer(step.name):
                        log.info("step %s started (attempt %s)", step.name, attempt)
                        out = step.run(ctx)
                except (Aborted, StepLost):
                    self._finish_abort(run_id)
                    return
                except ProvisioningError as e:
                    verdict = after_failure(
                        retryable=e.retryable, attempt=attempt, max_attempts=step.max_attempts
                    )
                    if verdict is AfterFailure.RETRY:
                        self._record_retry(run_id, step, e)
                        try:
                            self._backoff(run_id, attempt)
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
            self.live.discard(run_id)

    def cancelled(self, run_id: int) -> bool:
        try:
            self.check_abort(run_id)
        except (Aborted, StepLost):
            return True
        return False

    def check_abort(self, run_id: int) -> None:
        """:raises StepLost: the run is not this worker's any more.
        :raises Aborted: a technician asked to abort it."""
        with self.db.session(write=False) as s:
            run = repository.get_run(s, run_id)
            if not owned_by(run, self.me):
                raise StepLost()
            assert run is not None
            if run.abort_requested:
                raise Aborted("aborted by a technician")

    def _backoff(self, run_id: int, attempt: int) -> None:
        """Wait before the next attempt, noticing an abort every quarter second."""
        delay = backoff_delay(attempt, base=self.backoff_base, cap=self.backoff_cap)
        end = self._clock() + delay
        while self._clock() < end:
            self.check_abort(run_id)
            self._sleep(min(0.25, max(0.0, end - self._clock())))

    def begin_step(self, run_id: int) -> Begun | None:
        """Save the step about to run on the run and move the device into its stage, in
        one transaction; None when the run is not this worker's to run any more, or
        waits for its laptop's PE (then nothing of the step's start is kept)."""
        try:
            return self._begin_step(run_id)
        except _WaitForPe as wait:
            self._wait_for_pe(run_id, wait.error)
            return None

    def _begin_step(self, run_id: int) -> Begun | None:
        with self.db.session() as s:
            run = repository.get_run_for_update(s, run_id)
            if not owned_by(run, self.me):
                return None
            assert run is not None
            if run.abort_requested:
                service.finish_aborted(s, run, actor=self.actor, reason="aborted by a technician")
                return None
            step = step_at(run.step_index)
            device = inventory_repo.get_device_for_update(s, run.device_id)
            assert device is not None
            if not stages.enter(s, device, step.stage, run, actor=self.actor):
                stages.left_the_pipeline(s, run, device, step=step.name)
                return None
            run.step_name = step.name
            run.step_attempt += 1
            run.updated_at = utcnow()
            drop_share(run, step.name)
            s.add(run)
            lifecycle.add_event(
                s,
                run,
                step=step.name,
                kind="step_started",
                message=f"{step.name} attempt {run.step_attempt}",
            )
            attempt = run.step_attempt
            try:
                ctx = self.contexts.build(s, run, device, step)
                if run.last_error and run.last_error.startswith(_waiting(step.name, "")):
                    run.last_error = None  # its PE is there now: no longer the news
            except NoLivePe as e:
                raise _WaitForPe(e) from e
            except ProvisioningError as e:
                return step, attempt, None, e
            except MasterlineError as e:  # no image, file gone, no configuration...
                return step, attempt, None, CommandFailed(e.message)
        return step, attempt, ctx, None

    def _end_step(self, run_id: int, step: Step, out: StepResult) -> bool:
        """Commit a step's result; returns True when the run is over."""
        over = self._commit_step(run_id, step, out)
        if out.get("rebooted") and PE_LEFT:
            # The laptop left its PE: its registration ends, in a transaction of its own
            # (the registration side locks a laptop's boots before its run; this one
            # never holds the run while it waits for them).
            with self.db.session() as s:
                run = repository.get_run(s, run_id)
                if run is not None:
                    for left in PE_LEFT:
                        left(s, run.device_id)
        return over

    def _commit_step(self, run_id: int, step: Step, out: StepResult) -> bool:
        with self.db.session() as s:
            run = repository.get_run_for_update(s, run_id)
            if not owned_by(run, self.me):
                return True
            assert run is not None
            run.context = {**run.context, **out}
            if "identity" in out:
                stages.record_identity(s, run.device_id, out["identity"])
            done = {k: v for k, v in out.items() if k != "identity"}
            lifecycle.add_event(
                s, run, step=step.name, kind="step_done", message=f"{step.name} done", details=done
            )
            run.step_index += 1
            run.step_attempt = 0
            run.updated_at = utcnow()
            s.add(run)
            if run.step_index < len(STEPS):
                return False
            stages.complete(s, run, step=step.name, checks=out.get("checks", []), actor=self.actor)
            return True

    def _wait_for_pe(self, run_id: int, e: NoLivePe) -> None:
        """Back to the queue until the laptop's PE registers (``runs/waiting.py`` makes
        it claimable at once) or ``pe_wait_seconds`` pass: it holds no thread and no
        imaging stream of its site while it waits."""
        with self.db.session() as s:
            run = repository.get_run_for_update(s, run_id)
            if not owned_by(run, self.me):
                return
            assert run is not None
            step = step_at(run.step_index).name
            log.info("run %s waits for its PE: %s", run_id, e.message)
            lifecycle.wait(
                s,
                run,
                step=step,
                reason=_waiting(step, e.message),
                not_before=utcnow() + timedelta(seconds=self.pe_wait_seconds),
            )

    def _record_retry(self, run_id: int, step: Step, e: ProvisioningError) -> None:
        with self.db.session() as s:
            run = repository.get_run_for_update(s, run_id)
            if not owned_by(run, self.me):
                return
            assert run is not None
            run.last_error = f"{step.name}: {e.message}"[:1000]
            run.updated_at = utcnow()
            drop_share(run, step.name)  # backing off: nothing to send
            s.add(run)
            lifecycle.add_event(
                s, run, step=step.name, kind="retry", message=f"{type(e).__name__}: {e.message}"
            )

    def _fail(self, run_id: int, step: Step, e: ProvisioningError) -> None:
        with self.db.session() as s:
            run = repository.get_run_for_update(s, run_id)
            if owned_by(run, self.me):
                assert run is not None
                stages.fail(s, run, step=step.name, error=e, actor=self.actor)

    def _finish_abort(self, run_id: int) -> None:
        with self.db.session() as s:
            run = repository.get_run_for_update(s, run_id)
            if owned_by(run, self.me):
                assert run is not None
                service.finish_aborted(s, run, actor=self.actor, reason="aborted by a technician")
