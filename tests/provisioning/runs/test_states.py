"""A run's status table and its one writer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from provisioning.errors import RunConflict
from provisioning.pipeline.steps import STEPS
from provisioning.runs.models import RunStatus
from provisioning.runs.states import (
    STEP_NAMES,
    InvalidRunTransition,
    RunEvent,
    next_status,
    retry_index,
)

ROOT = Path(__file__).resolve().parents[3]


def test_every_move_of_the_table() -> None:
    assert next_status(RunStatus.QUEUED, RunEvent.CLAIM) is RunStatus.RUNNING
    assert next_status(RunStatus.RUNNING, RunEvent.RESUME) is RunStatus.RUNNING
    assert next_status(RunStatus.RUNNING, RunEvent.WAIT) is RunStatus.QUEUED
    assert next_status(RunStatus.RUNNING, RunEvent.SUCCEED) is RunStatus.SUCCEEDED
    assert next_status(RunStatus.RUNNING, RunEvent.FAIL) is RunStatus.FAILED
    assert next_status(RunStatus.QUEUED, RunEvent.ABORT) is RunStatus.ABORTED
    assert next_status(RunStatus.FAILED, RunEvent.RETRY) is RunStatus.QUEUED
    assert next_status(RunStatus.ABORTED, RunEvent.RETRY) is RunStatus.QUEUED


@pytest.mark.parametrize("status", [RunStatus.FAILED, RunStatus.ABORTED])
def test_a_failed_or_aborted_run_only_retries(status: RunStatus) -> None:
    for event in set(RunEvent) - {RunEvent.RETRY}:
        with pytest.raises(InvalidRunTransition) as e:
            next_status(status, event)
        assert isinstance(e.value, RunConflict) and e.value.status_code == 409
    assert next_status(status, RunEvent.RETRY) is RunStatus.QUEUED


def test_only_a_running_run_waits_for_its_pe() -> None:
    for status in (RunStatus.QUEUED, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.ABORTED):
        with pytest.raises(InvalidRunTransition):
            next_status(status, RunEvent.WAIT)


def test_a_succeeded_run_does_not_move() -> None:
    for event in RunEvent:
        with pytest.raises(InvalidRunTransition):
            next_status(RunStatus.SUCCEEDED, event)


def test_a_failed_readback_retries_from_the_stream() -> None:
    assert STEP_NAMES[retry_index("verify", 3)] == "stream"
    assert retry_index("configure", 6) == 6


def test_the_pipeline_runs_the_steps_a_run_names() -> None:
    assert tuple(s.name for s in STEPS) == STEP_NAMES


def test_nothing_but_the_run_lifecycle_assigns_run_status() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        if ".venv" in path.parts or path.parts[-3:] == ("provisioning", "runs", "lifecycle.py"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"^\s*[A-Za-z_][\w.]*\.status\s*=(?!=)", line) and (
                "run" in line.split(".status")[0].lower() or "RunStatus" in line
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert offenders == [], "run status assigned outside provisioning/runs/lifecycle.py"
