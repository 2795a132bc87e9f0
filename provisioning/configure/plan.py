"""What configuring one laptop means, resolved before any connection is made.

``OsTarget`` says how to reach the installed OS; ``ConfigPlan`` says what to apply to it
(hostname, VPN, apps, gate checks). Both are plain frozen values: the configure step and
the gate receive them ready-made and never read the database, so a retried step applies
exactly what was planned. Secrets (the WinRM password, VPN keys) are ``SecretStr`` and
kept out of ``repr`` so that a plan or a target can be logged or put in an exception
without leaking them.

Every value is checked on its way in (``configure/values.py``: safe names, single-line
values, hostnames); bad configuration is a fatal ``InvalidPlan`` with one line. The
plan's vocabulary (``OsFamily``, ``VpnKind``...) is defined there and re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from provisioning.configure.values import (
    ALL_CHECKS as ALL_CHECKS,
)
from provisioning.configure.values import (
    LINUX_INSTALLER_DIR as LINUX_INSTALLER_DIR,
)
from provisioning.configure.values import (
    WINDOWS_INSTALLER_DIR as WINDOWS_INSTALLER_DIR,
)
from provisioning.configure.values import (
    AppSource as AppSource,
)
from provisioning.configure.values import (
    Check as Check,
)
from provisioning.configure.values import (
    OsFamily as OsFamily,
)
from provisioning.configure.values import (
    VpnKind as VpnKind,
)
from provisioning.configure.values import (
    as_list,
    as_mapping,
    free_text,
    is_free_text,
    single_line,
    valid_name,
)
from provisioning.configure.values import (
    parse_enum as parse_enum,
)
from provisioning.configure.values import (
    render_hostname as render_hostname,
)
from provisioning.configure.values import (
    slug as slug,
)
from provisioning.configure.values import (
    validate_hostname as validate_hostname,
)
from provisioning.errors import InvalidPlan
from provisioning.transports.base import WinRMTransportKind


@dataclass(frozen=True)
class OsTarget:
    """How to reach the installed OS of one laptop after its reboot.

    Linux: SSH with a key, the host key pinned in ``known_hosts_path``.
    ``target_root`` prefixes every path the playbooks write ("" on a real laptop; the
    lab's rebooted laptop root otherwise). Windows: WinRM on ``winrm_port`` with
    ``transport`` ``ssl`` (HTTPS, server certificate validated against ``ca_path``) or
    ``ntlm`` (HTTP with NTLM message encryption).
    """

    os_family: OsFamily
    host: str
    # Linux (SSH + Ansible)
    ssh_port: int = 22
    user: str = "root"
    key_path: Path | None = None
    known_hosts_path: Path | None = None
    target_root: str = ""
    python_interpreter: str = "/usr/bin/python3"
    # Windows (WinRM)
    winrm_port: int = 5986
    transport: WinRMTransportKind = WinRMTransportKind.SSL
    username: str = ""
    password: SecretStr | None = field(default=None, repr=False)
    ca_path: Path | None = None

    @classmethod
    def linux(
        cls,
        *,
        host: str,
        ssh_port: int,
        user: str,
        key_path: Path,
        known_hosts_path: Path,
        target_root: str = "",
    ) -> OsTarget:
        return cls(
            os_family=OsFamily.LINUX,
            host=host,
            ssh_port=ssh_port,
            user=user,
            key_path=Path(key_path),
            known_hosts_path=Path(known_hosts_path),
            target_root=target_root,
        )

    @classmethod
    def windows(
        cls,
        *,
        host: str,
        winrm_port: int,
        transport: WinRMTransportKind | str,
        username: str,
        password: SecretStr | str,
        ca_path: Path | None = None,
    ) -> OsTarget:
        secret = password if isinstance(password, SecretStr) else SecretStr(password)
        return cls(
            os_family=OsFamily.WINDOWS,
            host=host,
            winrm_port=winrm_port,
            transport=WinRMTransportKind(transport),
            username=username,
            password=secret,
            ca_path=Path(ca_path) if ca_path else None,
        )

    @property
    def label(self) -> str:
        """Where this is, for messages and events (never a credential)."""
        port = self.ssh_port if self.os_family is OsFamily.LINUX else self.winrm_port
        return f"{self.host}:{port}"


@dataclass(frozen=True)
class StoreFile:
    """An installer from the client's image store, copied onto the laptop by the offline
    step (``provisioning/imaging/installers.py``) to the app's ``package`` path.

    Resolved when the plan is built: ``path`` is the stored file, ``sha256``/``size`` what
    the catalogue says it holds. When the store cannot provide it, ``path`` is empty and
    ``problem`` says why; only the offline step reports it, so that a later step (which
    installs from the laptop's disk) never depends on the store.
    """

    image_id: int | None = None
    sha256: str = ""
    size: int = 0
    path: str = ""
    problem: str = ""

    @property
    def label(self) -> str:
        return (
            f"image {self.image_id}" if self.image_id is not None else f"sha256 {self.sha256[:12]}"
        )


@dataclass(frozen=True)
class AppPlan:
    """One collaboration tool.

    ``package``: the apt package name (Linux), the winget id (Windows, source
    ``package``) or the path of the MSI on the laptop (source ``msi``).
    ``verify``: how the gate knows it is present: ``package`` (the package manager lists
    ``package``: dpkg on Linux, ``winget list`` on Windows), ``package:<id>`` (it lists
    that id; an installer file's default is its file stem), ``path:<file>`` (the file
    exists) or ``service:<name>`` (the Windows service exists). ``name`` is free text
    (events, messages); ``key`` is its file-name-safe form. ``installer``: for an
    ``msi``/``deb`` app whose file comes from the client's image store, that file.
    """

    name: str
    package: str
    source: AppSource = AppSource.PACKAGE
    silent_args: tuple[str, ...] = ()
    verify: str = "package"
    installer: StoreFile | None = None

    @property
    def key(self) -> str:
        return slug(self.name)

    @property
    def verify_kind(self) -> str:
        return self.verify.partition(":")[0]

    @property
    def verify_arg(self) -> str:
        """The file, service or package id the check looks for."""
        arg = self.verify.partition(":")[2]
        return arg if arg else self.package


@dataclass(frozen=True)
class VpnPlan:
    """The VPN the client's configuration asks for, with this laptop's secrets.

    ``settings`` are the non-secret parameters (WireGuard: ``address``,
    ``peer_public_key``, ``allowed_ips``, ``dns``, ``keepalive``; OpenVPN: ``proto``,
    ``ca``; IKEv2: ``auth_method``, ``remote_id``, ``eap_identity``,
    ``split_tunneling``; vendor: ``profile_path``). ``secrets`` are per device
    (WireGuard ``private_key`` / ``preshared_key``; OpenVPN ``cert`` + ``key`` or
    ``username`` + ``password``; IKEv2 ``eap_password`` or ``psk``; vendor
    ``profile``) and are never put in ``repr``, events or logs.
    ``client_app``: the vendor client app to install first (Windows WireGuard and
    OpenVPN, every vendor VPN).
    """

    kind: VpnKind
    name: str
    server: str
    port: int | None = None
    settings: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, SecretStr] = field(default_factory=dict, repr=False)
    client_app: AppPlan | None = None

    def secret(self, key: str) -> str:
        value = self.secrets.get(key)
        return value.get_secret_value() if value is not None else ""

    def secret_values(self) -> list[str]:
        return [v.get_secret_value() for v in self.secrets.values() if v.get_secret_value()]


@dataclass(frozen=True)
class ConfigPlan:
    """Everything the configure step applies and the gate checks, for one laptop."""

    os_family: OsFamily
    hostname: str
    vpn: VpnPlan | None = None
    apps: tuple[AppPlan, ...] = ()
    checks: tuple[Check, ...] = ALL_CHECKS

    def secret_values(self) -> list[str]:
        """Every secret in the plan, to scrub from any text that leaves a step."""
        return self.vpn.secret_values() if self.vpn else []

    def all_apps(self) -> tuple[AppPlan, ...]:
        """The VPN client app (if any) first, then the collaboration tools."""
        if self.vpn and self.vpn.client_app:
            return (self.vpn.client_app, *self.apps)
        return self.apps

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        os_family: OsFamily | str,
        secrets: Mapping[str, str | SecretStr] | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> ConfigPlan:
        """Build and validate a plan from a configuration document.

        ``data``: ``hostname_pattern`` (or ``hostname``), ``vpn`` (``kind``, ``name``,
        ``server``, ``port``, ``settings``, ``client_app``), ``apps`` (``name``,
        ``package``/``source``/``silent_args``/``verify``), ``checks``. ``secrets``: this
        device's VPN secrets. ``fields``: values for the hostname pattern (``serial``,
        ``asset_tag``, ``client``…).

        :raises InvalidPlan: anything missing, unsafe or not applicable to ``os_family``.
        """
        family = parse_enum(OsFamily, os_family, "OS family")
        if data.get("hostname"):
            hostname = str(data["hostname"])
        else:
            hostname = render_hostname(str(data.get("hostname_pattern") or ""), fields or {})
        hostname = validate_hostname(hostname, family)
        vpn_data = data.get("vpn")
        vpn = _vpn(vpn_data, family, secrets or {}) if vpn_data else None
        apps = tuple(_app(a, family) for a in as_list(data.get("apps") or (), "apps"))
        every = [*apps, *([vpn.client_app] if vpn and vpn.client_app else [])]
        names = [a.key.lower() for a in every]
        if len(set(names)) != len(names):
            raise InvalidPlan("app names must be unique")
        raw_checks = data.get("checks")
        checks = (
            ALL_CHECKS
            if raw_checks is None
            else tuple(parse_enum(Check, c, "check") for c in as_list(raw_checks, "checks"))
        )
        return cls(os_family=family, hostname=hostname, vpn=vpn, apps=apps, checks=checks)


def _app(raw: object, family: OsFamily) -> AppPlan:
    data = as_mapping(raw, "app")
    name = single_line(data.get("name") or "", "app name", max_len=100).strip()
    if not name:
        raise InvalidPlan("an app has no name")
    source = parse_enum(AppSource, data.get("source") or "package", f"app {name} source")
    package = single_line(
        data.get("package") or data.get("package_id") or "", f"app {name} package"
    )
    if not package:
        raise InvalidPlan(f"app {name} has no package")
    if source is AppSource.MSI and family is not OsFamily.WINDOWS:
        raise InvalidPlan(f"app {name}: MSI installers are for Windows")
    if source is AppSource.DEB and family is not OsFamily.LINUX:
        raise InvalidPlan(f"app {name}: .deb installers are for Linux")
    args = tuple(
        single_line(a, f"app {name} silent argument")
        for a in as_list(data.get("silent_args") or (), "args")
    )
    verify = single_line(data.get("verify") or "package", f"app {name} verify")
    if source is not AppSource.PACKAGE and verify == "package":
        # An installer file has no package id of its own; the package manager lists it
        # under its product name, taken to be the file's stem unless configured.
        stem = re.split(r"[\\/]", package)[-1].rsplit(".", 1)[0]
        verify = f"package:{stem}"
    kind, _, arg = verify.partition(":")
    if kind not in ("package", "path", "service") or (kind != "package" and not arg):
        raise InvalidPlan(
            f"app {name}: verify must be 'package', 'package:<id>', 'path:<file>' "
            "or 'service:<name>'"
        )
    if kind == "service" and family is not OsFamily.WINDOWS:
        raise InvalidPlan(f"app {name}: service checks are for Windows")
    installer = _store_file(data.get("store"), name) if source is not AppSource.PACKAGE else None
    return AppPlan(
        name=name,
        package=package,
        source=source,
        silent_args=args,
        verify=verify,
        installer=installer,
    )


def _store_file(raw: object, name: str) -> StoreFile | None:
    if not raw:
        return None
    data = as_mapping(raw, f"app {name} store reference")
    image_id = data.get("image_id")
    sha = str(data.get("sha256") or "")
    if image_id is None and not sha:
        raise InvalidPlan(f"app {name}: a store reference needs image_id or sha256")
    if sha and not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise InvalidPlan(f"app {name}: store sha256 must be 64 lower-case hex digits")
    try:
        ident = int(image_id) if image_id is not None else None
    except (TypeError, ValueError):
        raise InvalidPlan(f"app {name}: store image_id must be a number") from None
    return StoreFile(image_id=ident, sha256=sha)


VPN_SECRET_KEYS = {
    VpnKind.WIREGUARD: ("private_key", "preshared_key"),
    VpnKind.OPENVPN: ("cert", "key", "username", "password", "tls_crypt"),
    VpnKind.IKEV2: ("eap_password", "psk"),
    VpnKind.VENDOR: ("profile",),
}


def _vpn(raw: object, family: OsFamily, secrets: Mapping[str, str | SecretStr]) -> VpnPlan:
    data = as_mapping(raw, "vpn")
    kind = parse_enum(VpnKind, data.get("kind", ""), "VPN kind")
    name = valid_name(str(data.get("name") or "masterline"), "VPN name")
    server = single_line(data.get("server") or "", "VPN server", max_len=253)
    if not server:
        raise InvalidPlan("the VPN has no server")
    port_raw = data.get("port")
    port: int | None = None
    if port_raw not in (None, ""):
        try:
            port = int(port_raw)
        except (TypeError, ValueError):
            raise InvalidPlan("VPN port must be a number") from None
        if not 1 <= port <= 65535:
            raise InvalidPlan("VPN port must be between 1 and 65535")
    settings = {
        valid_name(str(k), "VPN setting"): free_text(v, f"VPN setting {k}")
        for k, v in as_mapping(data.get("settings") or {}, "VPN settings").items()
    }
    allowed = VPN_SECRET_KEYS[kind]
    clean: dict[str, SecretStr] = {}
    for key, value in secrets.items():
        if key not in allowed:
            # The key name is not secret; its value is never echoed.
            raise InvalidPlan(f"VPN secret {key!r} does not apply to {kind.value}")
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if not is_free_text(text):
            raise InvalidPlan(f"VPN secret {key!r} contains control characters or is too long")
        clean[key] = SecretStr(text)
    client_raw = data.get("client_app")
    client_app = _app(client_raw, family) if client_raw else None
    if kind is VpnKind.WIREGUARD and "private_key" not in clean:
        raise InvalidPlan("the WireGuard VPN has no private key for this device")
    if kind is VpnKind.VENDOR and client_app is None:
        raise InvalidPlan("a vendor VPN needs its client app")
    needs_client = kind in (VpnKind.WIREGUARD, VpnKind.OPENVPN)
    if family is OsFamily.WINDOWS and needs_client and client_app is None:
        raise InvalidPlan(f"{kind.value} on Windows needs its client app (a winget id)")
    if kind is VpnKind.VENDOR and not settings.get("profile_path"):
        raise InvalidPlan("a vendor VPN needs settings.profile_path")
    return VpnPlan(
        kind=kind,
        name=name,
        server=server,
        port=port,
        settings=settings,
        secrets=clean,
        client_app=client_app,
    )
