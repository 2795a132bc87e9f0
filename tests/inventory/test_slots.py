"""Bench slots under concurrent scans, through a real uvicorn server on both backends.

A slot holds at most one laptop, always: the allocation reads the occupied slots after
the bench lock (PostgreSQL's READ COMMITTED would otherwise hand one slot to several
laptops), and a partial unique index on (bench, slot) over the slot-holding states
backs it in the database.
"""

from __future__ import annotations

import ssl
import threading
from collections import Counter
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from core.db import Database
from core.principal import Role
from inventory import lifecycle
from inventory import service as inventory
from inventory.models import Device
from inventory.schemas import BenchCreate
from inventory.states import SLOT_HOLDING, DeviceState, Event
from tests.conftest import auth
from tests.support.factories import World, create_devices
from tests.support.server import running_server


def _bench(db: Database, code: str, slots: int) -> int:
    with db.session() as s:
        bench = inventory.create_bench(s, BenchCreate(site_code="PAR", code=code, slots=slots))
        assert bench.id is not None
        return bench.id


def _expected(db: Database, world: World, prefix: str, n: int) -> list[str]:
    serials = [f"{prefix}{i:04d}" for i in range(n)]
    with db.session() as s:
        create_devices(s, delivery=world.acme_delivery, serials=serials)
    return serials


def scan_storm(
    db: Database, token: str, bench_id: int, codes: list[str]
) -> list[tuple[int, dict[str, Any]]]:
    """Every code scanned at once, each by its own thread with its own connection, at a
    real server; returns (status, body) per scan.

    No answer depends on how fast the machine is: on SQLite the scans queue on the fair
    write lock, which fails a waiter only when one holder keeps it for the busy timeout
    (``core.db.FairLock``), not when 200 quick holders ahead of it take that long
    together (two test suites on 2 cores did: some scans got 503). The deadlines below
    only bound a hang."""
    results: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()
    # One TLS context for every client (unused on plain HTTP, but each httpx client
    # would otherwise load the CA bundle again: seconds of CPU for 200 clients).
    tls = ssl.create_default_context()
    with running_server(db) as base:
        barrier = threading.Barrier(len(codes))

        def one(code: str) -> None:
            with httpx.Client(base_url=base, timeout=600, verify=tls, trust_env=False) as c:
                c.get("/me", headers=auth(token))  # connected before the barrier
                barrier.wait(timeout=600)
                r = c.post("/scan", json={"code": code, "bench_id": bench_id}, headers=auth(token))
                with lock:
                    results.append((r.status_code, r.json()))

        threads = [threading.Thread(target=one, args=(c,)) for c in codes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=900)
    assert len(results) == len(codes), "a scan thread did not finish"
    return results


def _held_slots(db: Database, bench_id: int) -> list[int]:
    with db.session(write=False) as s:
        rows = s.exec(
            select(Device.slot).where(
                Device.bench_id == bench_id,
                col(Device.state).in_(SLOT_HOLDING),
            )
        ).all()
    return [int(r) for r in rows if r is not None]


@pytest.mark.slow  # 50 and 200 concurrent clients
@pytest.mark.parametrize("n", [50, 200])
def test_concurrent_scans_on_one_bench_get_distinct_slots(
    db: Database, world: World, n: int
) -> None:
    bench_id = _bench(db, "STORM", 256)
    # Three quarters expected, one quarter unknown: an UNEXPECTED laptop holds a slot too.
    expected = _expected(db, world, "ST", n - n // 4)
    codes = expected + [f"STRAY{i:04d}" for i in range(n // 4)]
    results = scan_storm(db, world.token(Role.TECHNICIAN), bench_id, codes)
    errors = [(status, body) for status, body in results if status != 200]
    assert errors == [], errors[:3]
    slots = [body["device"]["slot"] for _, body in results]
    assert len(set(slots)) == n, Counter(slots).most_common(3)
    assert set(slots) == set(range(1, n + 1))
    outcomes = Counter(body["outcome"] for _, body in results)
    assert outcomes == {"received": n - n // 4, "unexpected": n // 4}
    held = _held_slots(db, bench_id)
    assert sorted(held) == list(range(1, n + 1))


@pytest.mark.slow  # thirty concurrent clients
def test_a_full_bench_answers_409_bench_full_for_the_rest(db: Database, world: World) -> None:
    bench_id = _bench(db, "SMALL", 8)
    codes = _expected(db, world, "SM", 30)
    results = scan_storm(db, world.token(Role.TECHNICIAN), bench_id, codes)
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 8, 409: 22}, statuses
    refused = [body for status, body in results if status == 409]
    assert {b["title"] for b in refused} == {"Bench full"}
    assert all("SMALL" in b["detail"] and "8 slots" in b["detail"] for b in refused)
    assert sorted(_held_slots(db, bench_id)) == list(range(1, 9))
    # Nothing was written for a refused laptop: still EXPECTED, no bench.
    with db.session(write=False) as s:
        waiting = s.exec(
            select(Device).where(col(Device.serial).like("SM%"), Device.state == "expected")
        ).all()
    assert len(waiting) == 22 and all(d.bench_id is None for d in waiting)


def test_the_database_refuses_two_laptops_in_one_slot(db: Database, world: World) -> None:
    """The partial unique index, whatever the code above it does."""
    bench_id = _bench(db, "IDX", 4)
    with db.session() as s:
        a, b = create_devices(s, delivery=world.acme_delivery, serials=["IDX-A", "IDX-B"])
        for d in (a, b):
            d.bench_id, d.slot = bench_id, 1
            s.add(d)
        lifecycle.apply(s, a, Event.RECEIVE, actor="test")
    with pytest.raises(IntegrityError), db.session() as s:
        loose = s.exec(select(Device).where(Device.serial == "IDX-B")).one()
        lifecycle.apply(s, loose, Event.RECEIVE, actor="test")
    # A laptop that left its slot (dispatched, retired…) no longer holds it.
    with db.session() as s:
        held = s.exec(select(Device).where(Device.serial == "IDX-A")).one()
        lifecycle.apply(s, held, Event.QUARANTINE, actor="test", reason="cracked")
        loose = s.exec(select(Device).where(Device.serial == "IDX-B")).one()
        lifecycle.apply(s, loose, Event.RECEIVE, actor="test")


def _scan(client: TestClient, world: World, code: str, bench_id: int) -> httpx.Response:
    return client.post(
        "/scan",
        json={"code": code, "bench_id": bench_id},
        headers=auth(world.token(Role.TECHNICIAN)),
    )


def test_unexpected_laptops_hold_their_slot_and_attach_keeps_it(
    app_client: TestClient, world: World, db: Database
) -> None:
    bench_id = _bench(db, "UNX", 4)
    first = _scan(app_client, world, "LOOSE-1", bench_id).json()
    second = _scan(app_client, world, "LOOSE-2", bench_id).json()
    assert (first["outcome"], second["outcome"]) == ("unexpected", "unexpected")
    assert (first["device"]["slot"], second["device"]["slot"]) == (1, 2)
    third = _scan(app_client, world, "ACME0001", bench_id).json()
    assert third["device"]["slot"] == 3
    tech = auth(world.token(Role.TECHNICIAN))
    for device in (first, second):
        r = app_client.post(
            f"/devices/{device['device']['id']}/attach",
            json={"delivery_id": world.acme_delivery.id},
            headers=tech,
        )
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "received"
        assert r.json()["slot"] == device["device"]["slot"]
    assert sorted(_held_slots(db, bench_id)) == [1, 2, 3]


def test_back_to_a_slot_takes_a_free_one_or_says_the_bench_is_full(
    app_client: TestClient, world: World, db: Database
) -> None:
    """Release from quarantine and restage put a laptop back on its bench: its old slot
    if still free, else another free one, else a clear 409 (no 500 from the index)."""
    bench_id = _bench(db, "BACK", 2)
    tech = auth(world.token(Role.TECHNICIAN))
    a = _scan(app_client, world, "ACME0001", bench_id).json()["device"]
    r = app_client.post(
        f"/devices/{a['id']}/events", json={"event": "quarantine", "reason": "dent"}, headers=tech
    )
    assert r.status_code == 200, r.text
    b = _scan(app_client, world, "ACME0002", bench_id).json()["device"]
    assert b["slot"] == 1  # the quarantined laptop left slot 1
    release = {"event": "release"}
    released = app_client.post(f"/devices/{a['id']}/events", json=release, headers=tech)
    assert released.status_code == 200, released.text
    assert released.json()["slot"] == 2
    c = _scan(app_client, world, "STRAY-BACK", bench_id)
    assert c.status_code == 409 and c.json()["title"] == "Bench full"
    # Full bench: quarantine then release again needs a slot nobody took meanwhile.
    app_client.post(
        f"/devices/{a['id']}/events", json={"event": "quarantine", "reason": "dent"}, headers=tech
    )
    other = _scan(app_client, world, "STRAY-BACK", bench_id)
    assert other.status_code == 200 and other.json()["device"]["slot"] == 2
    refused = app_client.post(f"/devices/{a['id']}/events", json=release, headers=tech)
    assert refused.status_code == 409 and refused.json()["title"] == "Bench full"
    with db.session(write=False) as s:
        still = s.get(Device, a["id"])
        assert still is not None and still.state == DeviceState.QUARANTINED


def test_slot_holding_states_are_the_bench_side_of_the_lifecycle() -> None:
    assert DeviceState.UNEXPECTED in SLOT_HOLDING
    assert DeviceState.RECEIVED in SLOT_HOLDING
    for gone in (DeviceState.EXPECTED, DeviceState.QUARANTINED, DeviceState.DISPATCHED):
        assert gone not in SLOT_HOLDING
