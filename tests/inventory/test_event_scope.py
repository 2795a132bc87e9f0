"""Every event carries its laptop's client, delivery and site as they were when it was
written, whichever path wrote it (the console's chart filters the events by them)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from core.db import Database
from core.principal import SYSTEM, Role
from provisioning.runs import overview
from provisioning.runs.overview import WaveFilter
from tests.conftest import auth
from tests.inventory.intake_support import post_notice
from tests.support.factories import World

_EVENTS = text(
    "SELECT e.id, e.device_id, e.event, e.to_state, e.client_id, e.delivery_id, e.site_id, "
    "d.client_id, d.delivery_id, b.site_id FROM device_event e "
    "JOIN device d ON d.id = e.device_id LEFT JOIN bench b ON b.id = d.bench_id "
    "ORDER BY e.id"
)


def scope_mismatches(conn: Connection) -> list[tuple[Any, ...]]:
    """Events whose client, delivery or site is not what the writer gives: the laptop's
    client and delivery, none before its first attach (it belonged to nobody); its
    bench's site, none on the move into EXPECTED (no bench before the scan-in)."""
    rows = conn.execute(_EVENTS).all()
    first_attach: dict[int, int] = {}
    for event_id, device_id, event, *_ in rows:
        if event == "attach":
            first_attach.setdefault(device_id, event_id)
    wrong = []
    for event_id, device_id, _event, to_state, *written, d_client, d_delivery, b_site in rows:
        owned = event_id >= first_attach.get(device_id, 0)
        want = [
            d_client if owned else None,
            d_delivery if owned else None,
            None if to_state == "expected" else b_site,
        ]
        if written != want:
            wrong.append((event_id, to_state, written, want))
    return wrong


def _scan(client: TestClient, world: World, code: str) -> httpx.Response:
    body = {"code": code, "bench_id": world.bench.id}
    r = client.post("/scan", json=body, headers=auth(world.token(Role.TECHNICIAN)))
    assert r.status_code == 200, r.text
    return r


def test_every_path_writes_the_laptops_client_delivery_and_site(
    app_client: TestClient, world: World, db: Database
) -> None:
    # The world: lifecycle.create (EXPECTED, no bench). A ship notice: create_many, and
    # the attach of an UNEXPECTED laptop it lists. Scan-ins: apply (RECEIVED at the
    # bench's site), create (UNEXPECTED at the bench). An attach from the API: apply
    # after the laptop's client and delivery changed. A manual move: apply.
    listed = _scan(app_client, world, "LISTED01").json()["device"]["id"]
    notice = "serial,vendor,model,macs\n" + "".join(
        f"{serial},Dell,Latitude 5440,\n" for serial in ("NEW00001", "LISTED01")
    )
    r = post_notice(
        app_client,
        world,
        notice,
        delivery_id=world.globex_delivery.id,
        token=world.token(Role.LOGISTICS, "GLOBEX"),
    )
    assert r.status_code == 200, r.text
    _scan(app_client, world, "ACME0001")
    _scan(app_client, world, "NEW00001")
    stray = _scan(app_client, world, "STRAY001").json()["device"]["id"]
    attached = app_client.post(
        f"/devices/{stray}/attach",
        json={"delivery_id": world.acme_delivery.id},
        headers=auth(world.token(Role.TECHNICIAN)),
    )
    assert attached.status_code == 200, attached.text
    moved = app_client.post(
        f"/devices/{stray}/events",
        json={"event": "quarantine", "reason": "cracked lid"},
        headers=auth(world.token(Role.TECHNICIAN)),
    )
    assert moved.status_code == 200, moved.text
    _scan(app_client, world, "NOBODY01")  # stays UNEXPECTED: no client, a site

    with db.engine.connect() as conn:
        assert scope_mismatches(conn) == []
        scoped = conn.execute(
            text(
                "SELECT d.serial, e.to_state, e.client_id, e.delivery_id, e.site_id "
                "FROM device_event e JOIN device d ON d.id = e.device_id "
                "WHERE d.id IN (:listed, :stray) ORDER BY e.id"
            ),
            {"listed": listed, "stray": stray},
        ).all()
    site = world.bench.site_id
    acme, globex = world.acme_delivery, world.globex_delivery
    assert [tuple(r) for r in scoped] == [
        ("LISTED01", "unexpected", None, None, site),
        ("LISTED01", "received", globex.client_id, globex.id, site),
        ("STRAY001", "unexpected", None, None, site),
        ("STRAY001", "received", acme.client_id, acme.id, site),
        ("STRAY001", "quarantined", acme.client_id, acme.id, site),
    ]

    # The chart, filtered three ways, counts the scan-ins from the events alone.
    with db.session(write=False) as s:

        def received(**wanted: int | None) -> int:
            view = overview.wave_overview(s, SYSTEM, WaveFilter(**wanted))
            return sum(view.received_per_hour)

        assert received() == 4
        assert received(client_id=acme.client_id) == 2  # ACME0001, STRAY001
        assert received(client_id=globex.client_id) == 2  # LISTED01, NEW00001
        assert received(delivery_id=globex.id) == 2
        assert received(site_id=site) == 4
        assert received(site_id=site + 1000) == 0
