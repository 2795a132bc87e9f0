from __future__ import annotations

import base64
import io
import zipfile

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from core.db import Database
from core.principal import Role
from inventory import lifecycle
from inventory.models import Delivery, Device
from inventory.states import Event
from tests.conftest import auth
from tests.support.factories import World, create_delivery, create_devices

HASH = base64.b64encode(b"\x01\x02hardware-hash" * 20).decode()


def _delivery(
    db: Database, world: World, n: int, *, tag: str | None = None, user: str | None = None
) -> Delivery:
    with db.session() as s:
        delivery = create_delivery(s, client=world.acme, order="PO-AP-1")
        devices = [
            Device(
                serial=f"APSN{i:05d}",
                vendor="Dell",
                client_id=delivery.client_id,
                delivery_id=delivery.id,
                order_reference=delivery.order_reference,
                mac_addresses=[],
                hardware_hash=HASH,
                windows_product_id=f"0000{i}" if i % 2 else None,
                group_tag=tag,
                assigned_user=user,
            )
            for i in range(n)
        ]
        lifecycle.create(s, devices, Event.EXPECT, actor="test")  # batched: 1,201 laptops
        return delivery


def _export(
    client: TestClient, world: World, delivery: Delivery, role: Role = Role.LOGISTICS
) -> httpx.Response:
    token = world.token(role, "ACME" if role.client_bound else None)
    return client.get(f"/logistics/deliveries/{delivery.id}/autopilot", headers=auth(token))


def test_export_is_the_exact_microsoft_format(
    app_client: TestClient, world: World, db: Database
) -> None:
    delivery = _delivery(db, world, 3)
    r = _export(app_client, world, delivery)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    raw = r.content
    lines = raw.split(b"\r\n")
    assert lines[0] == b"Device Serial Number,Windows Product ID,Hardware Hash"
    assert lines[1] == f"APSN00000,,{HASH}".encode()
    assert lines[2] == f"APSN00001,00001,{HASH}".encode()
    assert lines[-1] == b"" and len(lines) == 5  # CRLF after every row, no blank rows
    assert b'"' not in raw and b"\n" not in raw.replace(b"\r\n", b"")
    raw.decode("cp1252")


def test_group_tag_and_assigned_user_columns_in_ansi(
    app_client: TestClient, world: World, db: Database
) -> None:
    delivery = _delivery(db, world, 2, tag="Télétravail", user="zoé@acme.example")
    r = _export(app_client, world, delivery, Role.DSI)
    text = r.content.decode("cp1252")
    assert text.startswith(
        "Device Serial Number,Windows Product ID,Hardware Hash,Group Tag,Assigned User\r\n"
    )
    assert "Télétravail,zoé@acme.example\r\n" in text
    assert "é".encode("cp1252") in r.content  # ANSI, not UTF-8


@pytest.mark.slow  # 500+ laptops
def test_more_than_500_laptops_are_split_into_a_zip(
    app_client: TestClient, world: World, db: Database
) -> None:
    delivery = _delivery(db, world, 1201)
    r = _export(app_client, world, delivery)
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        names = sorted(zf.namelist())
        files = [zf.read(n).split(b"\r\n") for n in names]
    assert names == [f"autopilot-PO-AP-1-{i:02d}.csv" for i in (1, 2, 3)]
    assert [len(f) - 2 for f in files] == [500, 500, 201]
    assert all(f[0] == files[0][0] for f in files)
    serials = [line.split(b",")[0] for f in files for line in f[1:-1]]
    assert len(set(serials)) == 1201


def test_invalid_devices_are_all_reported_and_nothing_is_written(
    app_client: TestClient, world: World, db: Database
) -> None:
    delivery = _delivery(db, world, 4)
    with db.session() as s:
        devices = create_devices(s, delivery=delivery, serials=["BADHASH1", "NOHASH01"])
        devices[0].hardware_hash = "not base64!"
        s.add(devices[0])
    with db.session() as s:
        quoted = s.exec(select(Device).where(Device.serial == "APSN00000")).one()
        quoted.group_tag = 'tag,"x"'
        s.add(quoted)
    r = _export(app_client, world, delivery)
    assert r.status_code == 422
    problems = {(e["serial"], e["message"]) for e in r.json()["errors"]}
    assert problems == {
        ("BADHASH1", "hardware hash is not base64"),
        ("NOHASH01", "no hardware hash"),
        ("APSN00000", "Group Tag contains a comma, quote or line break"),
    }


def test_other_companies_and_technicians_cannot_export(
    app_client: TestClient, world: World, db: Database
) -> None:
    delivery = _delivery(db, world, 1)
    other = auth(world.token(Role.LOGISTICS, "GLOBEX"))
    path = f"/logistics/deliveries/{delivery.id}/autopilot"
    assert app_client.get(path, headers=other).status_code == 404
    assert app_client.get(path, headers=auth(world.token(Role.TECHNICIAN))).status_code == 403


def test_formulas_are_refused_not_escaped_and_hashes_are_kept_intact(
    app_client: TestClient, world: World, db: Database
) -> None:
    """The Autopilot format forbids the quote the other CSVs put in front of a formula
    (core.csvfile), so a value that a spreadsheet would run is refused; a hardware hash
    that happens to start with '+' or '/' is base64 and is written untouched."""
    delivery = _delivery(db, world, 3)
    plus_hash = "+" + HASH[1:]
    with db.session() as s:
        rows = {d.serial: d for d in s.exec(select(Device)).all()}
        rows["APSN00000"].group_tag = "=cmd|' /C calc'!A0"
        rows["APSN00001"].assigned_user = "@SUM(1+1)"
        rows["APSN00002"].hardware_hash = plus_hash
        s.add_all(rows.values())
    r = _export(app_client, world, delivery)
    assert r.status_code == 422, r.text[:300]
    problems = {(e["serial"], e["message"].split(",")[0]) for e in r.json()["errors"]}
    assert problems == {
        ("APSN00000", "Group Tag starts with '='"),
        ("APSN00001", "Assigned User starts with '@'"),
    }
    with db.session() as s:
        for serial in ("APSN00000", "APSN00001"):
            d = s.exec(select(Device).where(Device.serial == serial)).one()
            d.group_tag, d.assigned_user = "ACME-Laptops", None
            s.add(d)
    ok = _export(app_client, world, delivery)
    assert ok.status_code == 200, ok.text[:300]
    assert f",{plus_hash},".encode() in ok.content  # then the (empty) Group Tag
    assert b"'" not in ok.content
