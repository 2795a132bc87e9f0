"""The device side of a provisioning run: moving the laptop into each step's stage
(QUEUED → IMAGING → CONFIGURING → VERIFYING, through ``inventory.lifecycle``, the one
writer of device state), READY when the last step is done, its failure when a step
fails for good or a working state is held past its timeout, and keeping what the
identify step learnt about the laptop. Each of these ends the run too when it should,
through ``runs/lifecycle.py``, in the same transaction. The engine decides when; this
module says what happens to the device and its run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import Session

from core.db import Database
from core.timeutil import utcnow
from inventory import lifecycle
from inventory import repository as inventory_repo
from inventory.models import Device
from inventory.states import DeviceState, Event
from provisioning.errors import GateFailed, ProvisioningError
from provisioning.runs import lifecycle as run_lifecycle
from provisioning.runs import repository
from provisioning.runs.models import ProvisioningRun
from provisioning.runs.states import RunEvent

_STAGE_ORDER = (
    DeviceState.QUEUED,
    DeviceState.IMAGING,
    DeviceState.CONFIGURING,
    DeviceState.VERIFYING,
)
_ENTER = {
    DeviceState.IMAGING: Event.IMAGE,
    DeviceState.CONFIGURING: Event.CONFIGURE,
    DeviceState.VERIFYING: Event.VERIFY,
}


def record_identity(s: Session, device_id: int, identity: dict[str, Any]) -> None:
    """Keep what the PE reported (SMBIOS UUID, MACs, model) on the device, filling only
    what the ship notice left empty."""
    device = inventory_repo.get_device_for_update(s, device_id)
    if device is None:
        return
    if not device.smbios_uuid and identity.get("uuid"):
        device.smbios_uuid = str(identity["uuid"])[:36]
    if not device.mac_addresses and identity.get("macs"):
        device.mac_addresses = sorted(str(m) for m in identity["macs"].values())
    if identity.get("model"):
        device.observed_model = str(identity["model"])[:128]
    device.updated_at = utcnow()
    s.add(device)


def enter(
    s: Session, device: Device, stage: DeviceState, run: ProvisioningRun, *, actor: str
) -> bool:
    """Move the device forward into ``stage`` (QUEUED → IMAGING → CONFIGURING →
    VERIFYING) if it is not there yet. False if it is somewhere else entirely."""
    while device.state != stage:
        current = DeviceState(device.state)
        if current not in _STAGE_ORDER or _STAGE_ORDER.index(current) > _STAGE_ORDER.index(stage):
            return False
        nxt = _STAGE_ORDER[_STAGE_ORDER.index(current) + 1]
        lifecycle.apply(s, device, _ENTER[nxt], actor=actor, details={"run_id": run.id})
    return True


def sweep_timeouts(db: Database, timeouts: dict[DeviceState, timedelta]) -> int:
    """A working state held past its timeout becomes its failure (MAAS); the device's
    active run fails with the same reason. Returns how many devices were failed."""
    failed = 0
    now = utcnow()
    with db.session() as s:
        for device in repository.devices_in_states(s, [st.value for st in timeouts]):
            state = DeviceState(device.state)
            limit = timeouts[state]
            if device.state_changed_at + limit > now:
                continue
            assert device.id is not None
            locked = inventory_repo.get_device_for_update(s, device.id)
            if locked is None or locked.state != state:
                continue
            run = repository.active_run_of_device(s, device.id)
            step = (run.step_name if run else None) or state.value
            reason = f"{step}: {state.value} timed out after {_human(limit)}"
            details = {"run_id": run.id if run else None, "step": step, "error": "StateTimedOut"}
            lifecycle.apply(
                s, locked, Event.FAIL, actor="worker:timeout", reason=reason, details=details
            )
            if run is not None:
                run_lifecycle.finish(
                    s,
                    run,
                    RunEvent.FAIL,
                    step=step,
                    message=reason,
                    error=reason,
                    failed_step=run.step_name,
                    details=details,
                )
            failed += 1
    return failed


def complete(s: Session, run: ProvisioningRun, *, step: str, checks: object, actor: str) -> None:
    """The last step is done: the device is READY (its gate checks in its history) and
    the run succeeded."""
    device = inventory_repo.get_device_for_update(s, run.device_id)
    assert device is not None
    lifecycle.apply(
        s, device, Event.DONE, actor=actor, details={"run_id": run.id, "checks": checks}
    )
    run_lifecycle.finish(
        s, run, RunEvent.SUCCEED, step=step, message="device READY", error=None, failed_step=None
    )


def fail(
    s: Session, run: ProvisioningRun, *, step: str, error: ProvisioningError, actor: str
) -> None:
    """``step`` failed for good: the device goes to its stage's failure (from QUEUED,
    through IMAGING first, so a failure at the first step is FAILED_IMAGING) and the run
    fails, both with the same reason."""
    reason = f"{step}: {error.message}"[:1000]
    details: dict[str, Any] = {"run_id": run.id, "step": step, "error": type(error).__name__}
    if isinstance(error, GateFailed):
        details["failed_checks"] = error.failed
    device = inventory_repo.get_device_for_update(s, run.device_id)
    assert device is not None
    if device.state == DeviceState.QUEUED:
        lifecycle.apply(s, device, Event.IMAGE, actor=actor)
    if device.state in DeviceState.working():
        lifecycle.apply(s, device, Event.FAIL, actor=actor, reason=reason, details=details)
    run_lifecycle.finish(
        s,
        run,
        RunEvent.FAIL,
        step=step,
        message=reason,
        error=reason,
        failed_step=step,
        details=details,
    )


def left_the_pipeline(s: Session, run: ProvisioningRun, device: Device, *, step: str) -> None:
    """The device is no longer where the run can take it (moved by hand, quarantined...):
    the run fails, the device stays where it is."""
    reason = f"{step}: device left the pipeline ({device.state})"
    run_lifecycle.finish(
        s, run, RunEvent.FAIL, step=step, message=reason, error=reason, failed_step=step
    )


def _human(delta: timedelta) -> str:
    secs = int(delta.total_seconds())
    return f"{secs // 60} min" if secs >= 120 else f"{secs} s"
