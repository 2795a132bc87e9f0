"""Store installers: from the client's image store, through the site cache, onto the
installed system's disk in the offline step (real lab sshd, real store, both databases).
The runs that reach READY with a store installer are in test_pipeline.py."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.db import Database
from core.settings import get_settings
from inventory.states import DeviceState
from lab.lab import Lab
from lab.offline import offline_root
from provisioning.configure.build import plan_document, resolve_installers
from provisioning.configure.plan import ConfigPlan, OsFamily
from provisioning.errors import ChecksumMismatch, CommandFailed
from provisioning.imaging import installers
from provisioning.runs.models import RunStatus
from provisioning.transports.base import SshEndpoint
from provisioning.transports.ssh import SSHTransport
from tests.support.factories import World
from tests.support.harness import (
    LINUX_CONFIG,
    Bench,
    engine_config,
    publish_image,
    publish_installer,
    running_engine,
    set_config,
    store_app,
)
from tests.support.images import make_image

PE_ROOT = '"${MASTERLINE_PE_ROOT:-}"/mnt/target'


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("MASTERLINE_IMAGE_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("MASTERLINE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        yield tmp_path / "store"
    finally:
        get_settings.cache_clear()


def _plan(db: Database, client_id: int, body: dict[str, object], family: OsFamily) -> ConfigPlan:
    from images.schemas import ClientConfigBody

    doc = plan_document(ClientConfigBody.model_validate(body), family)
    doc["hostname"] = "ACME-1"
    with db.session(write=False) as s:
        return resolve_installers(s, client_id, ConfigPlan.from_dict(doc, os_family=family))


def test_tampered_store_installer_fails_the_offline_step_with_one_line(
    db: Database, world: World, lab: Lab, tmp_path: Path, store: Path
) -> None:
    assert world.acme.id is not None
    publish_image(
        db, client_id=world.acme.id, image=make_image(tmp_path / "img", mib=4), os_family="linux"
    )
    zoom, stored = publish_installer(
        db, client_id=world.acme.id, data=b"genuine zoom .deb", name="zoom-deb", os_family="linux"
    )
    set_config(db, {**LINUX_CONFIG, "apps": [store_app("Zoom", zoom)]})
    stored.chmod(0o644)
    stored.write_bytes(b"tampered zoom .deb")  # someone changed the stored bytes
    bench = Bench(db=db, world=world, lab=lab, tmp=tmp_path)
    lp = bench.plug("ACME0001", slot=1)
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.id is not None
    with running_engine(db, engine_config(tmp_path)):
        done = bench.wait(run.id)
    assert done.status == RunStatus.FAILED and done.failed_step == "installers"
    reason = f"installers: installer image {zoom} in the image store does not match its sha256"
    assert done.last_error == reason
    assert bench.device("ACME0001").state == DeviceState.FAILED_IMAGING
    assert bench.device_events("ACME0001")[-1].reason == reason
    # Nothing of it reached the laptop or stayed in the site cache.
    assert not (offline_root(lp) / "var/cache/masterline/installers").exists()
    assert not list((tmp_path / "site-cache").rglob("installers/*[0-9a-f]"))


def test_an_installer_missing_from_the_store_is_one_clear_line(
    db: Database, world: World, tmp_path: Path, store: Path
) -> None:
    assert world.acme.id is not None
    zoom, stored = publish_installer(
        db, client_id=world.acme.id, data=b"zoom msi", name="zoom-msi", os_family="windows"
    )
    body = {**LINUX_CONFIG, "apps": [store_app("Zoom", zoom)]}
    plan = _plan(db, world.acme.id, body, OsFamily.WINDOWS)
    (app,) = plan.apps
    assert app.package == "C:\\ProgramData\\Masterline\\Installers\\Zoom.msi"
    assert app.installer is not None and app.installer.path == str(stored)
    stored.unlink()
    plan = _plan(db, world.acme.id, body, OsFamily.WINDOWS)
    with pytest.raises(CommandFailed) as err:
        installers.prepare(plan, tmp_path / "cache")
    assert err.value.message == (
        f"installer of app Zoom: image {zoom}: stored file missing from the image store"
    )


def test_the_site_reads_an_installer_once_and_checks_it(tmp_path: Path) -> None:
    data = b"installer bytes"
    source = tmp_path / "central"
    source.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    cached = installers.ensure_cached_file(source, sha, tmp_path / "site", label="image 7")
    assert cached.read_bytes() == data
    source.unlink()  # the central store is gone: the site serves from its cache
    assert installers.ensure_cached_file(source, sha, tmp_path / "site", label="image 7") == cached
    with pytest.raises(CommandFailed, match="installer image 8 is missing from the image store"):
        installers.ensure_cached_file(source, "0" * 64, tmp_path / "site", label="image 8")
    source.write_bytes(b"other bytes")
    with pytest.raises(ChecksumMismatch, match="image 9 in the image store does not match"):
        installers.ensure_cached_file(source, "1" * 64, tmp_path / "site", label="image 9")


def test_placing_is_idempotent_and_repairs_a_wrong_copy(lab: Lab, tmp_path: Path) -> None:
    (lp,) = lab.up_n(1, disk_bytes=1024 * 1024)
    data = b"deb " * 1000
    cached = tmp_path / "cached.deb"
    cached.write_bytes(data)
    rel = "var/cache/masterline/installers/Zoom.deb"
    placement = installers.Placement(
        app="Zoom",
        label="image 3",
        source=cached,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        relative=rel,
    )
    endpoint = SshEndpoint(
        lp.host, lp.ssh_port, lp.ssh_user, lp.client_key_path, lp.known_hosts_path
    )
    target = offline_root(lp) / rel
    pe = SSHTransport(endpoint)
    try:
        assert installers.place(pe, PE_ROOT, [placement], timeout=30) == [rel]
        assert target.read_bytes() == data
        assert installers.place(pe, PE_ROOT, [placement], timeout=30) == []  # already there
        target.write_bytes(b"half a file")  # e.g. a copy from an older client's image
        assert installers.place(pe, PE_ROOT, [placement], timeout=30) == [rel]
    finally:
        pe.close()
    assert target.read_bytes() == data
    assert not list(target.parent.glob("*.partial"))
