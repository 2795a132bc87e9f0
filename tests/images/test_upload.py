"""Declaring and uploading: the plain PUT and the tus protocol, against the real app and
a real store directory."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import httpx
import pytest
import zstandard
from fastapi.testclient import TestClient

from core.principal import Role
from core.settings import get_settings
from tests.conftest import auth
from tests.images.conftest import declare, dsi, files_under, sha
from tests.support.factories import World

TUS = {"Tus-Resumable": "1.0.0"}


def _put(
    client: TestClient, world: World, image_id: object, data: bytes, code: str = "ACME"
) -> httpx.Response:
    return client.put(f"/images/{image_id}/content", content=data, headers=dsi(world, code))


def test_declare_upload_publish(app_client: TestClient, world: World, image_settings: Path) -> None:
    data = os.urandom(5 * 1024 * 1024 + 123)
    image = declare(
        app_client,
        world,
        data,
        compatible_models=[{"vendor": "Dell", "model": "Latitude 5440"}],
        notes="first",
    )
    assert image["status"] == "uploading"
    r = _put(app_client, world, image["id"], data)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "available"
    assert body["published_at"] is not None
    assert body["uploaded_by"] == "dsi:dsi-ACME"
    assert body["compatible_models"] == [{"vendor": "Dell", "model": "Latitude 5440"}]
    stored = image_settings / "sha256" / sha(data)[:2] / sha(data)
    assert stored.read_bytes() == data
    assert files_under(image_settings) == [stored]  # no temporary file left
    # Published versions are immutable.
    again = _put(app_client, world, image["id"], data)
    assert again.status_code == 409
    dup = app_client.post(
        "/images",
        json={
            "name": "win11",
            "version": "1.0",
            "os_family": "windows",
            "size": 1,
            "sha256": "0" * 64,
        },
        headers=dsi(world),
    )
    assert dup.status_code == 409


def test_hash_mismatch_publishes_nothing(
    app_client: TestClient, world: World, image_settings: Path
) -> None:
    data = os.urandom(1024 * 1024)
    image = declare(app_client, world, data)
    tampered = bytearray(data)
    tampered[1000] ^= 0xFF
    r = _put(app_client, world, image["id"], bytes(tampered))
    assert r.status_code == 422
    assert "sha256" in r.json()["detail"] and "nothing was published" in r.json()["detail"]
    assert files_under(image_settings) == []
    assert app_client.get(f"/images/{image['id']}", headers=dsi(world)).json()["status"] == (
        "uploading"
    )
    # A wrong length is refused before any byte is read.
    short = _put(app_client, world, image["id"], data[:-1])
    assert short.status_code == 422 and "Content-Length" in short.json()["detail"]
    # The right bytes still go through afterwards.
    assert _put(app_client, world, image["id"], data).json()["status"] == "available"


def test_same_bytes_twice_are_stored_once(
    app_client: TestClient, world: World, image_settings: Path
) -> None:
    data = os.urandom(300_000)
    first = declare(app_client, world, data, version="1.0")
    second = declare(app_client, world, data, version="1.1")
    other = declare(app_client, world, data, client_code="GLOBEX")
    for image, code in ((first, "ACME"), (second, "ACME"), (other, "GLOBEX")):
        assert _put(app_client, world, image["id"], data, code).status_code == 200
    assert len(files_under(image_settings)) == 1


def _tus_create(
    client: TestClient, world: World, image: dict[str, object], code: str = "ACME"
) -> str:
    meta = "image_id " + base64.b64encode(str(image["id"]).encode()).decode()
    r = client.post(
        "/uploads",
        headers={
            **TUS,
            **dsi(world, code),
            "Upload-Length": str(image["size"]),
            "Upload-Metadata": meta + ",filename " + base64.b64encode(b"x.raw").decode(),
        },
    )
    assert r.status_code == 201, r.text
    assert r.headers["Tus-Resumable"] == "1.0.0"
    return r.headers["Location"]


def _patch(client: TestClient, world: World, url: str, offset: int, data: bytes) -> httpx.Response:
    return client.patch(
        url,
        content=data,
        headers={
            **TUS,
            **dsi(world),
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        },
    )


def test_tus_in_parts(app_client: TestClient, world: World, image_settings: Path) -> None:
    data = os.urandom(9 * 1024 * 1024 + 7)
    image = declare(app_client, world, data)
    url = _tus_create(app_client, world, image)
    options = app_client.options("/uploads", headers=dsi(world))
    assert options.status_code == 204 and "creation" in options.headers["Tus-Extension"]
    cut = 6 * 1024 * 1024 + 3
    r = _patch(app_client, world, url, 0, data[:cut])
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(cut)
    head = app_client.head(url, headers={**TUS, **dsi(world)})
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == str(cut)
    assert head.headers["Upload-Length"] == str(len(data))
    # A stale offset is refused with the server's own.
    stale = _patch(app_client, world, url, 0, data[:10])
    assert stale.status_code == 409 and stale.json()["upload_offset"] == cut
    assert _patch(app_client, world, url, cut, data[cut:]).status_code == 204
    assert app_client.get(f"/images/{image['id']}", headers=dsi(world)).json()["status"] == (
        "available"
    )
    assert files_under(image_settings) == [image_settings / "sha256" / sha(data)[:2] / sha(data)]
    assert app_client.head(url, headers={**TUS, **dsi(world)}).status_code == 404


def test_tus_hash_mismatch_discards_the_upload(
    app_client: TestClient, world: World, image_settings: Path
) -> None:
    data = os.urandom(2 * 1024 * 1024)
    image = declare(app_client, world, data)
    url = _tus_create(app_client, world, image)
    r = _patch(app_client, world, url, 0, os.urandom(len(data)))
    assert r.status_code == 422 and "nothing was published" in r.json()["detail"]
    assert files_under(image_settings) == []
    assert app_client.head(url, headers={**TUS, **dsi(world)}).status_code == 404
    # A fresh upload of the right bytes succeeds.
    url = _tus_create(app_client, world, image)
    assert _patch(app_client, world, url, 0, data).status_code == 204


def test_tus_protocol_errors(app_client: TestClient, world: World) -> None:
    data = os.urandom(1000)
    image = declare(app_client, world, data)
    url = _tus_create(app_client, world, image)
    no_version = app_client.patch(
        url,
        content=data,
        headers={
            **dsi(world),
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert no_version.status_code == 412
    wrong_type = app_client.patch(
        url, content=data, headers={**TUS, **dsi(world), "Upload-Offset": "0"}
    )
    assert wrong_type.status_code == 415
    too_long = _patch(app_client, world, url, 0, data + b"x")
    assert too_long.status_code == 413
    meta = "image_id " + base64.b64encode(str(image["id"]).encode()).decode()
    wrong_length = app_client.post(
        "/uploads", headers={**TUS, **dsi(world), "Upload-Length": "5", "Upload-Metadata": meta}
    )
    assert wrong_length.status_code == 422
    no_image = app_client.post("/uploads", headers={**TUS, **dsi(world), "Upload-Length": "5"})
    assert no_image.status_code == 422
    # Termination discards the bytes; the image stays declared.
    assert app_client.delete(url, headers={**TUS, **dsi(world)}).status_code == 204
    assert app_client.head(url, headers={**TUS, **dsi(world)}).status_code == 404


def test_zstd_image_is_checked_decompressed(app_client: TestClient, world: World) -> None:
    raw = os.urandom(1024 * 1024) + bytes(8 * 1024 * 1024)
    packed = zstandard.ZstdCompressor().compress(raw)
    good = declare(
        app_client, world, packed, format="raw+zstd", raw_size=len(raw), raw_sha256=sha(raw)
    )
    r = _put(app_client, world, good["id"], packed)
    assert r.status_code == 200, r.text
    assert r.json()["raw_size"] == len(raw) and r.json()["size"] == len(packed)
    # Right compressed bytes, wrong raw declaration: refused.
    bad = declare(
        app_client,
        world,
        packed,
        version="2",
        format="raw+zstd",
        raw_size=len(raw),
        raw_sha256="0" * 64,
    )
    r = _put(app_client, world, bad["id"], packed)
    assert r.status_code == 422 and "decompressed" in r.json()["detail"]
    # Not zstd at all.
    junk = os.urandom(4096)
    wrong = declare(
        app_client, world, junk, version="3", format="raw+zstd", raw_size=1, raw_sha256="0" * 64
    )
    r = _put(app_client, world, wrong["id"], junk)
    assert r.status_code == 422 and "zstd" in r.json()["detail"]


def test_disk_full_keeps_the_upload_resumable(
    app_client: TestClient, world: World, image_settings: Path
) -> None:
    data = os.urandom(5 * 1024 * 1024)
    image = declare(app_client, world, data)
    url = _tus_create(app_client, world, image)
    part = image_settings / "tmp" / f"tus-{url.rsplit('/', 1)[1]}.part"
    assert part.is_file()
    part.unlink()
    part.symlink_to("/dev/full")  # every write fails with ENOSPC, as on a full disk
    r = _patch(app_client, world, url, 0, data)
    assert r.status_code == 507
    assert "disk is full" in r.json()["detail"]
    assert app_client.head(url, headers={**TUS, **dsi(world)}).headers["Upload-Offset"] == "0"
    assert app_client.get(f"/images/{image['id']}", headers=dsi(world)).json()["status"] == (
        "uploading"
    )
    # Space is back: the same upload resumes and completes.
    part.unlink()
    part.touch()
    assert _patch(app_client, world, url, 0, data).status_code == 204
    assert app_client.get(f"/images/{image['id']}", headers=dsi(world)).json()["status"] == (
        "available"
    )


def test_limits(app_client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASTERLINE_MAX_IMAGE_SIZE", "1000")
    monkeypatch.setenv("MASTERLINE_MAX_CONCURRENT_UPLOADS", "2")
    get_settings.cache_clear()
    big = app_client.post(
        "/images",
        json={
            "name": "big",
            "version": "1",
            "os_family": "linux",
            "size": 1001,
            "sha256": "a" * 64,
        },
        headers=dsi(world),
    )
    assert big.status_code == 413
    declare(app_client, world, b"one", version="1")
    declare(app_client, world, b"two", version="2")
    third = app_client.post(
        "/images",
        json={"name": "win11", "version": "3", "os_family": "linux", "size": 5, "sha256": "a" * 64},
        headers=dsi(world),
    )
    assert third.status_code == 429 and third.json()["in_progress"]
    # Another client has its own allowance.
    declare(app_client, world, b"one", client_code="GLOBEX")


def test_tenancy(app_client: TestClient, world: World) -> None:
    data = os.urandom(2000)
    image = declare(app_client, world, data)
    url = _tus_create(app_client, world, image)
    globex = dsi(world, "GLOBEX")
    assert app_client.get(f"/images/{image['id']}", headers=globex).status_code == 404
    assert (
        app_client.put(f"/images/{image['id']}/content", content=data, headers=globex).status_code
        == 404
    )
    assert app_client.head(url, headers={**TUS, **globex}).status_code == 404
    assert (
        app_client.patch(
            url,
            content=data,
            headers={
                **TUS,
                **globex,
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        ).status_code
        == 404
    )
    meta = "image_id " + base64.b64encode(str(image["id"]).encode()).decode()
    assert (
        app_client.post(
            "/uploads", headers={**TUS, **globex, "Upload-Length": "2000", "Upload-Metadata": meta}
        ).status_code
        == 404
    )
    assert app_client.get("/images", headers=globex).json()["items"] == []
    logistics = auth(world.token(Role.LOGISTICS, "ACME"))
    assert app_client.get("/images", headers=logistics).status_code == 403
    assert app_client.get(f"/images/{image['id']}", headers=logistics).status_code == 403
    technician = auth(world.token(Role.TECHNICIAN))
    assert [i["id"] for i in app_client.get("/images", headers=technician).json()["items"]] == [
        image["id"]
    ]
    assert (
        app_client.put(
            f"/images/{image['id']}/content", content=data, headers=technician
        ).status_code
        == 403
    )
    # An admin uploads for a named client.
    admin = auth(world.token(Role.ADMIN))
    r = app_client.post(
        "/images",
        json={
            "client_code": "GLOBEX",
            "name": "ubuntu",
            "version": "24.04",
            "os_family": "linux",
            "size": 3,
            "sha256": sha(b"abc"),
        },
        headers=admin,
    )
    assert r.status_code == 201 and r.json()["client_code"] == "GLOBEX"


def test_retire_and_cancel(app_client: TestClient, world: World, image_settings: Path) -> None:
    data = os.urandom(1000)
    image = declare(app_client, world, data)
    assert app_client.post(f"/images/{image['id']}/retire", headers=dsi(world)).status_code == 409
    _put(app_client, world, image["id"], data)
    r = app_client.post(f"/images/{image['id']}/retire", headers=dsi(world))
    assert r.status_code == 200 and r.json()["status"] == "retired"
    assert app_client.delete(f"/images/{image['id']}", headers=dsi(world)).status_code == 409
    pending = declare(app_client, world, data, version="2")
    url = _tus_create(app_client, world, pending)
    _patch(app_client, world, url, 0, data[:100])
    assert app_client.delete(f"/images/{pending['id']}", headers=dsi(world)).status_code == 204
    assert app_client.get(f"/images/{pending['id']}", headers=dsi(world)).status_code == 404
    assert not list((image_settings / "tmp").iterdir())


def test_second_writer_is_refused_while_one_holds_the_upload(
    app_client: TestClient, world: World, image_settings: Path
) -> None:
    import fcntl

    data = os.urandom(1000)
    image = declare(app_client, world, data)
    url = _tus_create(app_client, world, image)
    part = image_settings / "tmp" / f"tus-{url.rsplit('/', 1)[1]}.part"
    fd = os.open(part, os.O_RDWR)  # another request (or worker process) writing it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        r = _patch(app_client, world, url, 0, data)
        assert r.status_code == 423 and "retry" in r.json()["detail"]
    finally:
        os.close(fd)
    assert _patch(app_client, world, url, 0, data).status_code == 204
