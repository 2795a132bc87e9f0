"""Chunk manifests: written at publish, computed lazily for older images, served to
staff and the image's own company only, reclaimed with the stored file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fastapi.testclient import TestClient

from core.db import Database
from core.principal import Role
from tests.conftest import auth
from tests.images.conftest import declare, dsi, sha
from tests.support.factories import World

CHUNK = 4 * 1024 * 1024


def _upload(client: TestClient, world: World, data: bytes) -> dict[str, object]:
    image = declare(client, world, data)
    r = client.put(f"/images/{image['id']}/content", content=data, headers=dsi(world))
    assert r.status_code == 200, r.text
    result: dict[str, object] = r.json()
    return result


def _expected(data: bytes) -> list[str]:
    return [hashlib.sha256(data[i : i + CHUNK]).hexdigest() for i in range(0, len(data), CHUNK)]


def test_manifest_written_at_publish_and_served(
    app_client: TestClient, world: World, image_settings: Path
) -> None:
    data = os.urandom(2 * CHUNK + 1000)
    image = _upload(app_client, world, data)
    written = list((image_settings / "manifests").rglob("*.json"))
    assert [p.name for p in written] == [f"{sha(data)}.{CHUNK}.json"]

    r = app_client.get(f"/images/{image['id']}/manifest", headers=dsi(world))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["chunk_size"] == CHUNK
    assert body["size"] == len(data)
    assert body["sha256"] == sha(data)
    assert body["chunks"] == _expected(data)
    assert len(body["chunks"]) == 3  # the last chunk is short

    # A technician reads it; another company's DSI gets 404; logistics 403.
    tech = auth(world.token(Role.TECHNICIAN))
    assert app_client.get(f"/images/{image['id']}/manifest", headers=tech).status_code == 200
    other = dsi(world, "GLOBEX")
    assert app_client.get(f"/images/{image['id']}/manifest", headers=other).status_code == 404
    logistics = auth(world.token(Role.LOGISTICS, "ACME"))
    assert app_client.get(f"/images/{image['id']}/manifest", headers=logistics).status_code == 403


def test_manifest_computed_lazily_and_damage_recomputed(
    app_client: TestClient, world: World, image_settings: Path
) -> None:
    data = os.urandom(CHUNK + 5)
    image = _upload(app_client, world, data)
    (path,) = list((image_settings / "manifests").rglob("*.json"))
    path.unlink()  # an image published before manifests existed
    r = app_client.get(f"/images/{image['id']}/manifest", headers=dsi(world))
    assert r.status_code == 200
    assert r.json()["chunks"] == _expected(data)
    assert path.is_file()

    path.write_text('{"version": 1, "chunk_size": 4194304, "size": 3}')  # damaged
    r = app_client.get(f"/images/{image['id']}/manifest", headers=dsi(world))
    assert r.json()["chunks"] == _expected(data)


def test_unpublished_image_has_no_manifest(app_client: TestClient, world: World) -> None:
    image = declare(app_client, world, b"x" * 10)
    r = app_client.get(f"/images/{image['id']}/manifest", headers=dsi(world))
    assert r.status_code >= 400 and r.status_code < 500
    assert "traceback" not in r.text.lower()


def test_gc_removes_the_manifest_with_the_file(
    app_client: TestClient, world: World, image_settings: Path, db: Database
) -> None:
    from images import gc

    data = os.urandom(1000)
    image = _upload(app_client, world, data)
    r = app_client.post(f"/images/{image['id']}/retire", headers=dsi(world))
    assert r.status_code == 200
    gc.run_gc(db)
    assert not list((image_settings / "manifests").rglob("*.json"))
    assert not (image_settings / "sha256" / sha(data)[:2] / sha(data)).exists()
