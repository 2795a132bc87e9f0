"""Provisioning rules: queue, start, retry from the failed step, abort; read runs.

Services never commit. A run is "enqueued" by being committed in ``queued`` status:
workers only ever see committed rows, so a job never starts before the transaction that
created it has committed (and never starts at all if it rolled back). A run's status
changes only through ``runs/lifecycle.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session

from core.errors import InvalidInput
from core.principal import Principal
from core.timeutil import utcnow
from images.errors import NoImageForDevice, PinnedImageUnavailable
from images.service import active_config, resolve_with_config
from inventory import lifecycle as device_lifecycle
from inventory import repository as inventory_repo
from inventory.errors import BenchNotFound, DeviceNotFound
from inventory.models import Device
from inventory.states import DeviceState, Event
from provisioning.errors import NotReadyToProvision, RunConflict, RunNotFound
from provisioning.runs import lifecycle, repository
from provisioning.runs.models import ProvisioningRun, RunStatus, RunStepEvent, SlotEndpoint
from provisioning.runs.schemas import EndpointCreate
from provisioning.runs.states import STEP_NAMES, RunEvent, retry_index

WORKER_ACTOR = "worker"


# Queueing.
def maybe_queue(session: Session, device: Device, *, actor: str) -> ProvisioningRun | None:
    """Queue ``device`` (RECEIVED → QUEUED) with a new run if its client has an image and
    a configuration; otherwise leave it RECEIVED and return None. Called by scan-in."""
    if device.state != DeviceState.RECEIVED:
        return None
    try:
        image_id, os_family = resolve_image(session, device, explain=False)
    except NotReadyToProvision:
        return None
    return _new_run(session, device, image_id=image_id, os_family=os_family, actor=actor)


def start(session: Session, device_id: int, principal: Principal) -> ProvisioningRun:
    """Start a run for a RECEIVED device.

    :raises DeviceNotFound: unknown device.
    :raises RunConflict: the device already has an active run, or is not RECEIVED.
    :raises NotReadyToProvision: its client has no image or configuration.
    """
    device = principal.visible(
        inventory_repo.get_device_for_update(session, device_id), DeviceNotFound(str(device_id))
    )
    assert device.id is not None
    if repository.active_run_of_device(session, device.id) is not None:
        raise RunConflict(f"device {device.serial} already has an active run")
    if device.state != DeviceState.RECEIVED:
        raise RunConflict(
            f"device {device.serial} is {device.state}; start needs it received "
            "(use retry for a failed run)"
        )
    image_id, os_family = resolve_image(session, device)
    return _new_run(session, device, image_id=image_id, os_family=os_family, actor=principal.actor)


def _new_run(
    session: Session, device: Device, *, image_id: int, os_family: str, actor: str
) -> ProvisioningRun:
    assert device.id is not None
    site_id = None
    if device.bench_id is not None:
        bench = inventory_repo.get_bench(session, device.bench_id)
        site_id = bench.site_id if bench else None
    run = ProvisioningRun(
        device_id=device.id,
        client_id=device.client_id,
        site_id=site_id,
        image_id=image_id,
        os_family=os_family,
        status=RunStatus.QUEUED,
    )
    session.add(run)
    session.flush()
    assert run.id is not None
    device_lifecycle.apply(
        session, device, Event.QUEUE, actor=actor, details={"run_id": run.id, "image_id": image_id}
    )
    lifecycle.add_event(session, run, step="queue", kind="queued", message=f"queued by {actor}")
    return run


def retry(session: Session, run_id: int, principal: Principal) -> ProvisioningRun:
    """Re-queue a failed run from the step that failed (a failed readback restarts at
    the stream, since it checks what the stream wrote).

    :raises RunNotFound: unknown or not visible.
    :raises RunConflict: the run did not fail, or the device moved on.
    """
    run = _lock_visible(session, run_id, principal)
    if run.status not in (RunStatus.FAILED, RunStatus.ABORTED):
        raise RunConflict(f"run {run_id} is {run.status}; only failed or aborted runs retry")
    device = inventory_repo.get_device_for_update(session, run.device_id)
    assert device is not None
    if device.state not in DeviceState.failed():
        raise RunConflict(f"device {device.serial} is {device.state}, not failed")
    requeue_failed(session, run, device, actor=principal.actor)
    return run


def requeue_failed(session: Session, run: ProvisioningRun, device: Device, *, actor: str) -> None:
    """The device FAILED_x → QUEUED and its failed or aborted run queued again from the
    step that failed (a technician's retry; a PE that boots again, ``waiting.py``)."""
    index = retry_index(run.failed_step, run.step_index)
    device_lifecycle.apply(
        session,
        device,
        Event.RETRY,
        actor=actor,
        details={"run_id": run.id, "from_step": STEP_NAMES[index]},
    )
    lifecycle.requeue(session, run, step_index=index, actor=actor)


def abort(
    session: Session, run_id: int, principal: Principal, *, reason: str | None = None
) -> ProvisioningRun:
    """Abort a run. A queued run (or one whose worker is gone) stops now; a running one
    is flagged and its worker stops at the next safe point (between chunks or steps).

    :raises RunNotFound: unknown or not visible.
    :raises RunConflict: the run already finished.
    """
    run = _lock_visible(session, run_id, principal)
    if run.status not in RunStatus.active():
        raise RunConflict(f"run {run_id} already {run.status}")
    why = reason or f"aborted by {principal.actor}"
    now = utcnow()
    worker_gone = run.lease_until is None or run.lease_until < now
    if run.status == RunStatus.QUEUED or worker_gone:
        finish_aborted(session, run, actor=principal.actor, reason=why)
    else:
        run.abort_requested = True
        run.updated_at = now
        session.add(run)
        lifecycle.add_event(
            session, run, step=run.step_name or "queue", kind="abort_requested", message=why
        )
    return run


def finish_aborted(session: Session, run: ProvisioningRun, *, actor: str, reason: str) -> None:
    """End ``run`` as aborted (by a technician, now or at its worker's next safe point),
    and its device with it when it was queued or in a working state."""
    device = inventory_repo.get_device_for_update(session, run.device_id)
    assert device is not None
    if device.state in (DeviceState.QUEUED, *DeviceState.working()):
        device_lifecycle.apply(
            session,
            device,
            Event.ABORT,
            actor=actor,
            reason=reason,
            details={"run_id": run.id, "step": run.step_name},
        )
    step = run.step_name or "queue"
    lifecycle.finish(
        session,
        run,
        RunEvent.ABORT,
        step=step,
        message=reason,
        error=f"{step}: {reason}",
        failed_step=run.step_name,
    )


# Which image a run writes.
def resolve_image(session: Session, device: Device, *, explain: bool = True) -> tuple[int, str]:
    """(image id, OS family) of the image the device's client wants, if the client also
    has an active configuration.

    :raises NotReadyToProvision: no image or no configuration yet; with ``explain``, the
        message names everything that is missing.
    """
    # The configuration first, read once: scan-in asks this for every laptop received
    # (without ``explain``), and a client with no configuration yet then needs no image
    # lookup at all.
    config = active_config(session, device.client_id) if device.client_id is not None else None
    missing: list[str] = []
    if config is None:
        missing.append(f"client of {device.serial} has no active configuration")
        if not explain:
            raise NotReadyToProvision(missing[0])
    try:
        image = resolve_with_config(session, device, config)
    except (NoImageForDevice, PinnedImageUnavailable) as e:
        raise NotReadyToProvision("; ".join([e.message, *missing])) from e
    if missing:
        raise NotReadyToProvision(missing[0])
    assert image.id is not None
    return int(image.id), str(image.os_family)


# Reads.
def get_run(session: Session, run_id: int, principal: Principal) -> ProvisioningRun:
    """:raises RunNotFound: unknown, or another company's for a client-bound caller."""
    return principal.visible(repository.get_run(session, run_id), RunNotFound(str(run_id)))


def list_runs(
    session: Session,
    principal: Principal,
    *,
    status: RunStatus | None = None,
    active_only: bool = False,
    cursor: int | None = None,
    limit: int = 100,
) -> Sequence[tuple[ProvisioningRun, Device]]:
    return repository.list_runs(
        session,
        client_id=principal.client_scope,
        status=status,
        active_only=active_only,
        cursor=cursor,
        limit=limit,
    )


def run_device(session: Session, run: ProvisioningRun) -> Device:
    device = inventory_repo.get_device(session, run.device_id)
    assert device is not None
    return device


def events(session: Session, run: ProvisioningRun) -> Sequence[RunStepEvent]:
    assert run.id is not None
    return repository.run_events(session, run.id)


def _lock_visible(session: Session, run_id: int, principal: Principal) -> ProvisioningRun:
    return principal.visible(
        repository.get_run_for_update(session, run_id), RunNotFound(str(run_id))
    )


# Slot endpoints (where a bench slot's laptop answers in its provisioning environment).
def register_endpoint(session: Session, body: EndpointCreate) -> SlotEndpoint:
    """Create or replace the endpoint of one bench slot.

    :raises BenchNotFound: no such bench (before, the foreign key answered 409).
    :raises InvalidInput: the bench has no such slot.
    """
    bench = inventory_repo.get_bench(session, body.bench_id)
    if bench is None:
        raise BenchNotFound(str(body.bench_id))
    if not 1 <= body.slot <= bench.slots:
        raise InvalidInput(f"bench {bench.code} has slots 1 to {bench.slots}, not {body.slot}")
    row = repository.get_endpoint(session, body.bench_id, body.slot)
    if row is None:
        row = SlotEndpoint(**body.model_dump())
    else:
        for key, value in body.model_dump().items():
            setattr(row, key, value)
    session.add(row)
    session.flush()
    return row
