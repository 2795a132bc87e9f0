"""Each images test gets its own image store and data directory (the secret key file
lives there), through the same ``MASTERLINE_*`` settings a server reads."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.principal import Role
from core.settings import get_settings
from tests.conftest import auth
from tests.support.factories import World


@pytest.fixture(autouse=True)
def image_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    store = tmp_path / "store"
    monkeypatch.setenv("MASTERLINE_IMAGE_STORE_DIR", str(store))
    monkeypatch.setenv("MASTERLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MASTERLINE_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    yield store
    get_settings.cache_clear()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def declare(
    client: TestClient,
    world: World,
    data: bytes,
    *,
    name: str = "win11",
    version: str = "1.0",
    client_code: str = "ACME",
    **extra: object,
) -> dict[str, object]:
    body = {
        "name": name,
        "version": version,
        "os_family": "windows",
        "size": len(data),
        "sha256": sha(data),
        **extra,
    }
    r = client.post("/images", json=body, headers=auth(world.token(Role.DSI, client_code)))
    assert r.status_code == 201, r.text
    result: dict[str, object] = r.json()
    return result


def dsi(world: World, code: str = "ACME") -> dict[str, str]:
    return auth(world.token(Role.DSI, code))


def files_under(path: Path) -> list[Path]:
    """Every file of the store but its lock and the chunk manifests written at publish
    (a manifest's temporary file, whose name starts with a dot, is still listed)."""
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.name != ".lock"
        and not (p.parent.parent.name == "manifests" and not p.name.startswith("."))
    )
