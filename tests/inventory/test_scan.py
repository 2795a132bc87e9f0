from __future__ import annotations

import threading
from collections import Counter

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from core.db import Database
from core.principal import Role
from inventory.models import Device, DeviceEvent
from tests.conftest import auth
from tests.support.factories import World
from tests.support.server import running_server


def _scan(client: TestClient, world: World, code: str, **extra: object) -> httpx.Response:
    body = {"code": code, "bench_id": world.bench.id, **extra}
    return client.post("/scan", json=body, headers=auth(world.token(Role.TECHNICIAN)))


def test_expected_laptop_is_received_once(
    app_client: TestClient, world: World, db: Database
) -> None:
    first = _scan(app_client, world, " acme0001 \n")
    assert first.status_code == 200, first.text
    assert first.json()["outcome"] == "received"
    assert first.json()["device"]["state"] == "received"
    assert first.json()["device"]["slot"] == 1
    second = _scan(app_client, world, "ACME0001")
    assert second.json()["outcome"] == "already"
    assert second.json()["attention"] is True
    with db.session(write=False) as s:
        device = s.exec(select(Device).where(Device.serial == "ACME0001")).one()
        events = s.exec(select(DeviceEvent).where(DeviceEvent.device_id == device.id)).all()
    assert [e.event for e in events] == ["expect", "receive"]


def test_unknown_serial_becomes_unexpected_and_can_be_attached(
    app_client: TestClient, world: World
) -> None:
    r = _scan(app_client, world, "NOBODY42")
    assert r.json()["outcome"] == "unexpected"
    device_id = r.json()["device"]["id"]
    # Invisible to client-bound tokens until attached: it belongs to nobody yet.
    assert (
        app_client.get(
            f"/devices/{device_id}", headers=auth(world.token(Role.DSI, "ACME"))
        ).status_code
        == 404
    )
    attached = app_client.post(
        f"/devices/{device_id}/attach",
        json={"delivery_id": world.acme_delivery.id},
        headers=auth(world.token(Role.TECHNICIAN)),
    )
    assert attached.status_code == 200, attached.text
    assert attached.json()["state"] == "received"
    assert attached.json()["client_id"] == world.acme.id


def test_damaged_laptop_is_quarantined_with_reason(app_client: TestClient, world: World) -> None:
    r = _scan(app_client, world, "ACME0002", damaged=True, reason="cracked lid")
    assert r.json()["outcome"] == "quarantined"
    assert r.json()["device"]["quarantine_reason"] == "cracked lid"


def test_illegal_move_is_409_with_state_and_allowed_events(
    app_client: TestClient, world: World
) -> None:
    listing = app_client.get("/devices", headers=auth(world.token(Role.ADMIN))).json()
    device_id = listing["items"][0]["id"]
    r = app_client.post(
        f"/devices/{device_id}/events",
        json={"event": "restage"},
        headers=auth(world.token(Role.TECHNICIAN)),
    )
    assert r.status_code == 409
    body = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert body["current_state"] == "expected"
    assert "receive" in body["allowed_events"]


@pytest.mark.slow  # fifty concurrent clients
def test_fifty_technicians_scanning_at_once_make_one_event(db: Database, world: World) -> None:
    """Real concurrent HTTP requests against a real uvicorn server."""
    token = world.token(Role.TECHNICIAN)
    outcomes: list[str] = []
    lock = threading.Lock()
    with running_server(db) as base_url:
        barrier = threading.Barrier(50)

        def one(code: str) -> None:
            with httpx.Client(base_url=base_url, timeout=60) as c:
                barrier.wait(timeout=30)
                r = c.post(
                    "/scan", json={"code": code, "bench_id": world.bench.id}, headers=auth(token)
                )
                with lock:
                    outcomes.append(r.json()["outcome"] if r.status_code == 200 else r.text)

        codes = ["ACME0001"] * 25 + ["UNKNOWN-77"] * 25
        threads = [threading.Thread(target=one, args=(c,)) for c in codes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
    counts = Counter(outcomes)
    assert counts == {"received": 1, "unexpected": 1, "already": 48}, counts
    with db.session(write=False) as s:
        events = s.exec(select(DeviceEvent)).all()
    per_kind = Counter(e.event for e in events)
    assert per_kind["receive"] == 1
    assert per_kind["discover"] == 1
