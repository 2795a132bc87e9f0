"""Runs over HTTP: start, list/get with progress, retry, abort, roles and tenancy."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.db import Database
from core.principal import Role
from inventory.models import Device
from inventory.states import DeviceState
from provisioning.runs.models import ProvisioningRun, RunStatus
from tests.conftest import auth
from tests.support.factories import World
from tests.support.harness import LINUX_CONFIG, activate_config, publish_image
from tests.support.images import make_image


def _receive(app_client: TestClient, world: World, serial: str, slot: int) -> int:
    r = app_client.post(
        "/scan",
        json={"code": serial, "bench_id": world.bench.id, "slot": slot},
        headers=auth(world.token(Role.TECHNICIAN)),
    )
    assert r.status_code in (200, 201), r.text
    return int(r.json()["device"]["id"])


def test_start_needs_image_and_configuration(
    app_client: TestClient, world: World, db: Database
) -> None:
    device_id = _receive(app_client, world, "GLBX0001", 1)
    tech = auth(world.token(Role.TECHNICIAN))
    r = app_client.post("/runs", json={"device_id": device_id}, headers=tech)
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    # Both things the client still has to provide are named, not only the first.
    assert "no available image" in r.json()["detail"]
    assert "no active configuration" in r.json()["detail"]
    with db.session(write=False) as s:
        device = s.get(Device, device_id)
        assert device is not None and device.state == DeviceState.RECEIVED


def test_runs_api_lifecycle_and_tenancy(
    app_client: TestClient,
    world: World,
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.settings import get_settings

    monkeypatch.setenv("MASTERLINE_IMAGE_STORE_DIR", str(tmp_path / "store"))
    get_settings.cache_clear()
    try:
        assert world.acme.id is not None
        publish_image(
            db, client_id=world.acme.id, image=make_image(tmp_path, mib=1), os_family="linux"
        )
        activate_config(db, client_id=world.acme.id, body=LINUX_CONFIG)
        device_id = _receive(app_client, world, "ACME0001", 1)  # scan-in queues the run
        tech = auth(world.token(Role.TECHNICIAN))
        page = app_client.get("/runs", params={"active": True}, headers=tech).json()
        (run,) = page["items"]
        assert run["device_id"] == device_id and run["status"] == "queued"
        assert run["serial"] == "ACME0001" and run["slot"] == 1
        assert {"progress_bytes", "rate_bytes_per_second", "eta_seconds", "last_error"} <= set(run)
        # A second start is refused while a run is active.
        r = app_client.post("/runs", json={"device_id": device_id}, headers=tech)
        assert r.status_code == 409
        # Tenancy: ACME's dsi and logistics read it; GLOBEX's get 404 and an empty list.
        for role in (Role.DSI, Role.LOGISTICS):
            own = auth(world.token(role, "ACME"))
            assert app_client.get(f"/runs/{run['id']}", headers=own).status_code == 200
            other = auth(world.token(role, "GLOBEX"))
            assert app_client.get(f"/runs/{run['id']}", headers=other).status_code == 404
            assert app_client.get("/runs", headers=other).json()["items"] == []
        # Only staff act on runs.
        dsi = auth(world.token(Role.DSI, "ACME"))
        assert app_client.post(f"/runs/{run['id']}/abort", headers=dsi).status_code == 403
        # Retry of a run that did not fail is a conflict; abort of a queued run is final.
        assert app_client.post(f"/runs/{run['id']}/retry", headers=tech).status_code == 409
        r = app_client.post(f"/runs/{run['id']}/abort", json={"reason": "bench swap"}, headers=tech)
        assert r.status_code == 200 and r.json()["status"] == "aborted"
        assert r.json()["device_state"] == "received"
        detail = app_client.get(f"/runs/{run['id']}", headers=tech).json()
        assert [e["kind"] for e in detail["events"]] == ["queued", "aborted"]
        # Started again by hand.
        r = app_client.post("/runs", json={"device_id": device_id}, headers=tech)
        assert r.status_code == 201 and r.json()["status"] == "queued"
        assert app_client.get("/runs/999999", headers=tech).status_code == 404
    finally:
        get_settings.cache_clear()


def test_bad_input_is_one_clear_error(app_client: TestClient, world: World, db: Database) -> None:
    tech = auth(world.token(Role.TECHNICIAN))
    r = app_client.post("/runs", json={"device_id": "x"}, headers=tech)
    assert r.status_code == 422
    r = app_client.post("/runs", json={"device_id": 424242}, headers=tech)
    assert r.status_code == 404
    with db.session(write=False) as s:
        from sqlmodel import select

        assert s.exec(select(ProvisioningRun)).all() == []
    _ = RunStatus


def test_wiring_a_slot_of_no_bench_is_404_and_of_no_slot_422(
    app_client: TestClient, world: World
) -> None:
    admin = auth(world.token(Role.ADMIN))
    body = {
        "host": "127.0.0.1",
        "key_path": "/nonexistent/key",
        "known_hosts_path": "/nonexistent/kh",
    }
    r = app_client.put(
        "/runs/endpoints", json={**body, "bench_id": 999_999, "slot": 1}, headers=admin
    )
    assert r.status_code == 404, r.text
    assert r.json()["detail"] == "bench 999999 not found"
    too_far = {**body, "bench_id": world.bench.id, "slot": world.bench.slots + 1}
    r = app_client.put("/runs/endpoints", json=too_far, headers=admin)
    assert r.status_code == 422, r.text
    assert "slots 1 to" in r.json()["detail"]
