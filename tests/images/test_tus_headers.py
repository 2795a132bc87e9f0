"""Every tus header is parsed strictly: a value that is not what the protocol says gets
400 problem+json (never a 500), and the upload logic runs without the web framework."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from fastapi.testclient import TestClient

from core.db import Database
from core.errors import MasterlineError
from core.principal import Principal, Role
from images import upload
from images.models import ImageStatus
from images.stream import ClientGone
from tests.images.conftest import declare, dsi
from tests.support.factories import World

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}

BAD_INTEGERS = [
    b"\xb2",  # superscript two: str.isdigit() says yes, int() says no
    "\u0663".encode(),  # Arabic-Indic three, as UTF-8 bytes
    b"-1",
    b"+5",
    b"1e3",
    b"0x10",
    b"1 2",
    b"",
    b"9223372036854775808",  # 2^63
    b"99999999999999999999999999",
]


def _meta(image_id: object) -> str:
    return "image_id " + base64.b64encode(str(image_id).encode()).decode()


def _create(client: TestClient, world: World, image: dict[str, object]) -> str:
    r = client.post(
        "/uploads",
        headers={
            **TUS,
            **dsi(world),
            "Upload-Length": str(image["size"]),
            "Upload-Metadata": _meta(image["id"]),
        },
    )
    assert r.status_code == 201, r.text
    return str(r.headers["Location"])


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_bad_upload_offset_is_400(app_client: TestClient, world: World) -> None:
    data = os.urandom(1000)
    url = _create(app_client, world, declare(app_client, world, data))
    for value in BAD_INTEGERS:
        r = app_client.patch(
            url, content=data, headers={**TUS, **dsi(world), **OCTET, "Upload-Offset": value}
        )
        assert r.status_code == 400, (value, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert "Upload-Offset" in r.json()["detail"]
    ok = app_client.patch(
        url, content=data, headers={**TUS, **dsi(world), **OCTET, "Upload-Offset": "0"}
    )
    assert ok.status_code == 204, ok.text


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_bad_upload_length_and_metadata_are_400(app_client: TestClient, world: World) -> None:
    image = declare(app_client, world, os.urandom(100))
    base = {**TUS, **dsi(world)}
    for value in BAD_INTEGERS:
        r = app_client.post(
            "/uploads",
            headers={**base, "Upload-Length": value, "Upload-Metadata": _meta(image["id"])},
        )
        assert r.status_code == 400, (value, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    bad_metadata: list[bytes | str] = [
        "image_id !!notbase64!!",
        "image_id " + base64.b64encode(b"\xff\xfe").decode(),  # not UTF-8
        b"image_id \xc2\xb2",  # non-ASCII "base64"
        _meta(image["id"]) + "," + _meta(image["id"]),  # a key twice
        "image\u200bid " + base64.b64encode(b"1").decode(),
        "image_id MQ== extra",
        _meta(image["id"]) + ",k " + "QUFB" * 2000,  # over the length cap
    ]
    for meta in bad_metadata:
        raw = meta.encode() if isinstance(meta, str) else meta
        r = app_client.post(
            "/uploads", headers={**base, "Upload-Length": "100", "Upload-Metadata": raw}
        )
        assert r.status_code == 400, (meta, r.status_code, r.text)
    # An image id that is not a plain ASCII integer names no image: 422.
    for image_id in ("\u00b2", "-1", "9223372036854775808"):
        r = app_client.post(
            "/uploads",
            headers={**base, "Upload-Length": "100", "Upload-Metadata": _meta(image_id)},
        )
        assert r.status_code == 422, (image_id, r.text)
    wrong_version = app_client.post(
        "/uploads",
        headers={
            **dsi(world),
            "Tus-Resumable": "1.0.1",
            "Upload-Length": "100",
            "Upload-Metadata": _meta(image["id"]),
        },
    )
    assert wrong_version.status_code == 412


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_bad_content_length_on_put_is_refused(world: World, db: Database) -> None:
    # A proxy in front may let any header through: the upload logic checks it itself.
    principal = _principal(world, db)
    image_id = _declared(world, db)

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 10

    for value in ("\u00b2", "-3", "12abc"):
        with pytest.raises(MasterlineError) as e:
            asyncio.run(
                upload.put_content({"content-length": value}, body(), db, image_id, principal)
            )
        assert e.value.status_code == 422


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_upload_logic_takes_headers_and_a_byte_stream(world: World, db: Database) -> None:
    """No Request: a dict of headers and an async iterator, as any web layer could give."""
    principal = _principal(world, db)
    data = os.urandom(3 * 1024 * 1024 + 11)
    image_id = _declared(world, db, data)
    headers = {
        "tus-resumable": "1.0.0",
        "upload-length": str(len(data)),
        "upload-metadata": _meta(image_id),
    }
    upload_id, _ = asyncio.run(upload.tus_create(headers, db, principal))

    async def cut_after(part: bytes) -> AsyncIterator[bytes]:
        yield part
        raise ClientGone()

    patch = {"tus-resumable": "1.0.0", "content-type": "application/offset+octet-stream"}
    half = len(data) // 2
    offset, row = asyncio.run(
        upload.tus_patch(
            {**patch, "upload-offset": "0"}, cut_after(data[:half]), db, upload_id, principal
        )
    )
    assert (offset, row) == (half, None)

    async def rest() -> AsyncIterator[bytes]:
        yield data[half:]

    offset, row = asyncio.run(
        upload.tus_patch({**patch, "upload-offset": str(half)}, rest(), db, upload_id, principal)
    )
    assert offset == len(data) and row is not None
    assert row.status == ImageStatus.AVAILABLE


@pytest.mark.slow  # starts a fresh interpreter
def test_the_upload_logic_imports_no_web_framework() -> None:
    probe = (
        "import sys, images.upload, images.tus, images.stream; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def _principal(world: World, db: Database) -> Principal:
    from api.auth import authenticate

    with db.session(write=False) as s:
        return authenticate(s, world.token(Role.DSI, "ACME"))


def _declared(world: World, db: Database, data: bytes = b"x" * 10) -> int:
    import hashlib

    from images import service
    from images.schemas import ImageDeclare

    body = ImageDeclare(
        name="direct",
        version="1",
        os_family="windows",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    with db.session() as s:
        row = service.declare(s, body, _principal(world, db))
        assert row.id is not None
        return row.id
