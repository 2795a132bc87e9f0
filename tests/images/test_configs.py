"""Client configurations: versions, write-only encrypted secrets, hostnames, per-device
secrets for the pipeline, tenancy."""

from __future__ import annotations

import base64
import copy
import logging
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import select

from core.db import Database
from core.principal import Role
from images import configs, service
from images.errors import HostnameInvalid
from images.models import OsFamily
from inventory.models import Device
from tests.conftest import auth
from tests.images.conftest import declare, dsi
from tests.support.factories import World

PSK = "psk-Zq9x!do-not-leak-7731"
PROFILE = "vendor-profile-secret-5512"
IMPORTED = "imported-device-key-8842"

CONFIG: dict[str, Any] = {
    "hostname_pattern": "ACME-{serial}",
    "vpn": {
        "kind": "wireguard",
        "server": "vpn.acme.example",
        "port": 51820,
        "settings": {"server_public_key": "c2VydmVy", "allowed_ips": "10.0.0.0/8"},
        "device_secret": "generate",
        "secrets": {"preshared_key": PSK},
    },
    "apps": [
        {
            "name": "Teams",
            "source": {"kind": "package", "manager": "winget", "id": "Microsoft.Teams"},
            "silent_args": ["--silent"],
            "verify": {"kind": "package", "name": "Microsoft.Teams"},
        }
    ],
}


def _set(
    client: TestClient,
    world: World,
    body: dict[str, Any],
    code: str = "ACME",
    role: Role = Role.DSI,
) -> httpx.Response:
    token = world.token(role, code if role.client_bound else None)
    return client.post(f"/clients/{code}/configs", json=body, headers=auth(token))


def test_secrets_are_write_only_and_encrypted_at_rest(
    app_client: TestClient, world: World, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    r = _set(app_client, world, CONFIG)
    assert r.status_code == 201, r.text
    assert r.json()["vpn"]["secret_names"] == ["preshared_key"]
    responses = [r.text]
    for role, code in ((Role.DSI, "ACME"), (Role.TECHNICIAN, None), (Role.ADMIN, None)):
        headers = auth(world.token(role, code))
        for path in (
            "/clients/ACME/configs",
            "/clients/ACME/configs/active",
            "/clients/ACME/configs/1",
        ):
            got = app_client.get(path, headers=headers)
            assert got.status_code == 200
            responses.append(got.text)
    # A rejected body with a secret in it: the error does not echo it either.
    bad = copy.deepcopy(CONFIG)
    bad["vpn"]["secrets"] = {"not_a_wireguard_secret": PSK}
    rejected = _set(app_client, world, bad)
    assert rejected.status_code == 422
    responses.append(rejected.text)
    imported = app_client.put(
        "/clients/ACME/device-secrets",
        headers=dsi(world),
        json={
            "secrets": [
                {"serial": "acme0002", "name": "private_key", "value": IMPORTED, "public": "cHVi"}
            ]
        },
    )
    assert imported.status_code == 200 and imported.json() == {"imported": 1}
    responses.append(imported.text)
    keys = app_client.get("/clients/ACME/device-keys", headers=auth(world.token(Role.TECHNICIAN)))
    responses.append(keys.text)
    assert [(k["serial"], k["public"]) for k in keys.json()] == [("ACME0002", "cHVi")]
    for text_ in [*responses, caplog.text]:
        assert PSK not in text_ and IMPORTED not in text_
    # At rest: neither column holds the clear value.
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT secrets_ciphertext, body FROM client_config")).all()
        secret_rows = conn.execute(text("SELECT ciphertext FROM device_secret")).all()
    assert rows and all(PSK not in str(r) for r in rows)
    assert secret_rows and all(IMPORTED not in str(r) for r in secret_rows)
    # The pipeline gets them decrypted.
    with db.session() as s:
        config = service.active_config(s, world.acme.id or 0)
        assert config is not None
        device = s.exec(select(Device).where(Device.serial == "ACME0002")).one()
        assert configs.device_secrets(s, config, device) == {
            "preshared_key": PSK,
            "private_key": IMPORTED,
        }


def test_wireguard_key_generated_once_per_device(
    app_client: TestClient, world: World, db: Database
) -> None:
    assert _set(app_client, world, CONFIG).status_code == 201
    with db.session() as s:
        config = service.active_config(s, world.acme.id or 0)
        assert config is not None
        device = s.exec(select(Device).where(Device.serial == "ACME0001")).one()
        first = configs.device_secrets(s, config, device)
    with db.session() as s:
        again = configs.device_secrets(s, config, device)
    assert first == again and set(first) == {"preshared_key", "private_key"}
    private = X25519PrivateKey.from_private_bytes(base64.b64decode(first["private_key"]))
    public = base64.b64encode(
        private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    ).decode()
    keys = app_client.get("/clients/ACME/device-keys", headers=dsi(world)).json()
    assert [(k["serial"], k["public"], k["origin"]) for k in keys] == [
        ("ACME0001", public, "generated")
    ]
    with db.engine.connect() as conn:
        stored = conn.execute(text("SELECT ciphertext FROM device_secret")).scalar_one()
    assert first["private_key"] not in stored


def test_versions_activate_and_secrets_carry_over(
    app_client: TestClient, world: World, db: Database
) -> None:
    assert _set(app_client, world, CONFIG).json()["version"] == 1
    second = copy.deepcopy(CONFIG)
    second["hostname_pattern"] = "AC-{asset_tag}"
    del second["vpn"]["secrets"]  # omitted: keep the previous version's
    r = _set(app_client, world, second, role=Role.ADMIN)
    assert r.json()["version"] == 2 and r.json()["vpn"]["secret_names"] == ["preshared_key"]
    listed = app_client.get("/clients/ACME/configs", headers=dsi(world)).json()
    assert [(c["version"], c["active"]) for c in listed] == [(2, True), (1, False)]
    back = app_client.post("/clients/ACME/configs/1/activate", headers=dsi(world))
    assert back.status_code == 200 and back.json()["active"] is True
    assert app_client.get("/clients/ACME/configs/active", headers=dsi(world)).json()["version"] == 1
    cleared = copy.deepcopy(CONFIG)
    cleared["vpn"]["secrets"] = {}
    assert _set(app_client, world, cleared).json()["vpn"]["secret_names"] == []
    assert (
        app_client.get(
            "/clients/GLOBEX/configs/active", headers=auth(world.token(Role.ADMIN))
        ).json()
        is None
    )


def test_tenancy_and_roles(app_client: TestClient, world: World) -> None:
    assert _set(app_client, world, CONFIG).status_code == 201
    globex = dsi(world, "GLOBEX")
    assert app_client.get("/clients/ACME/configs", headers=globex).status_code == 404
    assert app_client.post("/clients/ACME/configs", json=CONFIG, headers=globex).status_code == 404
    logistics = auth(world.token(Role.LOGISTICS, "ACME"))
    assert app_client.get("/clients/ACME/configs", headers=logistics).status_code == 403
    technician = auth(world.token(Role.TECHNICIAN))
    assert app_client.get("/clients/ACME/configs", headers=technician).status_code == 200
    assert (
        app_client.post("/clients/ACME/configs", json=CONFIG, headers=technician).status_code == 403
    )
    # A device secret for another client's laptop is refused, nothing written.
    r = app_client.put(
        "/clients/ACME/device-secrets",
        headers=dsi(world),
        json={
            "secrets": [
                {"serial": "ACME0001", "name": "private_key", "value": "x"},
                {"serial": "GLBX0001", "name": "private_key", "value": "y"},
            ]
        },
    )
    assert r.status_code == 422 and "GLBX0001" in r.json()["detail"]
    assert app_client.get("/clients/ACME/device-keys", headers=dsi(world)).json() == []


def test_validation(app_client: TestClient, world: World) -> None:
    def rejected(body: dict[str, Any], words: str) -> None:
        r = _set(app_client, world, body)
        assert r.status_code == 422, r.text
        assert words in r.text, r.text

    rejected({**CONFIG, "hostname_pattern": "ACME-{user}"}, "unknown placeholder")
    rejected({**CONFIG, "hostname_pattern": "ACME_{serial}"}, "only letters")
    vendor = {"kind": "vendor", "server": "vpn.example", "secrets": {"profile": PROFILE}}
    rejected({**CONFIG, "vpn": vendor}, "client_app")
    store_app = {
        "name": "Zoom",
        "source": {"kind": "store", "image_id": 999},
        "verify": {"kind": "file", "path": "C:/zoom.exe"},
    }
    rejected({**CONFIG, "apps": [store_app]}, "not an available image of this client")
    # An installer uploaded by this client is accepted; another client's is not.
    mine = declare(app_client, world, b"MZ-installer", name="zoom", format="file")
    app_client.put(f"/images/{mine['id']}/content", content=b"MZ-installer", headers=dsi(world))
    theirs = declare(
        app_client, world, b"MZ-other", name="zoom", client_code="GLOBEX", format="file"
    )
    app_client.put(
        f"/images/{theirs['id']}/content", content=b"MZ-other", headers=dsi(world, "GLOBEX")
    )
    ok = {
        **CONFIG,
        "apps": [{**store_app, "source": {"kind": "store", "image_id": mine["id"]}}],
        "vpn": {
            **vendor,
            "client_app": {
                **store_app,
                "name": "VpnClient",
                "source": {"kind": "store", "sha256": mine["sha256"]},
            },
        },
    }
    r = _set(app_client, world, ok)
    assert r.status_code == 201, r.text
    assert r.json()["vpn"]["secret_names"] == ["profile"] and PROFILE not in r.text
    foreign = {**store_app, "source": {"kind": "store", "image_id": theirs["id"]}}
    rejected({**ok, "apps": [foreign]}, "not an available")


def test_hostname_rendering() -> None:
    def render(
        pattern: str,
        serial: str = "5CG1234XYZ",
        os_family: OsFamily = OsFamily.WINDOWS,
        asset_tag: str | None = None,
    ) -> str:
        return configs.render_hostname(
            pattern, serial=serial, asset_tag=asset_tag, client_code="ACME", os_family=os_family
        )

    assert render("ACME-{serial}") == "ACME-5CG1234XYZ"
    assert render("{client}-{asset_tag}", asset_tag="A042") == "ACME-A042"
    assert render("{client}-{asset_tag}") == "ACME-5CG1234XYZ"  # no asset tag: the serial
    with pytest.raises(HostnameInvalid, match="at most 15"):
        render("ACMECORP-{serial}")
    assert render("ACMECORP-{serial}", os_family=OsFamily.LINUX) == "ACMECORP-5CG1234XYZ"
    with pytest.raises(HostnameInvalid, match="only letters"):
        render("ACME-{serial}", serial="AB/12")
    with pytest.raises(HostnameInvalid, match="all digits"):
        render("{serial}", serial="12345")


def test_secret_key_file_is_private_and_a_changed_key_is_reported(
    app_client: TestClient,
    world: World,
    db: Database,
    image_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.settings import get_settings
    from images.errors import SecretKeyError

    assert _set(app_client, world, CONFIG).status_code == 201
    key_file = image_settings.parent / "data" / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("MASTERLINE_SECRET_KEY", "another key entirely")
    get_settings.cache_clear()
    with db.session() as s:
        config = service.active_config(s, world.acme.id or 0)
        assert config is not None
        device = s.exec(select(Device).where(Device.serial == "ACME0001")).one()
        with pytest.raises(SecretKeyError) as caught:
            configs.device_secrets(s, config, device)
    assert PSK not in str(caught.value) and "another key" not in str(caught.value)
