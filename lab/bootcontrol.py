"""The lab's boot control: lab laptops are processes the lab owns (``lab/lab.py``).

A lab laptop's slot is wired like a real one (its PE's sshd address and host key), with
``boot_control: "lab"`` and the lab's root and the laptop's name in the slot's options.
Rebooting it means asking the lab (its state files are shared: any process may do it);
its installed OS answers where the lab started it, with the WinRM password the lab
generated at that reboot. ``register()`` makes it available to the pipeline; the
composition root (``wiring.wire``) calls it at start, so provisioning never imports
the lab.

A lab laptop may also go unwired, its PE registered by the real agent (the
``registered`` control): ``registered_options`` then tells that control what a lab slot's
options would (the login user of the lab's sshd, where the installed system's files
live), for the laptops of this installation's lab (``<data dir>/lab``) whose host key is
the one registered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import Session

from inventory.models import Device
from provisioning.bootcontrol import registry
from provisioning.bootcontrol.base import JsonValue, PeAccess
from provisioning.bootcontrol.registered import OS_OPTIONS, RegisteredPe
from provisioning.bootcontrol.static import StaticBootControl
from provisioning.configure.plan import OsFamily, OsTarget
from provisioning.transports.base import Transport

if TYPE_CHECKING:
    from lab.lab import Lab, LabLaptop

NAME = "lab"


def slot_options(root: Path, laptop: str) -> dict[str, JsonValue]:
    """The slot options that put a lab laptop under this boot control."""
    return {"boot_control": NAME, "lab_root": str(root), "lab_laptop": laptop}


class LabBootControl(StaticBootControl):
    """A static slot wiring for the PE; the lab for the reboot and the installed OS."""

    name = NAME

    def in_installed_os(self, pe: PeAccess) -> bool:
        return _laptop(pe.options).boot == "os"

    def reboot_into_os(
        self, pe: PeAccess, connect: Callable[[], Transport], *, timeout: float
    ) -> None:
        _lab(pe.options).reboot_into_os(str(pe.options["lab_laptop"]))

    def os_target(
        self, session: Session, device: Device, pe: PeAccess, family: OsFamily
    ) -> OsTarget:
        laptop = _laptop(pe.options)
        if family is OsFamily.WINDOWS:
            return OsTarget.windows(
                host=laptop.host,
                winrm_port=int(laptop.winrm_port or 0),
                transport=str(pe.options.get("winrm_transport") or "ssl"),
                username=str(laptop.winrm_username or "Administrator"),
                password=str(laptop.winrm_password or ""),
                ca_path=laptop.winrm_ca_path,
            )
        return OsTarget.linux(
            host=laptop.host,
            ssh_port=laptop.ssh_port,
            user=laptop.ssh_user,
            key_path=laptop.client_key_path,
            known_hosts_path=laptop.known_hosts_path,
            target_root=str(laptop.os_root),
        )


def _lab(options: Mapping[str, JsonValue]) -> Lab:
    # The lab module (process management, key generation) only where a lab slot is used.
    from lab.lab import Lab

    return Lab(Path(str(options["lab_root"])), keep_running=True)


def _laptop(options: Mapping[str, JsonValue]) -> LabLaptop:
    return _lab(options).get(str(options["lab_laptop"]))


def registered_options(
    session: Session, device: Device, pe: RegisteredPe
) -> dict[str, JsonValue] | None:
    """The slot options of the lab laptop that registered ``pe``, or None when it is not
    one of this installation's lab laptops with that very host key."""
    from lab.keys import fingerprint
    from lab.lab import Lab

    wanted = fingerprint(pe.host_key)
    for laptop in Lab(keep_running=True).laptops():
        if laptop.serial != device.serial or laptop.host_key_fingerprint != wanted:
            continue
        options: dict[str, JsonValue] = {"pe_user": laptop.ssh_user}
        if laptop.os_family == "linux":
            options["target_root"] = str(laptop.os_root)
        else:
            options["os_host"] = laptop.host
            options["winrm_port"] = laptop.winrm_port
            options["winrm_ca_path"] = str(laptop.winrm_ca_path) if laptop.winrm_ca_path else None
        return options
    return None


def register() -> None:
    registry.register(LabBootControl())
    if registered_options not in OS_OPTIONS:
        OS_OPTIONS.append(registered_options)
