"""How provisioning reacts to the domains below it, registered once at start by
``wiring.wire``: a laptop received at a bench gets its run queued (when its client has
an image and a configuration), and the image garbage collector keeps the files of the
images that active runs still write."""

from __future__ import annotations

from sqlmodel import Session

from images.service import STILL_NEEDED
from inventory.hooks import ON_RECEIVED
from inventory.models import Device
from provisioning.runs import repository, service


def queue_received(session: Session, device: Device, actor: str) -> None:
    service.maybe_queue(session, device, actor=actor)


def register() -> None:
    """Register provisioning's hooks (idempotent: a second call adds nothing)."""
    if queue_received not in ON_RECEIVED:
        ON_RECEIVED.append(queue_received)
    if repository.image_ids_of_active_runs not in STILL_NEEDED:
        STILL_NEEDED.append(repository.image_ids_of_active_runs)
