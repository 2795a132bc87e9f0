"""The boot domain's seams with provisioning, connected at start by ``wire``.

* The pipeline finds a registered laptop's PE through
  ``provisioning.bootcontrol.registered.PE_LOOKUP``, filled here with
  ``boot.registration.service.last_boot``, translated; the ``registered`` boot control
  becomes the default for laptops whose slot is not wired (unless
  ``MASTERLINE_BOOT_DEFAULT_CONTROL=static``).
* A PE answered go resumes the laptop's run waiting for it
  (``boot.registration.service.ON_GO`` ← ``provisioning.runs.waiting.resume_on_go``).
* A laptop rebooted from its PE into its installed OS ends its PE's registration
  (``registered.PE_LEFT`` ← ``boot.registration.service.end_boot``).
"""

from __future__ import annotations

from sqlmodel import Session

from boot.registration import service as registration
from boot.registration.config import get_boot_settings
from provisioning.bootcontrol import registry
from provisioning.bootcontrol.registered import (
    PE_LEFT,
    PE_LOOKUP,
    RegisteredBootControl,
    RegisteredPe,
)
from provisioning.runs import waiting


def pe_lookup(session: Session, device_id: int) -> RegisteredPe | None:
    """The device's newest PE boot answered go, as provisioning reads it."""
    view = registration.last_boot(session, device_id)
    if view is None:
        return None
    return RegisteredPe(
        boot_id=view.boot_id,
        address=view.address,
        ssh_port=view.ssh_port,
        host_key=view.host_key,
        current=view.current,
        alive=view.alive,
        silent_seconds=view.silent_for.total_seconds(),
        ended_reason=view.ended_reason,
        worker_key_path=view.worker_key_path,
    )


LEFT_FOR_ITS_OS = "rebooted into its installed OS"


def pe_left(session: Session, device_id: int) -> None:
    """The laptop left its PE: its boot ends, its agent token with it."""
    registration.end_boot(session, device_id, reason=LEFT_FOR_ITS_OS)


def register() -> None:
    """Register the boot domain's reactions (idempotent)."""
    if pe_lookup not in PE_LOOKUP:
        PE_LOOKUP.append(pe_lookup)
    if pe_left not in PE_LEFT:
        PE_LEFT.append(pe_left)
    registry.register(RegisteredBootControl())
    registry.set_default(get_boot_settings().default_control)
    if waiting.resume_on_go not in registration.ON_GO:
        registration.ON_GO.append(waiting.resume_on_go)
