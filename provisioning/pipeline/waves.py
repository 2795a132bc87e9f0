"""Configure waves: the Linux laptops that reach their configure step in one worker
together are configured in one ansible-runner run (``configure_linux_batch``).

When a wave starts is the engine's scheduling rule ``scheduling.WaveRule`` (pure, also
what the forecast simulates); this module is the threads around it. Time comes from
``clock`` and ``sleep``, so a test can drive it without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioning.configure.ansible import CancelCallback
from provisioning.configure.linux import EventCallback, check_family, configure_linux_batch
from provisioning.configure.plan import ConfigPlan, OsTarget
from provisioning.errors import (
    CommandFailed,
    CommandTimedOut,
    ConfigureCancelled,
    ProvisioningError,
)
from provisioning.pipeline.scheduling import WaveRule


@dataclass
class _Member:
    target: OsTarget
    plan: ConfigPlan
    on_event: EventCallback
    timeout: float
    cancel: CancelCallback | None
    error: ProvisioningError | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def cancelled(self) -> bool:
        return self.cancel is not None and bool(self.cancel())


@dataclass
class _Wave:
    members: list[_Member] = field(default_factory=list)
    closed: bool = False


class LinuxWaves:
    """Gathers the Linux laptops that reach their configure step in this worker together
    into one ansible-runner run (``configure_linux_batch``).

    Why: one ansible-playbook run per laptop pays its start-up each time, 2.8x the
    controller CPU and 1.4x the wall time of one run for five laptops
    (docs/benchmarks.md, "Configure"); laptops streamed together reach configure
    together. Each laptop still gets its own verdict, events and retries: its run's
    thread waits for its own result. The first laptop of a wave leads it: it waits
    until every laptop ``pending`` counts has joined, or ``window`` seconds, or a full
    wave, then runs it and hands every member its result.

    A member aborted during the wave stops the ansible run (a run has one cancel); the
    members that were not aborted are then configured again, in a smaller wave, without
    it (the playbook is idempotent), so one technician's abort costs the others time,
    never their run.
    """

    def __init__(
        self,
        *,
        window: float = 1.0,
        max_size: int = 10,
        work_dir: Path | None = None,
        pending: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rule = WaveRule(window=window, max_size=max_size)
        self.window = window
        self.max_size = max_size
        self._clock = clock
        self._sleep = sleep
        self.work_dir = work_dir
        """As ``configure_os``'s: where Ansible's private data dirs go."""
        self.pending = pending
        """How many laptops are in configure or on their way to it (the worker's count);
        a leader stops waiting once all of them have joined a wave."""
        self._lock = threading.Lock()
        self._open: _Wave | None = None
        self._joined = 0  # laptops inside ``configure`` right now

    def configure(
        self,
        target: OsTarget,
        plan: ConfigPlan,
        *,
        on_event: EventCallback,
        timeout: float,
        cancel: CancelCallback | None = None,
    ) -> None:
        """As ``configure_os`` for one Linux laptop, in a wave with its neighbours."""
        check_family(target, plan)  # this laptop's own error, before it joins
        me = _Member(target, plan, on_event, timeout, cancel)
        with self._lock:
            self._joined += 1
        try:
            self._join(me)
        finally:
            with self._lock:
                self._joined -= 1
        if me.error is not None:
            raise me.error

    def _join(self, me: _Member) -> None:
        with self._lock:
            wave = self._open
            lead = wave is None or wave.closed
            if lead:
                wave = self._open = _Wave()
            assert wave is not None
            wave.members.append(me)
            if self.rule.full(len(wave.members)):
                wave.closed = True
        if lead:
            self._lead(wave)
        # The leader sets every member's result, whatever happens to it; the bound is
        # the wave's whole budget: the window, every re-run, and a margin.
        elif not me.done.wait(self.window + me.timeout * self.max_size + 60):
            me.error = CommandTimedOut(f"configure {me.target.label}: its wave never finished")

    def _lead(self, wave: _Wave) -> None:
        opened_at = self._clock()
        while self._keep_waiting(wave, opened_at):
            self._sleep(0.05)
        with self._lock:
            wave.closed = True
            if self._open is wave:
                self._open = None
        try:
            self._run(list(wave.members))
        finally:
            for m in wave.members:
                if not m.done.is_set():
                    m.error = m.error or CommandFailed(
                        f"configure {m.target.label}: its wave stopped unexpectedly"
                    )
                    m.done.set()

    def _keep_waiting(self, wave: _Wave, opened_at: float) -> bool:
        with self._lock:
            return not wave.closed and self.rule.keep_waiting(
                now=self._clock(),
                opened_at=opened_at,
                size=len(wave.members),
                pending=self.pending() if self.pending is not None else None,
                joined=self._joined,
            )

    def _run(self, members: list[_Member]) -> None:
        remaining = members
        # Each pass ends the wave or removes at least one aborted member.
        for _ in range(len(members)):
            by_label = {m.target.label: m for m in remaining}

            def on_event(event: dict[str, Any], by_label: dict[str, _Member] = by_label) -> None:
                member = by_label.get(str(event.get("host", "")))
                for m in [member] if member is not None else by_label.values():
                    m.on_event(event)

            def cancel(group: list[_Member] = remaining) -> bool:
                return any(m.cancelled() for m in group)

            note = f"one Ansible run for {len(remaining)} laptop(s): {', '.join(sorted(by_label))}"
            for m in remaining:  # in each run's log: whom it was configured with
                m.on_event({"kind": "wave", "laptops": len(remaining), "message": note})
            try:
                errors = configure_linux_batch(
                    [(m.target, m.plan) for m in remaining],
                    on_event=on_event,
                    timeout=max(m.timeout for m in remaining),
                    cancel=cancel,
                    work_dir=self.work_dir,
                )
            except ProvisioningError as e:  # the wave as a whole (its private dir, ...)
                for m in remaining:
                    m.error = e
                    m.done.set()
                return
            rerun: list[_Member] = []
            for m in remaining:
                error = errors[m.target.label]
                if isinstance(error, ConfigureCancelled) and not m.cancelled():
                    rerun.append(m)  # stopped for another member's abort
                    continue
                m.error = error
                m.done.set()
            if not rerun:
                return
            remaining = rerun
