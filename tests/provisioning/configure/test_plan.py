"""Plans: validation of what a client's configuration asks, secrets kept out of repr,
profiles rendered per VPN kind, and ``build_plan`` from the images domain's real
configuration and per-device secrets (on both databases)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pydantic import SecretStr
from sqlmodel import select

from core.db import Database
from core.principal import SYSTEM
from core.settings import get_settings
from images.models import Image
from inventory.models import Device
from provisioning.configure.build import build_plan
from provisioning.configure.linux import linux_hostvars, linux_secrets
from provisioning.configure.plan import (
    AppSource,
    Check,
    ConfigPlan,
    OsFamily,
    OsTarget,
    render_hostname,
)
from provisioning.configure.vpn import profile_files, profile_path
from provisioning.errors import InvalidPlan
from tests.support.factories import World

KEY = "plan-test-private-key-0123456789abcdef="


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MASTERLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MASTERLINE_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def wg(**extra: Any) -> dict[str, Any]:
    return {
        "hostname_pattern": "ACME-{serial}",
        "vpn": {
            "kind": "wireguard",
            "server": "vpn.acme.example",
            "settings": {"address": "10.8.0.2/32", "peer_public_key": "PEER="},
        },
        **extra,
    }


def _image(os_family: str) -> Image:
    """A stand-in for the image a plan is built for: build_plan reads only its OS family."""
    return cast(Image, SimpleNamespace(os_family=os_family))


def test_secrets_stay_out_of_repr() -> None:
    plan = ConfigPlan.from_dict(
        wg(), os_family="linux", secrets={"private_key": KEY}, fields={"serial": "S1"}
    )
    target = OsTarget.windows(
        host="h",
        winrm_port=5986,
        transport="ssl",
        username="Administrator",
        password="Winrm-Passw0rd!",
    )
    assert KEY not in repr(plan) and KEY not in str(plan)
    assert "Winrm-Passw0rd!" not in repr(target)
    assert plan.secret_values() == [KEY]
    # Non-secret playbook variables carry no secret; the secrets go separately.
    t = OsTarget.linux(
        host="h",
        ssh_port=22,
        user="root",
        key_path=Path("k"),
        known_hosts_path=Path("kh"),
        target_root="/lab/os",
    )
    assert KEY not in repr(linux_hostvars(t, plan))
    assert KEY in repr(linux_secrets(plan))


@pytest.mark.parametrize(
    ("pattern", "fields", "expected"),
    [
        ("ACME-{serial}", {"serial": "5CG1234"}, "ACME-5CG1234"),
        ("{client}-{asset_tag}", {"client": "ACME", "asset_tag": "A 17"}, "ACME-A-17"),
    ],
)
def test_render_hostname(pattern: str, fields: dict[str, str], expected: str) -> None:
    assert render_hostname(pattern, fields) == expected


@pytest.mark.parametrize(
    ("data", "family", "secrets", "fragment"),
    [
        (wg(hostname_pattern="X-{nope}"), "linux", {"private_key": KEY}, "{nope}"),
        (wg(hostname_pattern="{serial.__class__}"), "linux", {"private_key": KEY}, "unknown"),
        (wg(hostname_pattern="VERYLONGNAMEXX-{serial}"), "windows", {"private_key": KEY}, "15"),
        (wg(), "linux", {}, "private key"),
        (wg(), "linux", {"private_key": KEY, "psk": "x"}, "does not apply"),
        (wg(), "windows", {"private_key": KEY}, "client app"),
        ({"hostname": "h", "vpn": {"kind": "pptp", "server": "s"}}, "linux", {}, "VPN kind"),
        ({"hostname": "h", "apps": [{"name": "a", "package": "p\nq"}]}, "linux", {}, "single"),
        (
            {"hostname": "h", "apps": [{"name": "a", "package": "a.msi", "source": "msi"}]},
            "linux",
            {},
            "Windows",
        ),
        (
            {"hostname": "h", "apps": [{"name": "a", "package": "p", "verify": "service:x"}]},
            "linux",
            {},
            "Windows",
        ),
        (
            {
                "hostname": "h",
                "apps": [{"name": "a", "package": "p"}, {"name": "a", "package": "q"}],
            },
            "linux",
            {},
            "unique",
        ),
        ({"hostname": "h", "checks": ["image_hash", "smell"]}, "linux", {}, "check"),
    ],
)
def test_bad_configurations_are_one_line_fatal_errors(
    data: dict[str, Any], family: str, secrets: dict[str, str], fragment: str
) -> None:
    with pytest.raises(InvalidPlan) as info:
        ConfigPlan.from_dict(data, os_family=family, secrets=secrets, fields={"serial": "S1"})
    assert fragment in str(info.value)
    assert "\n" not in str(info.value) and KEY not in str(info.value)
    assert not info.value.retryable


def test_profiles_per_kind_and_family() -> None:
    ovpn = ConfigPlan.from_dict(
        {
            "hostname": "h",
            "vpn": {
                "kind": "openvpn",
                "name": "acme",
                "server": "o.example",
                "port": 443,
                "settings": {"proto": "tcp"},
            },
        },
        os_family="linux",
        secrets={"username": "u1", "password": "pw-123456789"},
    ).vpn
    assert ovpn is not None
    files = profile_files(ovpn, OsFamily.LINUX)
    assert [f.path for f in files] == [
        "/etc/openvpn/client/acme.conf",
        "/etc/openvpn/client/acme.auth",
    ]
    assert "remote o.example 443" in files[0].content and "proto tcp" in files[0].content
    assert "auth-user-pass /etc/openvpn/client/acme.auth" in files[0].content
    assert files[1].content == "u1\npw-123456789\n" and "pw-123456789" not in repr(files[1])
    ike = ConfigPlan.from_dict(
        {"hostname": "h", "vpn": {"kind": "ikev2", "server": "i.example"}},
        os_family="windows",
    ).vpn
    assert ike is not None and profile_path(ike, OsFamily.WINDOWS) is None
    assert profile_files(ike, OsFamily.WINDOWS) == []
    with pytest.raises(InvalidPlan):
        profile_files(ike, OsFamily.LINUX)  # strongSwan needs a PSK or EAP password


def test_installer_apps_verify_by_their_product_id() -> None:
    plan = ConfigPlan.from_dict(
        {
            "hostname": "h",
            "apps": [
                {"name": "Contoso Agent", "source": "msi", "package": "C:\\I\\ContosoAgent.msi"},
            ],
        },
        os_family="windows",
    )
    (app,) = plan.apps
    assert app.source is AppSource.MSI and app.verify_kind == "package"
    assert app.verify_arg == "ContosoAgent" and app.key == "Contoso-Agent"


def _set_config(db: Database, body: dict[str, Any]) -> None:
    from images import configs
    from images.schemas import ClientConfigBody

    with db.session() as s:
        configs.set_config(s, "ACME", ClientConfigBody.model_validate(body), SYSTEM)


def test_build_plan_from_the_images_configuration(db: Database, world: World) -> None:
    body = {
        "hostname_pattern": "{client}-{serial}",
        "vpn": {
            "kind": "wireguard",
            "name": "acme",
            "server": "vpn.acme.example",
            "port": 51820,
            "settings": {
                "server_public_key": "SRVpub=",
                "address": "10.8.0.2/32",
                "allowed_ips": "10.0.0.0/8",
            },
            "device_secret": "generate",
        },
        "apps": [
            {
                "name": "Microsoft Teams",
                "source": {"kind": "package", "manager": "apt", "id": "teams-for-linux"},
                "verify": {"kind": "package", "name": "teams-for-linux"},
            },
            {
                "name": "Zoom",
                "source": {"kind": "package", "manager": "apt", "id": "zoom"},
                "verify": {"kind": "file", "path": "/opt/zoom/zoom"},
            },
        ],
        "checks": ["image_hash", "hostname", "apps"],
    }
    _set_config(db, body)
    linux = _image("linux")
    with db.session() as s:
        device = s.exec(select(Device).where(Device.serial == "ACME0001")).one()
        plan = build_plan(s, device, linux)
        again = build_plan(s, device, linux)
    assert plan.hostname == "ACME-ACME0001"
    assert plan.vpn is not None and plan.vpn.settings["peer_public_key"] == "SRVpub="
    key = plan.vpn.secret("private_key")
    assert again.vpn is not None
    assert len(key) == 44 and key == again.vpn.secret("private_key")
    assert key not in repr(plan)
    assert [(a.name, a.package, a.verify) for a in plan.apps] == [
        ("Microsoft Teams", "teams-for-linux", "package:teams-for-linux"),
        ("Zoom", "zoom", "path:/opt/zoom/zoom"),
    ]
    assert plan.checks == (Check.IMAGE_HASH, Check.HOSTNAME, Check.APPS)
    wg_conf = profile_files(plan.vpn, OsFamily.LINUX)[0].content
    assert f"PrivateKey = {key}" in wg_conf and "AllowedIPs = 10.0.0.0/8" in wg_conf


def test_build_plan_refuses_a_package_manager_the_os_lacks(db: Database, world: World) -> None:
    body = {
        "hostname_pattern": "A-{serial}",
        "apps": [
            {
                "name": "Teams",
                "source": {"kind": "package", "manager": "apt", "id": "teams"},
                "verify": {"kind": "package", "name": "teams"},
            }
        ],
    }
    _set_config(db, body)
    with db.session() as s:
        device = s.exec(select(Device).where(Device.serial == "ACME0001")).one()
        with pytest.raises(InvalidPlan) as info:
            build_plan(s, device, _image("windows"))
    assert "'apt' is not supported on windows" in str(info.value)


def test_build_plan_without_configuration(db: Database, world: World) -> None:
    with db.session() as s:
        device = s.exec(select(Device).where(Device.serial == "ACME0001")).one()
        with pytest.raises(InvalidPlan, match="no active configuration"):
            build_plan(s, device, _image("linux"))


def test_target_secret_is_a_secretstr() -> None:
    target = OsTarget.windows(
        host="h", winrm_port=1, transport="ntlm", username="u", password=SecretStr("pw-xyz")
    )
    assert target.password is not None and target.password.get_secret_value() == "pw-xyz"
