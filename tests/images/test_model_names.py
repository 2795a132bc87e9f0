"""Vendor and model names that cannot be read never enter the shared catalogue."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from core.db import Database
from core.errors import InvalidInput
from core.principal import Role
from inventory import service as inventory
from tests.conftest import auth
from tests.images.conftest import dsi, sha
from tests.support.factories import World

BAD_NAMES = [
    "",
    "   ",
    "\t",
    "\u200b",  # zero-width space
    "Dell\u200b",
    "\ufeffDell",  # byte-order mark
    "De\u0000ll",
    "Dell\nInc",
    "\u2028",  # line separator
    "\u3000",  # ideographic space only
    "Dell\u202e",  # right-to-left override
]


def _catalogue(client: TestClient, world: World) -> list[tuple[str, str]]:
    r = client.get("/hardware-models", headers=auth(world.token(Role.ADMIN)))
    assert r.status_code == 200
    return sorted((m["vendor"], m["model"]) for m in r.json())


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_image_with_an_unreadable_vendor_or_model_is_422(
    app_client: TestClient, world: World
) -> None:
    before = _catalogue(app_client, world)
    for i, bad in enumerate(BAD_NAMES):
        for ref in ({"vendor": bad, "model": "Latitude 5440"}, {"vendor": "Dell", "model": bad}):
            r = app_client.post(
                "/images",
                headers=dsi(world),
                json={
                    "name": "win11",
                    "version": f"v{i}",
                    "os_family": "windows",
                    "size": 10,
                    "sha256": sha(b"x" * 10),
                    "compatible_models": [ref],
                },
            )
            assert r.status_code == 422, (ref, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
    assert _catalogue(app_client, world) == before
    # Surrounding spaces are trimmed, inner ones kept: one catalogue entry.
    ok = app_client.post(
        "/images",
        headers=dsi(world),
        json={
            "name": "win11",
            "version": "ok",
            "os_family": "windows",
            "size": 10,
            "sha256": sha(b"x" * 10),
            "compatible_models": [{"vendor": " Dell ", "model": "Latitude  5440 "}],
        },
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["compatible_models"] == [{"vendor": "Dell", "model": "Latitude  5440"}]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_admin_models_create_refuses_the_same_names(
    app_client: TestClient, world: World, db: Database
) -> None:
    before = _catalogue(app_client, world)
    admin = auth(world.token(Role.ADMIN))
    for bad in BAD_NAMES:
        for body in ({"vendor": bad, "model": "X1"}, {"vendor": "Lenovo", "model": bad}):
            r = app_client.post("/hardware-models", headers=admin, json=body)
            assert r.status_code == 422, (body, r.text)
    assert _catalogue(app_client, world) == before
    # And whatever path a name takes into the catalogue (imports call the service).
    with db.session() as s:
        for bad in BAD_NAMES:
            with pytest.raises(InvalidInput):
                inventory.get_or_create_hardware_model(s, bad, "X1")
    assert _catalogue(app_client, world) == before
