"""VPN profiles rendered once, in code, for both OS families.

The Linux playbook and the Windows scripts write the same files; what differs is where
(``/etc/wireguard/wg0.conf`` vs ``C:\\ProgramData\\...``) and how (Ansible ``copy`` with
``no_log`` vs PowerShell ``Set-Content`` whose script text is never logged). The rendered
text contains the device's secrets: it is only ever handed to those two writers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from provisioning.configure.plan import OsFamily, VpnKind, VpnPlan
from provisioning.errors import InvalidPlan

WIREGUARD_DEFAULT_PORT = 51820
OPENVPN_DEFAULT_PORT = 1194
# Where the Windows vendor clients read their profiles (WireGuard's own configuration
# directory, OpenVPN Connect / community client's config directory).
_WINDOWS_DIRS = {
    VpnKind.WIREGUARD: "C:\\Program Files\\WireGuard\\Data\\Configurations",
    VpnKind.OPENVPN: "C:\\Program Files\\OpenVPN\\config",
}


@dataclass(frozen=True)
class ProfileFile:
    """One file of a VPN profile: an absolute path on the laptop (before any lab
    ``target_root``) and its content, which holds secrets."""

    path: str
    content: str = field(repr=False)
    mode: str = "0600"


def wireguard_interface(vpn: VpnPlan) -> str:
    return vpn.settings.get("interface") or "wg0"


def profile_path(vpn: VpnPlan, family: OsFamily) -> str | None:
    """Where the gate looks for the profile. ``None``: Windows IKEv2, which is a VPN
    connection (``Get-VpnConnection``), not a file."""
    if vpn.kind is VpnKind.VENDOR:
        return vpn.settings["profile_path"]
    if family is OsFamily.WINDOWS:
        if vpn.kind is VpnKind.IKEV2:
            return None
        name = wireguard_interface(vpn) if vpn.kind is VpnKind.WIREGUARD else vpn.name
        ext = "conf" if vpn.kind is VpnKind.WIREGUARD else "ovpn"
        return f"{_WINDOWS_DIRS[vpn.kind]}\\{name}.{ext}"
    if vpn.kind is VpnKind.WIREGUARD:
        return f"/etc/wireguard/{wireguard_interface(vpn)}.conf"
    if vpn.kind is VpnKind.OPENVPN:
        return f"/etc/openvpn/client/{vpn.name}.conf"
    return f"/etc/swanctl/conf.d/{vpn.name}.conf"


def linux_service(vpn: VpnPlan) -> str | None:
    """The systemd unit that brings the tunnel up at boot on a real laptop."""
    if vpn.kind is VpnKind.WIREGUARD:
        return f"wg-quick@{wireguard_interface(vpn)}"
    if vpn.kind is VpnKind.OPENVPN:
        return f"openvpn-client@{vpn.name}"
    if vpn.kind is VpnKind.IKEV2:
        return "strongswan"
    return None


def linux_packages(vpn: VpnPlan) -> list[str]:
    """Distribution packages the tunnel needs on a real laptop (``package_mode: apt``)."""
    return {
        VpnKind.WIREGUARD: ["wireguard-tools"],
        VpnKind.OPENVPN: ["openvpn"],
        VpnKind.IKEV2: ["strongswan-swanctl", "charon-systemd"],
        VpnKind.VENDOR: [],
    }[vpn.kind]


def profile_files(vpn: VpnPlan, family: OsFamily) -> list[ProfileFile]:
    """Every file of the profile, with secrets in. Windows IKEv2 has none (it is an
    ``Add-VpnConnection``; EAP credentials are the teleworker's own).

    :raises InvalidPlan: a required setting or secret is missing.
    """
    path = profile_path(vpn, family)
    if path is None:
        return []
    if vpn.kind is VpnKind.VENDOR:
        return [ProfileFile(path, _need_secret(vpn, "profile"))]
    if vpn.kind is VpnKind.WIREGUARD:
        return [ProfileFile(path, _wireguard(vpn))]
    if vpn.kind is VpnKind.OPENVPN:
        files = []
        auth_path = None
        if vpn.secret("username") or vpn.secret("password"):
            sep = "\\" if family is OsFamily.WINDOWS else "/"
            auth_path = path.rsplit(sep, 1)[0] + f"{sep}{vpn.name}.auth"
            files.append(
                ProfileFile(auth_path, f"{vpn.secret('username')}\n{vpn.secret('password')}\n")
            )
        return [ProfileFile(path, _openvpn(vpn, auth_path)), *files]
    return [ProfileFile(path, _swanctl(vpn))]


def _need_setting(vpn: VpnPlan, key: str) -> str:
    value = vpn.settings.get(key)
    if not value:
        raise InvalidPlan(f"{vpn.kind.value} VPN {vpn.name}: setting {key!r} is required")
    return value


def _need_secret(vpn: VpnPlan, key: str) -> str:
    value = vpn.secret(key)
    if not value:
        raise InvalidPlan(f"{vpn.kind.value} VPN {vpn.name}: this device has no {key!r}")
    return value


def _wireguard(vpn: VpnPlan) -> str:
    lines = [
        "# Managed by Masterline: this laptop's WireGuard tunnel (holds its private key).",
        "[Interface]",
        f"PrivateKey = {_need_secret(vpn, 'private_key')}",
        f"Address = {_need_setting(vpn, 'address')}",
    ]
    if vpn.settings.get("dns"):
        lines.append(f"DNS = {vpn.settings['dns']}")
    lines += ["", "[Peer]", f"PublicKey = {_need_setting(vpn, 'peer_public_key')}"]
    if vpn.secret("preshared_key"):
        lines.append(f"PresharedKey = {vpn.secret('preshared_key')}")
    lines += [
        f"Endpoint = {vpn.server}:{vpn.port or WIREGUARD_DEFAULT_PORT}",
        f"AllowedIPs = {vpn.settings.get('allowed_ips') or '0.0.0.0/0, ::/0'}",
        f"PersistentKeepalive = {vpn.settings.get('keepalive') or '25'}",
    ]
    return "\n".join(lines) + "\n"


def _openvpn(vpn: VpnPlan, auth_path: str | None) -> str:
    lines = [
        "# Managed by Masterline: this laptop's OpenVPN profile.",
        "client",
        "dev tun",
        f"proto {vpn.settings.get('proto') or 'udp'}",
        f"remote {vpn.server} {vpn.port or OPENVPN_DEFAULT_PORT}",
        "resolv-retry infinite",
        "nobind",
        "persist-key",
        "persist-tun",
        "remote-cert-tls server",
    ]
    if auth_path:
        lines.append(f"auth-user-pass {auth_path.replace(chr(92), '/')}")
    if vpn.settings.get("ca"):
        lines += ["<ca>", vpn.settings["ca"].strip(), "</ca>"]
    for key in ("cert", "key"):
        if vpn.secret(key):
            lines += [f"<{key}>", vpn.secret(key).strip(), f"</{key}>"]
    if vpn.secret("tls_crypt"):
        lines += ["<tls-crypt>", vpn.secret("tls_crypt").strip(), "</tls-crypt>"]
    if not auth_path and not (vpn.secret("cert") and vpn.secret("key")):
        raise InvalidPlan(
            f"openvpn VPN {vpn.name}: this device needs cert+key or username+password"
        )
    return "\n".join(lines) + "\n"


def _swanctl(vpn: VpnPlan) -> str:
    psk = vpn.secret("psk")
    eap_password = vpn.secret("eap_password")
    if not psk and not eap_password:
        raise InvalidPlan(f"ikev2 VPN {vpn.name}: this device needs 'eap_password' or 'psk'")
    remote_id = vpn.settings.get("remote_id") or vpn.server
    if psk:
        local_auth, remote_auth = "psk", "psk"
        local_id = vpn.settings.get("local_id") or ""
    else:
        local_auth, remote_auth = "eap-mschapv2", "pubkey"
        local_id = _need_setting(vpn, "eap_identity")
    id_line = f"      id = {local_id}" if local_id and psk else ""
    eap_line = f"      eap_id = {local_id}" if not psk else ""
    section, secret_id, secret = (
        (f"ike-{vpn.name}", remote_id, psk) if psk else (f"eap-{vpn.name}", local_id, eap_password)
    )
    secret_block = f'  {section} {{\n    id = {secret_id}\n    secret = "{_quote(secret)}"\n  }}'
    body = [
        "# Managed by Masterline: this laptop's IKEv2 connection (strongSwan swanctl).",
        "connections {",
        f"  {vpn.name} {{",
        "    version = 2",
        f"    remote_addrs = {vpn.server}",
        "    vips = 0.0.0.0,::",
        "    local {",
        f"      auth = {local_auth}",
        *(line for line in (id_line, eap_line) if line),
        "    }",
        "    remote {",
        f"      auth = {remote_auth}",
        f"      id = {remote_id}",
        "    }",
        "    children {",
        f"      {vpn.name} {{",
        f"        remote_ts = {vpn.settings.get('remote_ts') or '0.0.0.0/0,::/0'}",
        "        start_action = start",
        "      }",
        "    }",
        "  }",
        "}",
        "secrets {",
        secret_block,
        "}",
    ]
    return "\n".join(body) + "\n"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
