"""The plan for one laptop, from its client's configuration in the images domain: the
configuration document translated into the plan's own shape (``plan_document``), the
device's hostname and VPN secrets, and the store installers resolved (``build_plan``).
The plan's types and their validation are in ``provisioning/configure/plan.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provisioning.configure.plan import (
    _VPN_SECRET_KEYS,
    ConfigPlan,
    InvalidPlan,
    OsFamily,
    VpnKind,
    _enum,
    _slug,
)
from provisioning.imaging.installers import (
    LINUX_INSTALLER_DIR,
    WINDOWS_INSTALLER_DIR,
    resolve_installers,
)


def build_plan(session: Any, device: Any, image: Any) -> ConfigPlan:
    """The plan for ``device``: its client's active configuration
    (``images.service.active_config``), this device's decrypted VPN secrets
    (``images.configs.device_secrets``) and the hostname rendered from the client's
    pattern for the image's OS family.

    :raises InvalidPlan: no active configuration, or one that cannot be applied.
    :raises images.errors.HostnameInvalid, SecretKeyError: from the images domain.
    """
    from images import configs as image_configs  # the images domain owns configurations
    from images import service as image_service

    config = image_service.active_config(session, device.client_id)
    if config is None:
        raise InvalidPlan(f"the client of device {device.serial} has no active configuration")
    family = _enum(OsFamily, getattr(image, "os_family", "linux"), "OS family")
    body = image_configs.body_of(config)
    hostname = image_configs.hostname_for(session, config, device, image.os_family)
    document = plan_document(body.model_dump(mode="json"), family)
    document["hostname"] = hostname
    secrets: dict[str, str] = {}
    if document["vpn"]:
        # The device's secret store may hold more than its VPN's (e.g. an admin
        # password for another step): the plan takes only what its VPN kind uses.
        kind = _enum(VpnKind, document["vpn"].get("kind", ""), "VPN kind")
        stored = image_configs.device_secrets(session, config, device)
        secrets = {k: v for k, v in stored.items() if k in _VPN_SECRET_KEYS[kind]}
    plan = ConfigPlan.from_dict(document, os_family=family, secrets=secrets)
    return resolve_installers(session, int(device.client_id), plan)


def plan_document(body: Mapping[str, Any], family: OsFamily) -> dict[str, Any]:
    """Translate an images-domain configuration document (``ClientConfigBody``) into
    the plan's own shape (what ``ConfigPlan.from_dict`` reads).

    :raises InvalidPlan: a package manager this OS family cannot use.
    """
    vpn = body.get("vpn")
    out_vpn = None
    if vpn:
        settings = {k: _setting(v) for k, v in (vpn.get("settings") or {}).items()}
        if "server_public_key" in settings and "peer_public_key" not in settings:
            settings["peer_public_key"] = settings["server_public_key"]
        out_vpn = {
            "kind": vpn.get("kind"),
            "name": vpn.get("name") or "masterline",
            "server": vpn.get("server"),
            "port": vpn.get("port"),
            "settings": settings,
            "client_app": _app_document(vpn["client_app"], family)
            if vpn.get("client_app")
            else None,
        }
    return {
        "hostname_pattern": body.get("hostname_pattern"),
        "vpn": out_vpn,
        "apps": [_app_document(a, family) for a in body.get("apps") or []],
        "checks": body.get("checks"),
    }


def _setting(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _app_document(app: Mapping[str, Any], family: OsFamily) -> dict[str, Any]:
    name = str(app.get("name") or "")
    source = app.get("source") or {}
    doc: dict[str, Any] = {"name": name, "silent_args": list(app.get("silent_args") or [])}
    if source.get("kind") == "package":
        manager = source.get("manager")
        wanted = "winget" if family is OsFamily.WINDOWS else "apt"
        if manager != wanted:
            raise InvalidPlan(
                f"app {name}: package manager {manager!r} is not supported on "
                f"{family.value} (use {wanted})"
            )
        doc.update(source="package", package=source.get("id"))
    else:
        key = _slug(name)
        if family is OsFamily.WINDOWS:
            doc.update(source="msi", package=f"{WINDOWS_INSTALLER_DIR}\\{key}.msi")
        else:
            doc.update(source="deb", package=f"{LINUX_INSTALLER_DIR}/{key}.deb")
        doc["store"] = {"image_id": source.get("image_id"), "sha256": source.get("sha256")}
    verify = app.get("verify") or {}
    if verify.get("kind") == "file":
        doc["verify"] = f"path:{verify.get('path')}"
    elif verify.get("name"):
        doc["verify"] = f"package:{verify.get('name')}"
    return doc
