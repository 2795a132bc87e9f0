"""What other domains do when something happens to a device, registered at start.

Inventory sits below the domains that react to it (provisioning queues a run when a
laptop is received), so it never imports them: they append a function here when the
process starts (``wiring.wire``), as MAAS's signals or Polar's event handlers do. A hook
runs inside the caller's transaction and must not commit.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session

from inventory.models import Device

ReceivedHook = Callable[[Session, Device, str], None]
"""``(session, device, actor)``: the device was just received at a bench."""

ON_RECEIVED: list[ReceivedHook] = []


def received(session: Session, device: Device, *, actor: str) -> None:
    """Tell every registered hook that ``device`` was received (scan-in)."""
    for hook in ON_RECEIVED:
        hook(session, device, actor)
