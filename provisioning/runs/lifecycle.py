"""The one writer of a run's status, and its log.

Every change of ``ProvisioningRun.status`` goes through ``_move`` (checked against
``runs/states.py``'s table) and is logged in ``provisioning_run_event`` in the same
transaction: ``claim`` (a worker takes it), ``wait`` (back to the queue until its
laptop's PE registers), ``finish`` (succeeded, failed or aborted: worker, lease and end
time cleared once, here) and ``requeue`` (a retry). Like services, nothing here
commits.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlmodel import Session

from core.timeutil import utcnow
from provisioning.runs import repository
from provisioning.runs.models import ProvisioningRun, RunStatus, RunStepEvent
from provisioning.runs.states import STEP_NAMES, TERMINAL, RunEvent, next_status

FinishedHook = Callable[[Session, ProvisioningRun], None]
ON_FINISHED: list[FinishedHook] = []
"""Called when a run ends (succeeded, failed, aborted), inside its transaction, by the
domains above that react (the forecast marks itself out of date); registered at start
by ``wiring.wire``. A hook must not commit."""

_FINISHED_KIND = {RunEvent.SUCCEED: "succeeded", RunEvent.FAIL: "failed", RunEvent.ABORT: "aborted"}


def _move(run: ProvisioningRun, event: RunEvent, now: datetime) -> RunStatus:
    run.status = next_status(run.status, event)
    run.updated_at = now
    return run.status


def claim(
    session: Session, run: ProvisioningRun, *, worker_id: str, lease_until: datetime, now: datetime
) -> bool:
    """``worker_id`` takes ``run`` under a lease until ``lease_until``. Returns whether
    it was a resumption (the run was already running: a restarted or dead worker's).

    A run waiting for its PE taken for another look (its not-before time passed) is not
    logged: a laptop left unpowered for an hour would log a claim every look; its
    ``step_started`` says when it went on."""
    resumed = run.status == RunStatus.RUNNING
    another_look = run.status == RunStatus.QUEUED and run.lease_until is not None
    _move(run, RunEvent.RESUME if resumed else RunEvent.CLAIM, now)
    run.worker_id = worker_id
    run.lease_until = lease_until
    run.started_at = run.started_at or now
    session.add(run)
    if another_look:
        return resumed
    verb = "resumed" if resumed else "claimed"
    add_event(
        session,
        run,
        step=run.step_name or STEP_NAMES[min(run.step_index, len(STEP_NAMES) - 1)],
        kind=verb,
        message=f"{verb} by worker {worker_id}",
    )
    return resumed


def wait(
    session: Session, run: ProvisioningRun, *, step: str, reason: str, not_before: datetime
) -> None:
    """Put a running run back in the queue: its laptop has no live provisioning
    environment (``reason``). A queued run's ``lease_until`` is when it may be claimed
    again (``repository.claimable_runs``); the PE's registration clears it
    (``waiting.resume_on_go``). Logged once per reason, not once per look.

    :raises InvalidRunTransition: the run is not running.
    """
    _move(run, RunEvent.WAIT, utcnow())
    repeated = run.last_error == reason
    run.worker_id = None
    run.lease_until = not_before
    run.last_error = reason[:1000]
    session.add(run)
    if not repeated:
        add_event(session, run, step=step, kind="waiting", message=reason)


def finish(
    session: Session,
    run: ProvisioningRun,
    event: RunEvent,
    *,
    step: str,
    message: str,
    error: str | None = None,
    failed_step: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """End ``run`` (``event``: succeed, fail or abort): its worker, lease and pending
    abort are cleared and its end time set, once, here; ``error`` becomes its last error
    and ``failed_step`` where it stopped. Logged under ``step`` with ``message``. The
    device's own move is the caller's: it differs with why the run ended.

    :raises InvalidRunTransition: the run is not active (or ``event`` ends nothing).
    """
    now = utcnow()
    if next_status(run.status, event) not in TERMINAL:
        raise ValueError(f"{event} does not end a run")
    _move(run, event, now)
    if event is RunEvent.SUCCEED:
        run.step_name = None
    run.last_error = error[:1000] if error is not None else None
    run.failed_step = failed_step
    run.abort_requested = False
    run.worker_id = None
    run.lease_until = None
    run.finished_at = now
    session.add(run)
    add_event(session, run, step=step, kind=_FINISHED_KIND[event], message=message, details=details)
    for hook in ON_FINISHED:
        hook(session, run)


def requeue(session: Session, run: ProvisioningRun, *, step_index: int, actor: str) -> None:
    """Queue a failed or aborted run again, from ``step_index``.

    :raises InvalidRunTransition: the run did not fail and was not aborted.
    """
    _move(run, RunEvent.RETRY, utcnow())
    run.step_index = step_index
    run.step_attempt = 0
    run.run_attempt += 1
    run.failed_step = None
    run.abort_requested = False
    run.worker_id = None
    run.lease_until = None
    run.finished_at = None
    session.add(run)
    name = STEP_NAMES[step_index]
    add_event(
        session, run, step=name, kind="retry_requested", message=f"retry from {name} by {actor}"
    )


def add_event(
    session: Session,
    run: ProvisioningRun,
    *,
    step: str,
    kind: str,
    message: str,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> RunStepEvent:
    """Append one line to the run's log (numbered; a replayed write fails on the
    ``(run_id, seq)`` key rather than logging twice)."""
    assert run.id is not None
    row = RunStepEvent(
        run_id=run.id,
        seq=repository.next_event_seq(session, run.id),
        step=step,
        attempt=run.step_attempt,
        kind=kind,
        message=message[:1000],
        details=details or {},
        at=at or utcnow(),
    )
    session.add(row)
    session.flush()
    return row
