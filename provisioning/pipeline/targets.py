"""Where the installed OS answers after its reboot: the (OsTarget, ConfigPlan) pair the
configure and gate steps need, built from the client's configuration and the slot's
endpoint options. Kept apart from the engine, which only schedules steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import Session

from inventory.models import Device
from provisioning import labboot
from provisioning.transports.ssh import SshEndpoint


def default_plan_builder(
    session: Session, device: Device, image: Any, options: dict[str, Any], endpoint: SshEndpoint
) -> tuple[Any, Any]:
    """(OsTarget, ConfigPlan) from the configure helper's ``build_plan`` and the slot's
    endpoint options (where the installed OS answers after its reboot)."""
    from provisioning.configure.build import build_plan
    from provisioning.configure.plan import OsTarget

    plan = build_plan(session, device, image)
    if labboot.is_lab(options):
        return labboot.os_target(options, str(plan.os_family)), plan
    if str(plan.os_family) == "windows":
        target = OsTarget.windows(
            host=str(options.get("os_host", endpoint.host)),
            winrm_port=int(options.get("winrm_port", 5986)),
            transport=str(options.get("winrm_transport", "ssl")),
            username=str(options.get("winrm_user", "Administrator")),
            password=_windows_password(session, device, options),
            ca_path=Path(options["winrm_ca_path"]) if options.get("winrm_ca_path") else None,
        )
    else:
        target = OsTarget.linux(
            host=str(options.get("os_host", endpoint.host)),
            ssh_port=int(options.get("os_ssh_port", endpoint.port)),
            user=str(options.get("os_user", endpoint.user)),
            key_path=Path(options.get("os_key_path", endpoint.key_path)),
            known_hosts_path=Path(options.get("os_known_hosts_path", endpoint.known_hosts_path)),
            target_root=str(options.get("target_root", "")),
        )
    return target, plan


def _windows_password(session: Session, device: Device, options: dict[str, Any]) -> str:
    """The installed Windows' admin password: from the device's secrets in the client's
    configuration (key ``winrm_password``), never from the slot options."""
    from images import configs
    from images import service as image_service

    if device.client_id is None:
        return ""
    config = image_service.active_config(session, device.client_id)
    secrets = configs.device_secrets(session, config, device) if config else {}
    return str(secrets.get("winrm_password", ""))
