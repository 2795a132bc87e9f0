"""A run's status table: ``(status, event) -> status``, as the device's lifecycle has.

Statuses are ``RunStatus`` (``runs/models.py``); events are verbs. ``runs/lifecycle.py``
is the one writer of ``ProvisioningRun.status``: it looks the move up here, and a move
that is not in the table raises ``InvalidRunTransition`` instead of happening.

Also here, because a run's row refers to them by index: the names of the pipeline's
steps, in order (``pipeline/steps.py`` builds its step table from them), and where a
retry restarts.
"""

from __future__ import annotations

from enum import StrEnum

from provisioning.errors import RunConflict
from provisioning.runs.models import RunStatus


class RunEvent(StrEnum):
    CLAIM = "claim"
    """A worker takes a queued run."""
    RESUME = "resume"
    """A worker takes back a running run: its own after a restart, or one whose worker's
    lease expired."""
    WAIT = "wait"
    """A running run's laptop has no live provisioning environment: it goes back to the
    queue, not to be claimed before a set time or before its PE registers."""
    SUCCEED = "succeed"
    FAIL = "fail"
    ABORT = "abort"
    RETRY = "retry"
    """A technician re-queues a failed or aborted run from the step that failed."""


S, E = RunStatus, RunEvent

RUN_TRANSITIONS: dict[tuple[RunStatus, RunEvent], RunStatus] = {
    (S.QUEUED, E.CLAIM): S.RUNNING,
    (S.RUNNING, E.RESUME): S.RUNNING,
    (S.RUNNING, E.WAIT): S.QUEUED,
    (S.RUNNING, E.SUCCEED): S.SUCCEEDED,
    (S.QUEUED, E.FAIL): S.FAILED,
    (S.RUNNING, E.FAIL): S.FAILED,
    (S.QUEUED, E.ABORT): S.ABORTED,
    (S.RUNNING, E.ABORT): S.ABORTED,
    (S.FAILED, E.RETRY): S.QUEUED,
    (S.ABORTED, E.RETRY): S.QUEUED,
}

TERMINAL: frozenset[RunStatus] = frozenset({S.SUCCEEDED, S.FAILED, S.ABORTED})

STEP_NAMES: tuple[str, ...] = (
    "identify",
    "pick_disk",
    "stream",
    "verify",
    "installers",
    "reboot",
    "configure",
    "gate",
)
"""The pipeline's steps in order; ``ProvisioningRun.step_index`` indexes this."""

RESTART_FROM: dict[str, str] = {"verify": "stream"}
"""A retry of a run that failed at the key restarts at the value: a failed readback
checks what the stream wrote, so the stream runs again."""


class InvalidRunTransition(RunConflict):
    def __init__(self, status: RunStatus, event: RunEvent) -> None:
        allowed = sorted(e.value for (s, e) in RUN_TRANSITIONS if s == status)
        super().__init__(
            f"a {status.value} run cannot {event.value} (allowed: {', '.join(allowed) or 'none'})"
        )


def next_status(status: RunStatus, event: RunEvent) -> RunStatus:
    """:raises InvalidRunTransition: the table has no such move."""
    new = RUN_TRANSITIONS.get((RunStatus(status), event))
    if new is None:
        raise InvalidRunTransition(RunStatus(status), event)
    return new


def retry_index(failed_step: str | None, step_index: int) -> int:
    """The step a retried run starts at."""
    restart = RESTART_FROM.get(failed_step or "")
    return STEP_NAMES.index(restart) if restart else step_index
