from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from core.db import Database
from core.principal import Role
from inventory import lifecycle
from inventory import repository as inventory_repo
from inventory.models import DeviceEvent
from inventory.states import Event
from logistics.models import OutboxEntry
from tests.conftest import auth
from tests.logistics.conftest import make_ready
from tests.support.factories import World, create_devices


def _changes(client: TestClient, token: str, cursor: int) -> dict[str, Any]:
    r = client.get("/logistics/changes", params={"cursor": cursor}, headers=auth(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


def _drain(client: TestClient, token: str, cursor: int) -> tuple[list[dict[str, object]], int]:
    seen: list[dict[str, object]] = []
    for _ in range(100):
        page = _changes(client, token, cursor)
        items = list(page["items"])
        if not items:
            break
        seen += items
        cursor = int(page["next_cursor"])
    return seen, cursor


def test_feed_lists_every_transition_once_in_order_and_per_client(
    app_client: TestClient, world: World, db: Database
) -> None:
    admin = world.token(Role.ADMIN)
    everything, cursor = _drain(app_client, admin, 0)
    assert [c["event"] for c in everything] == ["expect"] * 3  # the world's devices
    make_ready(db, world.acme_delivery, ["ACMER001"])
    new, cursor2 = _drain(app_client, admin, cursor)
    assert [c["event"] for c in new] == [
        "expect",
        "receive",
        "queue",
        "image",
        "configure",
        "verify",
        "done",
    ]
    assert new[-1]["type"] == "device.ready"
    assert _drain(app_client, admin, cursor2)[0] == []
    assert _changes(app_client, admin, cursor2)["next_cursor"] == cursor2
    # A client-bound token sees its own company's events only.
    globex, _ = _drain(app_client, world.token(Role.DSI, "GLOBEX"), 0)
    assert {c["serial"] for c in globex} == {"GLBX0001"}


def test_feed_cannot_skip_an_event_committed_out_of_order(
    app_client: TestClient, world: World, db: Database
) -> None:
    """On PostgreSQL an event with a smaller id can commit after one with a larger id; a
    reader that already passed the larger one must still get the smaller one."""
    if db.is_sqlite:
        pytest.skip("SQLite serialises write transactions: commits cannot interleave")
    admin = world.token(Role.ADMIN)
    _, cursor = _drain(app_client, admin, 0)
    slow = db.new_session()
    try:
        device_a = inventory_repo.get_device_for_update(slow, _device_id(db, "ACME0001"))
        assert device_a is not None
        event_a = lifecycle.apply(slow, device_a, Event.RECEIVE, actor="slow")  # not committed
        with db.session() as fast:
            device_b = inventory_repo.get_device_for_update(fast, _device_id(db, "GLBX0001"))
            assert device_b is not None
            event_b = lifecycle.apply(fast, device_b, Event.RECEIVE, actor="fast")
        assert event_a.id is not None and event_b.id is not None
        assert event_a.id < event_b.id  # `id > cursor` would now skip event_a
        first, cursor = _drain(app_client, admin, cursor)
        assert [c["event_id"] for c in first] == [event_b.id]
        slow.commit()
    finally:
        slow.close()
    second, _ = _drain(app_client, admin, cursor)
    assert [c["event_id"] for c in second] == [event_a.id]


def _device_id(db: Database, serial: str) -> int:
    with db.session(write=False) as s:
        (device,) = inventory_repo.find_devices_by_code(s, serial)
        assert device.id is not None
        return device.id


def test_status_pages_are_stable_under_inserts(
    app_client: TestClient, world: World, db: Database
) -> None:
    token = auth(world.token(Role.LOGISTICS, "ACME"))
    first = app_client.get("/logistics/status", params={"limit": 1}, headers=token).json()
    assert [i["serial"] for i in first["items"]] == ["ACME0001"]
    with db.session() as s:  # inserted while the caller pages
        create_devices(s, delivery=world.acme_delivery, serials=["ACME0003"])
    rest = app_client.get(
        "/logistics/status", params={"limit": 10, "cursor": first["next_cursor"]}, headers=token
    ).json()
    assert [i["serial"] for i in rest["items"]] == ["ACME0002", "ACME0003"]
    assert rest["next_cursor"] is None


def test_counts_per_delivery_and_per_client(
    app_client: TestClient, world: World, db: Database
) -> None:
    make_ready(db, world.acme_delivery, ["ACMER001", "ACMER002"])
    token = auth(world.token(Role.DSI, "ACME"))
    r = app_client.get(f"/logistics/deliveries/{world.acme_delivery.id}/counts", headers=token)
    assert r.json()["counts"] == {"expected": 2, "ready": 2}
    assert r.json()["total"] == 4
    other = f"/logistics/deliveries/{world.globex_delivery.id}/counts"
    assert app_client.get(other, headers=token).status_code == 404
    mine = app_client.get("/logistics/counts", headers=token).json()
    assert [(c["client_code"], c["total"]) for c in mine] == [("ACME", 4)]
    everyone = app_client.get("/logistics/counts", headers=auth(world.token(Role.ADMIN))).json()
    assert [(c["client_code"], c["total"]) for c in everyone] == [("ACME", 4), ("GLOBEX", 1)]


def test_every_list_exports_as_csv(app_client: TestClient, world: World, db: Database) -> None:
    make_ready(db, world.acme_delivery, ["ACMER001"])
    token = auth(world.token(Role.LOGISTICS, "ACME"))
    app_client.post(
        "/dispatch",
        json={
            "serial": "ACMER001",
            "carrier": "=HYPERLINK(1)",
            "tracking": "T1",
            "teleworker": {"name": "Ann", "email": "ann@acme.example", "address": "1 Main St"},
        },
        headers=token,
    )
    r = app_client.get("/logistics/status", params={"format": "csv"}, headers=token)
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    by_serial = {row["serial"]: row for row in rows}
    assert by_serial["ACMER001"]["state"] == "dispatched"
    assert by_serial["ACMER001"]["teleworker.name"] == "Ann"
    # A cell that a spreadsheet would run as a formula is neutralised.
    assert by_serial["ACMER001"]["shipment.carrier"] == "'=HYPERLINK(1)"
    for path in (
        "/logistics/changes",
        "/logistics/counts",
        f"/logistics/deliveries/{world.acme_delivery.id}/counts",
    ):
        r = app_client.get(path, params={"format": "csv"}, headers=token)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert len(list(csv.DictReader(io.StringIO(r.text)))) >= 1


def test_every_event_gets_its_outbox_row_in_the_same_transaction(
    world: World, db: Database
) -> None:
    """The trigger writes the outbox row with the event: a rolled-back transition leaves
    neither, a committed one both, whoever wrote it (here: no logistics code at all)."""
    device_id = _device_id(db, "ACME0001")
    with db.new_session() as session:
        device = inventory_repo.get_device_for_update(session, device_id)
        assert device is not None
        event = lifecycle.apply(session, device, Event.RECEIVE, actor="test")
        row = session.exec(select(OutboxEntry).where(OutboxEntry.event_id == event.id)).one()
        assert row.client_id == world.acme.id and row.seq is None
        session.rollback()
    with db.session(write=False) as s:
        events = s.exec(select(DeviceEvent.id)).all()
        outbox = s.exec(select(OutboxEntry.event_id)).all()
    assert Counter(events) == Counter(outbox) and len(events) == 3  # the world's EXPECTs
