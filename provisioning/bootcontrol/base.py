"""The boot-control interface.

A laptop of the pipeline lives in two worlds: its provisioning environment (PE), where
the imaging steps reach it over SSH, and the installed OS after the reboot, where the
configure and gate steps reach it (``OsTarget``). What differs from one kind of laptop to
another is *how* those are found and how the laptop moves from the first to the second:

* ``pe_access``: where the PE answers and the host key to trust. The static wiring of a
  bench slot today (``PUT /runs/endpoints``); a PE that registers itself (its address
  and host key from an authenticated registration) is one more implementation.
* ``in_installed_os`` and ``reboot_into_os``: whether the laptop already left its PE (a
  step re-run after the worker died right after the reboot), and the reboot itself.
* ``os_target``: where the installed OS answers, and with which credentials.

Implementations are registered by name (``registry.register``) when the process starts;
provisioning ships ``static`` (``static.py``), the device lab registers ``lab`` from
``lab/bootcontrol.py``, so nothing in provisioning imports the lab.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sqlmodel import Session

from inventory.models import Device
from provisioning.configure.plan import OsFamily, OsTarget
from provisioning.errors import ConnectFailed
from provisioning.imaging.identity import PE_ROOT
from provisioning.transports.base import SshEndpoint, Transport

JsonValue = str | int | float | bool | None

REBOOT_ISSUED = "reboot_issued"
"""The run-context key the reboot step commits *before* it reboots the laptop:
``{"pe_boot": the PE registration's id or None, "kernel_boot": the PE kernel's boot id
or ""}``. A worker killed right after the reboot leaves it behind, so the re-run knows
the laptop may have left its PE on purpose and asks ``in_installed_os`` instead of
waiting for a PE that will not come back."""

SEALED_OS = "sealed_os"
"""The run-context key the reboot step commits, in the same write as ``REBOOT_ISSUED``,
when the boot control sealed the installed system it wrote (``seal.py``): ``{"pe_boot":
the PE registration's id, "host_key": "ssh-ed25519 AAAA…", "package_manager": bool}``.
In the database, not in a worker's files: whichever worker runs the configure and gate
steps (another one, or this one restarted on another host) pins the same key."""

BOOT_ID = f"cat {PE_ROOT}/proc/sys/kernel/random/boot_id 2>/dev/null"
"""The kernel's id of the running boot: a new one after any reboot."""


def kernel_boot_id(transport: Transport, timeout: float) -> str:
    """The boot id of the system ``transport`` reaches; "" when it cannot be read."""
    try:
        res = transport.run(BOOT_ID, timeout=timeout)
    except ConnectFailed:
        return ""
    return res.stdout.strip() if res.ok else ""


@dataclass(frozen=True)
class PeAccess:
    """Where one laptop's PE answers now, as its boot control found it."""

    control: str
    """The boot control's name: the same one reboots the laptop and finds its OS."""
    endpoint: SshEndpoint
    """Address, login key and the pinned host key (``known_hosts_path``)."""
    options: Mapping[str, JsonValue] = field(default_factory=dict)
    """The implementation's own settings (never secrets): ports of the installed OS, the
    offline root, the lab laptop's name..."""

    @property
    def offline_root(self) -> str | None:
        """Where the PE mounts the installed system (a shell path), if not the default."""
        root = self.options.get("offline_root")
        return str(root) if root else None


class BootControl(Protocol):
    name: str

    def pe_access(self, session: Session, device: Device) -> PeAccess:
        """Where ``device``'s PE answers and which host key to trust.

        :raises CommandFailed: the laptop cannot be reached (not in a wired slot, not
            registered).
        """
        ...

    def in_installed_os(self, pe: PeAccess) -> bool:
        """Whether the laptop already booted its installed OS (so the reboot step, re-run,
        has nothing left to do). False when that cannot be known."""
        ...

    def prepare_offline(
        self, pe: PeAccess, transport: Transport, *, disk: str, timeout: float
    ) -> None:
        """Make the installed system's files reachable at the offline root before the
        offline settings or installers are written there (a registered PE mounts the
        partition of ``disk`` that holds the installed Linux). Idempotent."""
        ...

    def seal_installed_os(
        self, pe: PeAccess, transport: Transport, *, timeout: float
    ) -> dict[str, JsonValue] | None:
        """Give the installed system written on the laptop what the worker needs to trust
        it after the reboot (a PE of Masterline's own generates its SSH host key there),
        and return what the run must record for that (``SEALED_OS``'s value), or None when
        there is nothing to record. Called by the reboot step before it commits "reboot
        issued"; a re-run seals again (a new key replaces the recorded one).
        :raises CommandFailed: the installed system could not be sealed."""
        ...

    def reboot_into_os(
        self, pe: PeAccess, connect: Callable[[], Transport], *, timeout: float
    ) -> None:
        """Reboot the laptop from its PE into its installed OS. ``connect`` opens (or
        reuses) an SSH session to the PE, for implementations that reboot through it."""
        ...

    def os_target(
        self, session: Session, device: Device, pe: PeAccess, family: OsFamily
    ) -> OsTarget:
        """Where ``device``'s installed OS answers after the reboot, with its
        credentials (a Windows password comes from the client's configuration or from
        the implementation, never from slot settings)."""
        ...
