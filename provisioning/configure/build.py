"""The plan for one laptop, from its client's configuration in the images domain: the
configuration document translated into the plan's own shape (``plan_document``), the
device's hostname and VPN secrets, and the store installers resolved (``build_plan``).
The plan's types and their validation are in ``configure/plan.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypedDict

from sqlmodel import Session

from images import configs as image_configs
from images import repository as image_repo
from images import store
from images.errors import StoredFileMissing
from images.models import Image, ImageFormat
from images.schemas import AppConfig, ClientConfigBody, PackageRef, VerifyFile
from images.service import active_config
from inventory.models import Device
from provisioning.configure.plan import (
    LINUX_INSTALLER_DIR,
    VPN_SECRET_KEYS,
    WINDOWS_INSTALLER_DIR,
    AppPlan,
    ConfigPlan,
    OsFamily,
    StoreFile,
    VpnKind,
    parse_enum,
    slug,
)
from provisioning.errors import InvalidPlan


def build_plan(session: Session, device: Device, image: Image) -> ConfigPlan:
    """The plan for ``device``: its client's active configuration
    (``images.service.active_config``), this device's decrypted VPN secrets
    (``images.configs.device_secrets``) and the hostname rendered from the client's
    pattern for the image's OS family.

    :raises InvalidPlan: no active configuration, or one that cannot be applied.
    :raises images.errors.HostnameInvalid, SecretKeyError: from the images domain.
    """
    config = active_config(session, device.client_id) if device.client_id is not None else None
    if config is None or device.client_id is None:
        raise InvalidPlan(f"the client of device {device.serial} has no active configuration")
    family = parse_enum(OsFamily, image.os_family, "OS family")
    body = image_configs.body_of(config)
    hostname = image_configs.hostname_for(session, config, device, image.os_family)
    document = plan_document(body, family)
    document["hostname"] = hostname
    secrets: dict[str, str] = {}
    if document["vpn"]:
        # The device's secret store may hold more than its VPN's (e.g. an admin
        # password for another step): the plan takes only what its VPN kind uses.
        kind = parse_enum(VpnKind, document["vpn"]["kind"], "VPN kind")
        stored = image_configs.device_secrets(session, config, device)
        secrets = {k: v for k, v in stored.items() if k in VPN_SECRET_KEYS[kind]}
    plan = ConfigPlan.from_dict(document, os_family=family, secrets=secrets)
    return resolve_installers(session, device.client_id, plan)


class StoreDocument(TypedDict):
    image_id: int | None
    sha256: str | None


class AppDocument(TypedDict, total=False):
    """An app in the plan's shape (what ``configure.plan._app`` reads)."""

    name: str
    silent_args: list[str]
    source: str  # "package", "msi" or "deb"
    package: str
    store: StoreDocument
    verify: str  # "path:…" or "package:…"


class VpnDocument(TypedDict):
    kind: str
    name: str
    server: str
    port: int | None
    settings: dict[str, str]
    client_app: AppDocument | None


class PlanDocument(TypedDict, total=False):
    """A configuration in the plan's shape (what ``ConfigPlan.from_dict`` reads)."""

    hostname_pattern: str
    hostname: str
    vpn: VpnDocument | None
    apps: list[AppDocument]
    checks: list[str]


def plan_document(body: ClientConfigBody, family: OsFamily) -> PlanDocument:
    """Translate an images-domain configuration (``ClientConfigBody``, validated there)
    into the plan's own shape (what ``ConfigPlan.from_dict`` reads and checks again).

    :raises InvalidPlan: a package manager this OS family cannot use.
    """
    vpn = body.vpn
    out_vpn: VpnDocument | None = None
    if vpn:
        settings = {k: _setting(v) for k, v in vpn.settings.items()}
        if "server_public_key" in settings and "peer_public_key" not in settings:
            settings["peer_public_key"] = settings["server_public_key"]
        out_vpn = {
            "kind": vpn.kind.value,
            "name": vpn.name,
            "server": vpn.server,
            "port": vpn.port,
            "settings": settings,
            "client_app": _app_document(vpn.client_app, family) if vpn.client_app else None,
        }
    return {
        "hostname_pattern": body.hostname_pattern,
        "vpn": out_vpn,
        "apps": [_app_document(a, family) for a in body.apps],
        "checks": [c.value for c in body.checks],
    }


def _setting(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _app_document(app: AppConfig, family: OsFamily) -> AppDocument:
    name = app.name
    source = app.source
    doc: AppDocument = {"name": name, "silent_args": list(app.silent_args)}
    if isinstance(source, PackageRef):
        wanted = "winget" if family is OsFamily.WINDOWS else "apt"
        if source.manager != wanted:
            raise InvalidPlan(
                f"app {name}: package manager {source.manager!r} is not supported on "
                f"{family.value} (use {wanted})"
            )
        doc["source"], doc["package"] = "package", source.id
    else:
        key = slug(name)
        if family is OsFamily.WINDOWS:
            doc["source"], doc["package"] = "msi", f"{WINDOWS_INSTALLER_DIR}\\{key}.msi"
        else:
            doc["source"], doc["package"] = "deb", f"{LINUX_INSTALLER_DIR}/{key}.deb"
        doc["store"] = {"image_id": source.image_id, "sha256": source.sha256}
    verify = app.verify
    if isinstance(verify, VerifyFile):
        doc["verify"] = f"path:{verify.path}"
    elif verify.name:
        doc["verify"] = f"package:{verify.name}"
    return doc


# Resolution, when the plan is built.
def resolve_installers(session: Session, client_id: int, plan: ConfigPlan) -> ConfigPlan:
    """``plan`` with each store installer resolved to its stored file (or to the reason
    there is none: see ``StoreFile``)."""

    def fix(app: AppPlan) -> AppPlan:
        if app.installer is None:
            return app
        return replace(app, installer=_resolve(session, client_id, app.installer))

    vpn = plan.vpn
    if vpn is not None and vpn.client_app is not None:
        vpn = replace(vpn, client_app=fix(vpn.client_app))
    return replace(plan, apps=tuple(fix(a) for a in plan.apps), vpn=vpn)


def _resolve(session: Session, client_id: int, ref: StoreFile) -> StoreFile:
    if ref.image_id is not None:
        image = image_repo.get_image(session, ref.image_id)
    else:
        image = image_repo.available_by_sha(session, client_id, ref.sha256)
    if image is None or image.client_id != client_id:
        return replace(ref, problem=f"{ref.label} is not in the client's image store")
    found = replace(ref, image_id=image.id, sha256=image.stored_sha256, size=image.stored_size)
    if image.format == ImageFormat.RAW_ZSTD:
        return replace(found, problem=f"{found.label} is a compressed disk image, not an installer")
    try:
        return replace(found, path=str(store.path_of(image)))
    except StoredFileMissing as e:
        return replace(found, problem=e.message)
