"""Boot controls by name, and which one a laptop uses.

A laptop's boot control is named by where it is plugged in: its bench slot's wiring
(``SlotEndpoint.options["boot_control"]``, ``static`` when it names none), else the
process's default: ``static`` here; ``registered`` (the laptop's PE registered itself)
once ``wiring.wire`` has connected the boot domain, unless
``MASTERLINE_BOOT_DEFAULT_CONTROL=static``.
"""

from __future__ import annotations

from sqlmodel import Session

from inventory.models import Device
from provisioning.bootcontrol.base import BootControl
from provisioning.bootcontrol.static import StaticBootControl
from provisioning.errors import CommandFailed
from provisioning.runs import repository

_CONTROLS: dict[str, BootControl] = {}
_default = StaticBootControl.name


def register(control: BootControl, *, default: bool = False) -> None:
    """Make ``control`` available under its name (the last registration wins)."""
    global _default
    _CONTROLS[control.name] = control
    if default:
        _default = control.name


def set_default(name: str) -> None:
    """Make ``name`` the control of laptops whose slot is not wired.

    :raises CommandFailed: no boot control of that name is registered.
    """
    global _default
    get(name)
    _default = name


def default_name() -> str:
    return _default


def get(name: str) -> BootControl:
    """:raises CommandFailed: no boot control of that name in this process."""
    control = _CONTROLS.get(name)
    if control is None:
        raise CommandFailed(f"no boot control named {name!r} is registered in this worker")
    return control


def select(session: Session, device: Device) -> BootControl:
    """The boot control of ``device``: its slot's, or the default."""
    name = _default
    if device.bench_id is not None and device.slot is not None:
        wiring = repository.get_endpoint(session, device.bench_id, device.slot)
        if wiring is not None:
            name = str(wiring.options.get("boot_control") or StaticBootControl.name)
    return get(name)


register(StaticBootControl())
