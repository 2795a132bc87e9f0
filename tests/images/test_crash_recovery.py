"""kill -9 during an upload's final publish: after a restart the upload finishes (the
rename had happened) or is cleanly resumable, never stuck ``verifying``.

A real server process blocks at the publish point (``tests/support/serve.py``), is
killed with SIGKILL, and a new server process takes over the same database and store.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from core.db import Database
from core.principal import Role
from core.timeutil import utcnow
from images import publish
from images.models import Image, ImageFormat, ImageStatus, OsFamily
from images.store import get_store
from tests.conftest import auth
from tests.support.factories import World
from tests.support.server import server_process
from tests.support.waiting import eventually

TUS = {"Tus-Resumable": "1.0.0"}


def _declare(base: str, headers: dict[str, str], data: bytes, version: str) -> int:
    r = httpx.post(
        f"{base}/images",
        headers=headers,
        json={
            "name": "win11",
            "version": version,
            "os_family": "windows",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _in_background(fn: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server was killed under it
            fn()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _status(db: Database, image_id: int) -> str:
    with db.session(write=False) as s:
        row = s.get(Image, image_id)
        assert row is not None
        return str(row.status)


@pytest.mark.slow  # kills and restarts a server process
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sigkill_during_publish_then_restart(
    database_url: str, db: Database, world: World, image_settings: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "publishing"
    headers = auth(world.token(Role.DSI, "ACME"))
    tus_data = os.urandom(3 * 1024 * 1024 + 5)
    put_data = os.urandom(1024 * 1024 + 3)
    blocked = ("--block-publish", "before", str(marker))
    with server_process(database_url, *blocked) as (base, proc):
        tus_id = _declare(base, headers, tus_data, "tus")
        put_id = _declare(base, headers, put_data, "put")
        meta = "image_id " + base64.b64encode(str(tus_id).encode()).decode()
        created = httpx.post(
            f"{base}/uploads",
            headers={
                **TUS,
                **headers,
                "Upload-Length": str(len(tus_data)),
                "Upload-Metadata": meta,
            },
        )
        upload_path = urlsplit(created.headers["Location"]).path
        threads = [
            _in_background(
                lambda: httpx.patch(
                    base + upload_path,
                    content=tus_data,
                    headers={
                        **TUS,
                        **headers,
                        "Upload-Offset": "0",
                        "Content-Type": "application/offset+octet-stream",
                    },
                    timeout=120,
                )
            ),
            _in_background(
                lambda: httpx.put(
                    f"{base}/images/{put_id}/content",
                    content=put_data,
                    headers=headers,
                    timeout=120,
                )
            ),
        ]

        def at_publish() -> bool:
            assert proc.poll() is None
            return marker.exists() and len(marker.read_text()) == 2

        eventually(at_publish, timeout=120, message="the uploads never reached the publish point")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        for thread in threads:
            thread.join(timeout=60)
    # What the bug left behind: both images verifying, their publisher dead.
    assert _status(db, tus_id) == _status(db, put_id) == ImageStatus.VERIFYING

    with server_process(database_url) as (base, _):
        # Settled at start: the tus upload resumes where it was (every byte received).
        image = httpx.get(f"{base}/images/{tus_id}", headers=headers).json()
        assert image["status"] == "uploading"
        head = httpx.head(base + upload_path, headers={**TUS, **headers})
        assert head.status_code == 200
        assert head.headers["Upload-Offset"] == str(len(tus_data))
        done = httpx.patch(
            base + upload_path,
            content=b"",
            headers={
                **TUS,
                **headers,
                "Upload-Offset": str(len(tus_data)),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert done.status_code == 204, done.text
        content = httpx.get(f"{base}/images/{tus_id}/content", headers=headers)
        assert content.status_code == 200 and content.content == tus_data
        # The plain PUT has nothing to resume: the image takes a new PUT.
        assert httpx.get(f"{base}/images/{put_id}", headers=headers).json()["status"] == (
            "uploading"
        )
        again = httpx.put(f"{base}/images/{put_id}/content", content=put_data, headers=headers)
        assert again.status_code == 200 and again.json()["status"] == "available"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_publisher_killed_after_the_rename_leaves_a_published_image(
    db: Database, world: World, image_settings: Path
) -> None:
    data = b"published bytes"
    sha = hashlib.sha256(data).hexdigest()
    store = get_store()
    assert world.acme.id is not None
    with db.session() as s:
        row = Image(
            client_id=world.acme.id,
            name="win11",
            version="after-rename",
            os_family=OsFamily.WINDOWS,
            format=ImageFormat.RAW,
            stored_size=len(data),
            stored_sha256=sha,
            raw_size=len(data),
            raw_sha256=sha,
            status=ImageStatus.VERIFYING,
            uploaded_by="test",
            upload_touched_at=utcnow(),
        )
        s.add(row)
        s.flush()
        image_id = row.id
    assert image_id is not None
    temp = store.temp_path("put")
    temp.write_bytes(data)
    store.publish(temp, sha)  # the rename happened; the commit never did
    # A live publisher (its lock held) is left alone…
    with publish._publishing(store, image_id, wait=True):
        holder = threading.Thread(
            target=lambda: settled.extend(publish.recover_interrupted(db, store))
        )
        settled: list[int] = []
        holder.start()
        holder.join()
    assert settled == [] and _status(db, image_id) == ImageStatus.VERIFYING
    # …a dead one's image is published: the verified bytes are in place.
    assert publish.recover_interrupted(db, store) == [image_id]
    assert _status(db, image_id) == ImageStatus.AVAILABLE
