"""The registered boot control: a laptop whose provisioning environment (PE) registered
itself, so no administrator wired its bench slot (docs/boot.md, "From power-on to
imaging without wiring a slot").

Where the PE answers and which host key to trust come from the laptop's newest
registration answered go (its address as the server saw it, the SSH host key the PE
generated at this boot): trusted because the registration was authenticated by the
bench's enrollment credential, never because a key answered first on the bench network.
The worker logs in with the site's worker key, whose public half the registration handed
to the PE. Rebooting (the PE's ``reboot``), "already in the installed OS" and where the
installed OS answers are the static control's (``static.py``), with options from
``OS_OPTIONS`` instead of a slot's wiring; the reboot then waits until the laptop has
left its PE (its kernel's boot id changed, or the PE stopped answering as itself), so
the configure step never reaches a PE that has not gone down yet.

Provisioning never imports the boot domain: ``PE_LOOKUP`` is filled at start by
``wiring/boot.py`` with a function of ``boot.registration.service``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from sqlmodel import Session

from inventory.models import Device
from inventory.states import DeviceState
from provisioning.bootcontrol import seal
from provisioning.bootcontrol.base import (
    REBOOT_ISSUED,
    SEALED_OS,
    JsonValue,
    PeAccess,
    kernel_boot_id,
)
from provisioning.bootcontrol.static import StaticBootControl
from provisioning.configure.plan import OsFamily, OsTarget
from provisioning.errors import (
    AuthFailed,
    CommandFailed,
    CommandTimedOut,
    HostKeyMismatch,
    NoLivePe,
)
from provisioning.runs import repository as runs
from provisioning.transports.base import SshEndpoint, Transport

NAME = "registered"
SEAL = "seal_os"
"""Option: mount the installed Linux after the stream and give it its own host key."""
PE_REBOOT = "sync; { sleep 1; reboot -f; } </dev/null"
"""The PE's PID 1 is a shell script, not an init that acts on ``reboot``'s signal: the
kernel is asked directly, after the disks are flushed, a second after the command has
answered (so its exit status reaches the worker before the PE goes; its own stdin, so
the SSH session does not wait for the background job)."""
REBOOT_ANSWER_S = 30.0
LEFT_PROBE_S = 15.0
PE_USER = "root"
"""The PE's agent installs the worker keys in root's ``authorized_keys``."""


@dataclass(frozen=True)
class RegisteredPe:
    """A laptop's newest PE boot that was answered go, as the boot domain recorded it."""

    boot_id: int
    address: str
    ssh_port: int
    host_key: str
    """The OpenSSH public key line the PE registered (``ssh-ed25519 AAAA…``)."""
    current: bool
    """Registered, token unexpired: not ended, superseded or expired."""
    alive: bool
    """A heartbeat within the site's silence limit."""
    silent_seconds: float
    ended_reason: str | None
    """Why it is not current, when it is not."""
    worker_key_path: str | None
    """The site's worker private key (its ``.pub`` went to the PE)."""

    def known_hosts_line(self) -> str:
        name = self.address if self.ssh_port == 22 else f"[{self.address}]:{self.ssh_port}"
        key_type, key_b64 = self.host_key.split()[:2]
        return f"{name} {key_type} {key_b64}\n"


PeLookup = Callable[[Session, int], RegisteredPe | None]
PE_LOOKUP: list[PeLookup] = []
"""``(session, device id) -> RegisteredPe | None``: the device's newest boot answered go.
Filled at start by ``wiring/boot.py``; the first one answers."""

PeLeft = Callable[[Session, int], None]
PE_LEFT: list[PeLeft] = []
"""``(session, device id)``, called once a run's reboot step is committed, in a
transaction of its own: the laptop has left its PE for its installed OS, so its PE
registration ends (its agent token stops working). Filled at start by ``wiring/boot.py``."""

OsOptions = Callable[[Session, Device, RegisteredPe], Mapping[str, JsonValue] | None]
OS_OPTIONS: list[OsOptions] = []
"""Providers of what a slot's options would say for a registered laptop (``os_host``,
``target_root``, ``pe_user``…), when something knows better than the defaults (the
device lab knows where its laptops' installed systems live). The first answer that is
not None is used; none: the defaults (the installed OS answers at the PE's address)."""

_LEFT_POLL_S = 0.5
_PROBE_S = 30.0
"""Bounds the probe of a PE that may be gone (connect and ``true``)."""

LEFT_THE_PE = frozenset({DeviceState.CONFIGURING, DeviceState.VERIFYING})
"""In these states the laptop runs its installed OS: its PE is gone on purpose, and only
the address its last PE had is needed (where the installed OS answers by default)."""


class RegisteredBootControl(StaticBootControl):
    """A PE found by its registration; the reboot and the installed OS as ``static``."""

    name = NAME

    def pe_access(self, session: Session, device: Device) -> PeAccess:
        """:raises NoLivePe: no PE registered, or its registration ended, expired or went
        silent (the run waits for it). :raises CommandFailed: this worker cannot look
        registrations up, or the site has no worker key to log in with."""
        assert device.id is not None
        if not PE_LOOKUP:
            raise CommandFailed(
                "boot registration is not part of this worker: wire the laptop's bench "
                "slot (PUT /runs/endpoints)"
            )
        pe = PE_LOOKUP[0](session, device.id)
        issued = _reboot_issued(session, device.id, pe) if pe is not None else None
        if device.state not in LEFT_THE_PE and issued is None:
            require_live(device.serial, pe)
        if pe is None:
            raise NoLivePe(f"no provisioning environment of {device.serial} ever registered")
        if not pe.worker_key_path:
            raise CommandFailed(
                f"the site of {device.serial} has no worker key path to log into its PE "
                "(masterline boot site-settings SITE --worker-key PATH)"
            )
        # A PE of Masterline's own (no provider knows better): it reboots with
        # PE_REBOOT and seals the installed Linux it wrote (``seal.py``).
        options: dict[str, JsonValue] = {"reboot_command": PE_REBOOT, SEAL: True}
        for provider in OS_OPTIONS:
            found = provider(session, device, pe)
            if found is not None:
                options = dict(found)
                break
        return PeAccess(
            control=self.name,
            endpoint=SshEndpoint(
                host=pe.address,
                port=pe.ssh_port,
                user=str(options.get("pe_user") or PE_USER),
                key_path=Path(pe.worker_key_path),
                known_hosts_path=pinned_known_hosts(pe),
            ),
            options={
                **options,
                "boot_id": pe.boot_id,
                REBOOT_ISSUED: issued is not None,
                "kernel_boot": issued or "",
            },
        )

    def in_installed_os(self, pe: PeAccess) -> bool:
        """After a reboot this run issued from this very PE boot (a worker killed right
        after it): whether the laptop left that boot, as the reboot itself judges it
        (another kernel boot id answers, or nothing answers as that PE: another host
        key, a refused login, nothing listening). False when no reboot was issued, or
        the PE's boot id could not be read before it (then nothing can be compared:
        the step reboots again, as the static control)."""
        before = str(pe.options.get("kernel_boot") or "")
        if not pe.options.get(REBOOT_ISSUED) or not before:
            return False
        return _left(pe, before, timeout=_PROBE_S)

    def prepare_offline(
        self, pe: PeAccess, transport: Transport, *, disk: str, timeout: float
    ) -> None:
        """Mount the installed Linux the stream wrote at the PE's offline root (a PE of
        Masterline's own; a lab laptop has its installed system where its options say)."""
        if pe.options.get(SEAL) and pe.offline_root is None:
            if not disk:
                raise CommandFailed("no target disk chosen: the installed Linux cannot be mounted")
            seal.mount(transport, disk, timeout=timeout)

    def seal_installed_os(
        self, pe: PeAccess, transport: Transport, *, timeout: float
    ) -> dict[str, JsonValue] | None:
        """Seal the installed Linux a PE of Masterline's own wrote (its own SSH host key,
        generated on the laptop, and the worker's login key: ``seal.py``); the record of
        its public key for this PE boot, or None (a lab laptop, another OS)."""
        if not pe.options.get(SEAL) or pe.offline_root is not None:
            return None
        sealed = seal.seal(transport, timeout=timeout)
        if sealed is None:
            return None
        return seal.as_record(int(str(pe.options["boot_id"])), sealed)

    def reboot_into_os(
        self, pe: PeAccess, connect: Callable[[], Transport], *, timeout: float
    ) -> None:
        """The PE's ``reboot``, then wait (within ``timeout``) until the laptop has left
        the PE. :raises CommandTimedOut: it still runs the same boot (retryable: the step
        reboots it again)."""
        before = kernel_boot_id(connect(), timeout)
        # A PE whose reboot wins the race against the command's exit status leaves the
        # session open with nobody behind it: wait for that answer a bounded time only.
        with contextlib.suppress(CommandTimedOut):
            super().reboot_into_os(pe, connect, timeout=min(timeout, REBOOT_ANSWER_S))
        if not before:
            return  # nothing to compare with: as the static control, trust the reboot
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Each probe is short: one that reached the PE in its last second (the
            # reboot fires a second after its command answered) hangs with the PE gone.
            probe = min(LEFT_PROBE_S, max(1.0, deadline - time.monotonic()))
            if _left(pe, before, timeout=probe):
                return
            time.sleep(_LEFT_POLL_S)
        raise CommandTimedOut(f"the laptop at {pe.endpoint} did not reboot within {int(timeout)} s")

    def os_target(
        self, session: Session, device: Device, pe: PeAccess, family: OsFamily
    ) -> OsTarget:
        """As ``static``; a Linux this PE sealed is reached with the host key the PE
        generated in it pinned (and, without a package manager, in marker mode): the key
        the run recorded for this PE boot, whichever worker recorded it."""
        sealed = _sealed(session, device, int(str(pe.options.get("boot_id") or 0)))
        if family is OsFamily.LINUX and sealed is not None:
            options = dict(pe.options)
            host = str(options.get("os_host") or pe.endpoint.host)
            port = int(str(options.get("os_ssh_port") or 22))
            options["os_ssh_port"] = port
            options.setdefault(
                "os_known_hosts_path",
                str(seal.pinned_os_known_hosts(int(str(options["boot_id"])), sealed, host, port)),
            )
            if not sealed.package_manager:
                options.setdefault("target_root", "/")
            pe = replace(pe, options=options)
        return super().os_target(session, device, pe, family)


def _reboot_issued(session: Session, device_id: int, pe: RegisteredPe) -> str | None:
    """When the device's run committed "reboot issued" from this PE boot and has not
    finished that step (the PE may be gone on purpose: its silence is no reason to
    wait), the PE kernel's boot id recorded then ("" if unknown); otherwise None."""
    run = runs.active_run_of_device(session, device_id)
    if run is None or run.step_name != "reboot":
        return None
    issued = run.context.get(REBOOT_ISSUED)
    if not isinstance(issued, dict) or issued.get("pe_boot") != pe.boot_id:
        return None
    return str(issued.get("kernel_boot") or "")


def _sealed(session: Session, device: Device, boot_id: int) -> seal.SealedOs | None:
    """What the device's run recorded of the installed system the PE boot ``boot_id``
    sealed (``SEALED_OS``), if anything."""
    if device.id is None or not boot_id:
        return None
    run = runs.active_run_of_device(session, device.id)
    if run is None:
        return None
    return seal.from_record(run.context.get(SEALED_OS), boot_id)


def _left(pe: PeAccess, before: str, *, timeout: float) -> bool:
    """Whether the laptop no longer runs the PE boot ``before``: another boot answers,
    or nothing answers as that PE (refused, another host key, another login)."""
    from provisioning.transports.ssh import SSHTransport  # paramiko only when used

    transport = SSHTransport(pe.endpoint)
    try:
        now = kernel_boot_id(transport, timeout)
    except (HostKeyMismatch, AuthFailed, CommandTimedOut):
        return True
    finally:
        transport.close()
    return now != before


def require_live(serial: str, pe: RegisteredPe | None) -> RegisteredPe:
    """The PE if the pipeline may use it now. :raises NoLivePe: why it may not."""
    if pe is None:
        raise NoLivePe(
            f"no provisioning environment of {serial} has registered yet: power it on at "
            "the bench (network boot); the run goes on when it registers"
        )
    if not pe.current:
        why = pe.ended_reason or "not registered"
        raise NoLivePe(
            f"the provisioning environment of {serial} is no longer registered ({why}): "
            "waiting for it to boot again"
        )
    if not pe.alive:
        raise NoLivePe(
            f"the provisioning environment of {serial} has been silent for "
            f"{int(pe.silent_seconds)} s: waiting for it to boot again"
        )
    return pe


def pinned_known_hosts(pe: RegisteredPe) -> Path:
    """A known_hosts file holding this boot's host key and nothing else (one file per
    boot: a newer boot of the laptop never shares the old one's trust), written
    atomically."""
    return seal.known_hosts_file(f"boot-{pe.boot_id}", pe.known_hosts_line())
