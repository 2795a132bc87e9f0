"""The static boot control: a real laptop in a bench slot wired by an administrator.

The slot's wiring (``SlotEndpoint``, ``PUT /runs/endpoints``) says where the PE answers
and which host key it has; the laptop reboots with the PE's ``reboot`` command (or the
slot's ``reboot_command``); its installed OS answers where the slot's options say
(``os_host``, ``os_ssh_port``, ``winrm_port`` ... defaulting to the PE's address), with
the Windows password from the client's configuration (``winrm_password`` secret).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from sqlmodel import Session

from images import configs
from images.service import active_config
from inventory.models import Device
from provisioning.bootcontrol.base import JsonValue, PeAccess
from provisioning.configure.plan import OsFamily, OsTarget
from provisioning.errors import CommandFailed, ConnectFailed
from provisioning.runs import repository
from provisioning.transports.base import SshEndpoint, Transport


class StaticBootControl:
    name = "static"

    def pe_access(self, session: Session, device: Device) -> PeAccess:
        if device.bench_id is None or device.slot is None:
            raise CommandFailed(f"{device.serial} is not in a bench slot")
        row = repository.get_endpoint(session, device.bench_id, device.slot)
        if row is None:
            raise CommandFailed(
                f"no provisioning-environment address for bench slot "
                f"{device.bench_id}/{device.slot}"
            )
        return PeAccess(
            control=self.name,
            endpoint=SshEndpoint(
                host=row.host,
                port=row.ssh_port,
                user=row.ssh_user,
                key_path=Path(row.key_path),
                known_hosts_path=Path(row.known_hosts_path),
            ),
            options=dict(row.options),
        )

    def in_installed_os(self, pe: PeAccess) -> bool:
        return False

    def prepare_offline(
        self, pe: PeAccess, transport: Transport, *, disk: str, timeout: float
    ) -> None:
        """Nothing: a wired slot's PE has the installed system at its offline root."""

    def seal_installed_os(
        self, pe: PeAccess, transport: Transport, *, timeout: float
    ) -> dict[str, JsonValue] | None:
        """Nothing: a wired slot's installed OS is reached as its options say."""
        return None

    def reboot_into_os(
        self, pe: PeAccess, connect: Callable[[], Transport], *, timeout: float
    ) -> None:
        reboot = str(pe.options.get("reboot_command") or "reboot")
        # The connection going away is what a reboot looks like.
        with contextlib.suppress(ConnectFailed):
            connect().run(f"{reboot} >/dev/null 2>&1 &", timeout=timeout)

    def os_target(
        self, session: Session, device: Device, pe: PeAccess, family: OsFamily
    ) -> OsTarget:
        options, endpoint = pe.options, pe.endpoint
        if family is OsFamily.WINDOWS:
            ca = options.get("winrm_ca_path")
            return OsTarget.windows(
                host=str(options.get("os_host") or endpoint.host),
                winrm_port=int(options.get("winrm_port") or 5986),
                transport=str(options.get("winrm_transport") or "ssl"),
                username=str(options.get("winrm_user") or "Administrator"),
                password=windows_password(session, device),
                ca_path=Path(str(ca)) if ca else None,
            )
        return OsTarget.linux(
            host=str(options.get("os_host") or endpoint.host),
            ssh_port=int(options.get("os_ssh_port") or endpoint.port),
            user=str(options.get("os_user") or endpoint.user),
            key_path=Path(str(options.get("os_key_path") or endpoint.key_path)),
            known_hosts_path=Path(
                str(options.get("os_known_hosts_path") or endpoint.known_hosts_path)
            ),
            target_root=str(options.get("target_root") or ""),
        )


def windows_password(session: Session, device: Device) -> str:
    """The installed Windows' admin password: from the device's secrets in the client's
    configuration (key ``winrm_password``), never from the slot options."""
    if device.client_id is None:
        return ""
    config = active_config(session, device.client_id)
    secrets = configs.device_secrets(session, config, device) if config else {}
    return str(secrets.get("winrm_password", ""))
