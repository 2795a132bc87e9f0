"""How the forecast reacts to the domains below it, registered once at start by
``wiring.wire``: a laptop received, a run finished or a committed date changed marks the
forecast out of date (in that change's own transaction); the refresher recomputes it,
debounced, wherever the engine runs; its webhook event types join the outbox's."""

from __future__ import annotations

from sqlmodel import Session

from forecast import refresher, repository, service
from inventory.hooks import ON_RECEIVED
from inventory.models import Device
from logistics.webhooks import OTHER_EVENT_TYPES
from provisioning.pipeline.worker import COMPANIONS
from provisioning.runs.lifecycle import ON_FINISHED
from provisioning.runs.models import ProvisioningRun


def laptop_received(session: Session, device: Device, actor: str) -> None:
    repository.mark_changed(session, "laptop received")


def run_finished(session: Session, run: ProvisioningRun) -> None:
    repository.mark_changed(session, f"run {run.status}")


def register() -> None:
    """Register the forecast's hooks (idempotent)."""
    if laptop_received not in ON_RECEIVED:
        ON_RECEIVED.append(laptop_received)
    if run_finished not in ON_FINISHED:
        ON_FINISHED.append(run_finished)
    if refresher.run not in COMPANIONS:
        COMPANIONS.append(refresher.run)
    OTHER_EVENT_TYPES.update(service.EVENT_TYPES)
