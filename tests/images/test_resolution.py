"""Which image a laptop gets, and gc of retired versions (service level, both databases)."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from core.db import Database
from core.principal import SYSTEM
from core.timeutil import utcnow
from images import service
from images.errors import NoImageForDevice, PinnedImageUnavailable, StoredFileMissing
from images.gc import run_gc
from images.models import ClientConfig, Image, ImageFormat, ImageStatus, OsFamily
from images.schemas import ClientConfigBody
from images.store import get_store, path_of
from inventory import service as inventory
from inventory.models import ClientCompany, Device
from provisioning.runs.models import ProvisioningRun, RunStatus
from tests.support.factories import World

_seq = iter(range(1, 10_000))


def _image(
    session: Session,
    client: ClientCompany,
    *,
    name: str = "win11",
    version: str,
    status: ImageStatus = ImageStatus.AVAILABLE,
    models: list[str] | None = None,
    fmt: ImageFormat = ImageFormat.RAW,
    published_minutes_ago: int = 0,
    data: bytes | None = None,
) -> Image:
    """A catalogue row (and, with ``data``, its stored file) without going through HTTP."""
    data = data if data is not None else f"image-{next(_seq)}".encode()
    digest = hashlib.sha256(data).hexdigest()
    assert client.id is not None
    row = Image(
        client_id=client.id,
        name=name,
        version=version,
        os_family=OsFamily.WINDOWS,
        format=fmt,
        raw_size=len(data),
        raw_sha256=digest,
        stored_size=len(data),
        stored_sha256=digest,
        status=status,
        uploaded_by="test",
        published_at=utcnow() - timedelta(minutes=published_minutes_ago),
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    ids = [inventory.get_or_create_hardware_model(session, "Dell", m).id for m in models or []]
    service.repository.set_compatible(session, row.id, [i for i in ids if i is not None])
    store = get_store()
    store.ensure()
    target = store.path_for(digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    session.flush()
    return row


def _device(session: Session, serial: str) -> Device:
    return session.exec(select(Device).where(Device.serial == serial)).one()


def _pin(session: Session, client: ClientCompany, name: str, version: str | None) -> None:
    from images import configs

    body = ClientConfigBody.model_validate(
        {"hostname_pattern": "ACME-{serial}", "image": {"name": name, "version": version}}
    )
    configs.set_config(session, client.code, body, SYSTEM)


def test_newest_compatible_available_image(db: Database, world: World) -> None:
    with db.session() as s:
        device = _device(s, "ACME0001")  # a Dell Latitude 5440
        _image(s, world.acme, version="1", published_minutes_ago=30)
        newest = _image(
            s, world.acme, version="2", published_minutes_ago=10, models=["Latitude 5440"]
        )
        _image(s, world.acme, version="3", published_minutes_ago=5, models=["Latitude 7440"])
        _image(s, world.acme, version="4", status=ImageStatus.RETIRED)
        _image(s, world.acme, version="5", status=ImageStatus.UPLOADING)
        _image(s, world.acme, name="teams", version="9", fmt=ImageFormat.FILE)
        # Another client's newer image never resolves.
        _image(s, world.globex, version="99", published_minutes_ago=0)
        assert service.resolve_for_device(s, device).id == newest.id
        assert path_of(newest).is_file()


def test_pinned_version_and_name(db: Database, world: World) -> None:
    with db.session() as s:
        device = _device(s, "ACME0001")
        old = _image(s, world.acme, version="1", published_minutes_ago=60)
        _image(s, world.acme, version="2")
        other_name = _image(
            s, world.acme, name="win11-kiosk", version="1", published_minutes_ago=90
        )
        _pin(s, world.acme, "win11", "1")
        assert service.resolve_for_device(s, device).id == old.id
        _pin(s, world.acme, "win11-kiosk", None)
        assert service.resolve_for_device(s, device).id == other_name.id
        _pin(s, world.acme, "win11", "404")
        with pytest.raises(PinnedImageUnavailable):
            service.resolve_for_device(s, device)


def test_pinned_retired_or_incompatible_version_refuses(db: Database, world: World) -> None:
    with db.session() as s:
        device = _device(s, "ACME0001")
        _image(s, world.acme, version="1", status=ImageStatus.RETIRED)
        _image(s, world.acme, version="2", models=["Latitude 7440"])
        _image(s, world.acme, version="3")
        _pin(s, world.acme, "win11", "1")
        with pytest.raises(PinnedImageUnavailable, match="retired"):
            service.resolve_for_device(s, device)
        _pin(s, world.acme, "win11", "2")
        with pytest.raises(PinnedImageUnavailable, match="hardware model"):
            service.resolve_for_device(s, device)


def test_no_image_of_the_devices_own_client(db: Database, world: World) -> None:
    with db.session() as s:
        device = _device(s, "GLBX0001")
        _image(s, world.acme, version="1")
        _image(s, world.globex, version="1", status=ImageStatus.RETIRED)
        with pytest.raises(NoImageForDevice):
            service.resolve_for_device(s, device)
        config = service.active_config(s, world.globex.id or 0)
        assert config is None


def test_gc_reclaims_retired_images_no_run_needs(
    db: Database, world: World, image_settings: Path
) -> None:
    shared = os.urandom(1000)
    with db.session() as s:
        gone = _image(s, world.acme, version="1", status=ImageStatus.RETIRED)
        needed = _image(s, world.acme, version="2", status=ImageStatus.RETIRED)
        # Same bytes as a published image: retiring one must not delete the other's file.
        twin = _image(s, world.acme, version="3", status=ImageStatus.RETIRED, data=shared)
        live = _image(s, world.globex, version="1", data=shared)
        stale = _image(s, world.acme, version="4", status=ImageStatus.UPLOADING)
        stale.upload_touched_at = utcnow() - timedelta(days=30)
        s.add(stale)
        # A server died while publishing this one, after the rename: gc settles it.
        stuck = _image(s, world.acme, version="5", status=ImageStatus.VERIFYING)
        stuck.upload_touched_at = utcnow() - timedelta(hours=2)
        s.add(stuck)
        device = _device(s, "ACME0001")
        assert device.id is not None
        s.add(
            ProvisioningRun(
                device_id=device.id,
                client_id=world.acme.id,
                image_id=needed.id,
                status=RunStatus.RUNNING,
            )
        )
        s.add(
            ProvisioningRun(
                device_id=device.id,
                client_id=world.acme.id,
                image_id=gone.id,
                status=RunStatus.SUCCEEDED,
            )
        )
        rows = {
            "gone": gone,
            "needed": needed,
            "twin": twin,
            "live": live,
            "stale": stale,
            "stuck": stuck,
        }
        ids: dict[str, int] = {}
        for k, r in rows.items():
            assert r.id is not None
            ids[k] = r.id
        paths = {
            k: get_store().path_for(r.stored_sha256)
            for k, r in {"gone": gone, "needed": needed, "live": live}.items()
        }
    report = run_gc(db)
    assert sorted(report.reclaimed_images) == sorted([ids["gone"], ids["twin"]])
    assert report.kept_images == [ids["needed"]]
    assert report.discarded_uploads == [ids["stale"]]
    assert report.repaired_images == [ids["stuck"]]
    # "stale" never reached the store; its placeholder file was orphaned with it.
    assert not paths["gone"].exists()
    assert paths["needed"].exists() and paths["live"].exists()
    with db.session(write=False) as s:
        gone_row = s.get(Image, ids["gone"])
        assert gone_row is not None and gone_row.purged_at is not None
        with pytest.raises(StoredFileMissing):
            path_of(gone_row)
        assert s.get(Image, ids["stale"]) is None
        stuck_row = s.get(Image, ids["stuck"])
        assert stuck_row is not None and stuck_row.status == ImageStatus.AVAILABLE
        assert s.exec(select(ClientConfig)).all() == []
    assert run_gc(db).reclaimed_images == []  # idempotent
