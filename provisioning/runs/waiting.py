"""A laptop's PE registered: its run goes on (docs/pipeline.md, "A laptop that registers
its PE").

``resume_on_go`` is registered by ``wiring/boot.py`` in ``boot.registration.service.ON_GO``
and runs inside the registration's transaction:

* a run waiting for its PE (queued, not claimable before its ``lease_until``) becomes
  claimable at once;
* a run that failed only because no PE was there (its PE went away and the step ran out
  of attempts, or the laptop sat in IMAGING waiting past the state's timeout) is queued
  again from the step that failed, as a technician's retry would, with the PE's boot as
  the actor. Steps are idempotent and the stream checks the serial again, so a resumed
  run never writes another laptop.

Any other failure (wrong serial, checksum, disk full, a failed gate…) waits for a
technician: a PE booting again changes nothing about it.
"""

from __future__ import annotations

from sqlmodel import Session

from inventory import repository as inventory_repo
from inventory.states import DeviceState
from provisioning.runs import lifecycle, repository, service
from provisioning.runs.models import RunStatus
from provisioning.runs.states import STEP_NAMES

PE_STEPS = frozenset(STEP_NAMES[: STEP_NAMES.index("reboot") + 1])
"""The steps that run in the PE: a new PE can help only these."""

NO_PE_ERRORS = frozenset({"NoLivePe", "ConnectFailed", "StateTimedOut"})
"""Failures that mean "nobody answered": no PE, a PE that went away, or a laptop that
waited for its PE past the state's timeout."""


def resume_on_go(session: Session, device_id: int, boot_id: int) -> None:
    """React to a PE of ``device_id`` answered go (boot ``boot_id``)."""
    run = repository.latest_run_of_device(session, device_id)
    if run is None or run.id is None:
        return
    run = repository.get_run_for_update(session, run.id)
    assert run is not None and run.id is not None
    actor = f"pe:boot-{boot_id}"
    if run.status == RunStatus.QUEUED and run.lease_until is not None:
        run.lease_until = None
        session.add(run)
        lifecycle.add_event(
            session,
            run,
            step=run.step_name or STEP_NAMES[min(run.step_index, len(STEP_NAMES) - 1)],
            kind="pe_registered",
            message=f"its provisioning environment registered (boot {boot_id}): resuming",
        )
        return
    if run.status != RunStatus.FAILED or run.failed_step not in PE_STEPS:
        return
    failed = repository.last_event(session, run.id, "failed")
    if failed is None or failed.details.get("error") not in NO_PE_ERRORS:
        return
    device = inventory_repo.get_device_for_update(session, device_id)
    if device is None or device.state != DeviceState.FAILED_IMAGING:
        return
    service.requeue_failed(session, run, device, actor=actor)
