"""Ship-notice intake through the real API on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from core.db import Database
from core.principal import Role
from inventory import intake
from inventory.models import DeviceEvent, HardwareModel
from inventory.schemas import IntakeFormat
from tests.conftest import auth
from tests.inventory.intake_support import (
    GENERIC_HEADER,
    HASH,
    devices_of,
    errors_of,
    post_notice,
    totals,
)
from tests.support.factories import World
from tests.support.server import running_server


# Formats and encodings.
def test_utf8_bom_semicolons_and_loose_header_names(
    app_client: TestClient, world: World, db: Database
) -> None:
    text = (
        "Serial Number;VENDOR;Model;MAC_Addresses;Order Reference;Carton-ID;asset tag;\r\n"
        "sn-100;DELL;Latitude 7450;AA-BB-CC-DD-EE-01 | aabb.ccdd.ee02;PO-ACME-1;CTN-1;at-9001;\r\n"
        "\r\n"
        " SN-101 ;;Latitude 7450;aabbccddee03 aa:bb:cc:dd:ee:04;;CTN-1;;\r\n"
    )
    r = post_notice(app_client, world, text.encode("utf-8-sig"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["format"], body["rows"], body["created"]) == ("generic", 2, 2)
    assert body["new_hardware_models"] == ["Dell Latitude 7450"]
    devices = devices_of(db, world.acme_delivery.id)
    first, second = devices["SN-100"], devices["SN-101"]
    # The delivery's spelling of the vendor wins over the file's "DELL".
    assert first.vendor == second.vendor == "Dell"
    assert first.mac_addresses == ["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"]
    assert second.mac_addresses == ["aa:bb:cc:dd:ee:03", "aa:bb:cc:dd:ee:04"]
    assert (first.asset_tag, first.carton_id) == ("AT-9001", "CTN-1")
    assert second.order_reference == "PO-ACME-1"
    assert first.state == second.state == "expected"
    assert first.hardware_model_id == second.hardware_model_id is not None


def test_windows_1252_file_with_accented_model(
    app_client: TestClient, world: World, db: Database
) -> None:
    text = "serial,model,carton_id\nCP-1,Précision 3581 Édition,Carton é\n"
    r = post_notice(app_client, world, text.encode("cp1252"))
    assert r.status_code == 200, r.text
    with db.session(write=False) as s:
        models = {m.model for m in s.exec(select(HardwareModel)).all()}
    assert "Précision 3581 Édition" in models
    assert devices_of(db, world.acme_delivery.id)["CP-1"].carton_id == "Carton é"


def test_quoted_fields_and_multiline_values_keep_line_numbers(
    app_client: TestClient, world: World
) -> None:
    text = 'serial,model,carton_id\n"Q-1","Model, with comma","two\nlines"\nQ-2,M,\n,M,\n'
    r = post_notice(app_client, world, text, dry_run=True)
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == 3
    # The record on lines 2-3 is one row, reported at its first line (a line break is no
    # part of a carton id); the empty serial is on physical line 5.
    assert errors_of(r) == [
        (2, "carton_id", "contains control characters"),
        (5, "serial", "serial is empty"),
    ]


def test_autopilot_hash_file_keeps_its_columns_and_takes_the_delivery_vendor(
    app_client: TestClient, world: World, db: Database
) -> None:
    text = (
        "Device Serial Number,Windows Product ID,Hardware Hash,Group Tag,Assigned User\n"
        f"AP-1,00330-80000-00000-AA123,{HASH},ACME-Laptops,jane@acme.example\n"
        f"AP-2,,{HASH},,\n"
    )
    r = post_notice(app_client, world, text)
    assert r.status_code == 200, r.text
    assert (r.json()["format"], r.json()["created"]) == ("autopilot", 2)
    devices = devices_of(db, world.acme_delivery.id)
    ap1 = devices["AP-1"]
    assert ap1.vendor == "Dell" and ap1.hardware_model_id is None
    assert (ap1.windows_product_id, ap1.hardware_hash) == ("00330-80000-00000-AA123", HASH)
    assert (ap1.group_tag, ap1.assigned_user) == ("ACME-Laptops", "jane@acme.example")
    assert devices["AP-2"].group_tag is None
    # The vendor's CSV arriving later fills in the model: same devices, updated.
    later = post_notice(app_client, world, "serial,model\nAP-1,Latitude 7450\nAP-2,Latitude 7450\n")
    assert (later.json()["created"], later.json()["updated"]) == (0, 2)
    assert devices_of(db, world.acme_delivery.id)["AP-1"].hardware_hash == HASH
    # Explicit format works too, and a generic header read as Autopilot is refused.
    again = post_notice(app_client, world, text, format="autopilot")
    assert again.json()["unchanged"] == 2
    wrong = post_notice(
        app_client, world, "serial,model\nX,Y\n", format=IntakeFormat.AUTOPILOT.value
    )
    assert wrong.status_code == 422
    assert (
        1,
        "serial",
        "unknown column (expected: serial, windows_product_id, hardware_hash, "
        "group_tag, assigned_user)",
    ) in errors_of(wrong)


# Dry run, idempotence, scanned-first laptops.
def test_dry_run_counts_and_writes_nothing(
    app_client: TestClient, world: World, db: Database
) -> None:
    before = totals(db)
    good = f"{GENERIC_HEADER}\nDR-1,Dell,New Model,,,,\nACME0001,Dell,Latitude 5440,,,,\n"
    r = post_notice(app_client, world, good, dry_run=True)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["dry_run"], body["created"], body["unchanged"]) == (True, 1, 1)
    assert body["new_hardware_models"] == ["Dell New Model"]
    assert body["errors"] == []
    bad = post_notice(app_client, world, f"{GENERIC_HEADER}\nDR-2,Dell,M,zz,,,\n", dry_run=True)
    assert bad.status_code == 200
    assert bad.json()["errors"] == [
        {"line": 2, "column": "macs", "message": "'zz' is not a MAC address"}
    ]
    assert totals(db) == before


def test_reimport_is_idempotent_and_changed_details_update(
    app_client: TestClient, world: World, db: Database
) -> None:
    text = (
        f"{GENERIC_HEADER}\n"
        "RI-1,Dell,Latitude 7450,aa:bb:cc:dd:ee:ff,,C-1,\n"
        "RI-2,Dell,Latitude 7450,,,C-1,\n"
    )
    first = post_notice(app_client, world, text)
    assert first.json()["created"] == 2
    before = totals(db)
    second = post_notice(app_client, world, text)
    assert second.status_code == 200
    assert (second.json()["created"], second.json()["unchanged"]) == (0, 2)
    assert totals(db) == before
    # A corrected file fills in a MAC; blanks never erase what is known.
    fixed = text.replace("RI-2,Dell,Latitude 7450,,", "RI-2,Dell,Latitude 7450,a0:b0:c0:d0:e0:f0,")
    fixed = fixed.replace(",C-1,\nRI-2", ",,\nRI-2")
    third = post_notice(app_client, world, fixed)
    assert (third.json()["updated"], third.json()["unchanged"]) == (1, 1)
    devices = devices_of(db, world.acme_delivery.id)
    assert devices["RI-2"].mac_addresses == ["a0:b0:c0:d0:e0:f0"]
    assert devices["RI-1"].carton_id == "C-1"


def test_laptop_scanned_before_the_ship_notice_is_attached(
    app_client: TestClient, world: World, db: Database
) -> None:
    scan = app_client.post(
        "/scan",
        json={"code": "early-1", "bench_id": world.bench.id},
        headers=auth(world.token(Role.TECHNICIAN)),
    )
    assert scan.json()["outcome"] == "unexpected"
    r = post_notice(
        app_client, world, "serial,model\nEARLY-1,Latitude 7450\nEARLY-2,Latitude 7450\n"
    )
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["attached"]) == (1, 1)
    devices = devices_of(db, world.acme_delivery.id)
    early = devices["EARLY-1"]
    assert (early.state, early.vendor, early.client_id) == ("received", "Dell", world.acme.id)
    assert early.bench_id == world.bench.id
    with db.session(write=False) as s:
        events = s.exec(
            select(DeviceEvent.event)
            .where(DeviceEvent.device_id == early.id)
            .order_by(col(DeviceEvent.id))
        ).all()
    assert list(events) == ["discover", "attach"]
    assert (
        post_notice(app_client, world, "serial,model\nEARLY-1,Latitude 7450\n").json()["unchanged"]
        == 1
    )


# Access and limits.
def test_roles_and_companies(app_client: TestClient, world: World) -> None:
    text = "serial,model\nR-1,M\n"
    other = post_notice(app_client, world, text, delivery_id=world.globex_delivery.id)
    assert other.status_code == 404
    assert (
        post_notice(app_client, world, text, token=world.token(Role.DSI, "ACME")).status_code == 403
    )
    assert post_notice(app_client, world, text, delivery_id=999_999).status_code == 404
    staff = post_notice(
        app_client,
        world,
        text,
        delivery_id=world.globex_delivery.id,
        token=world.token(Role.TECHNICIAN),
    )
    assert staff.status_code == 200, staff.text


def test_size_limits_and_form_uploads(
    app_client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = b"serial,model\n" + b"A" * intake.MAX_BYTES
    r = post_notice(app_client, world, big)
    assert r.status_code == 413
    assert "limit" in r.json()["detail"]
    # The token is checked before the body is read: strangers cannot make us read 20 MB.
    anonymous = app_client.post(
        f"/deliveries/{world.acme_delivery.id}/import",
        content=big,
        headers={"Content-Type": "text/csv"},
    )
    assert anonymous.status_code == 401
    # The row limit, lowered: 100,001 rows are parsed in seconds, and past CHILD_BYTES in
    # a child process that would not see the lowered limit.
    monkeypatch.setattr(intake, "MAX_ROWS", 1000)
    rows = "serial,model\n" + "".join(f"S{i},M\n" for i in range(intake.MAX_ROWS + 1))
    r = post_notice(app_client, world, rows, dry_run=True)
    assert r.status_code == 413
    assert "1000 rows" in r.json()["detail"]
    form = post_notice(
        app_client, world, "serial=A", content_type="application/x-www-form-urlencoded"
    )
    assert form.status_code == 422
    assert "raw request body" in form.json()["detail"]


def test_parse_helpers() -> None:
    assert intake.normalize_mac("AA-BB-CC-DD-EE-FF") == "aa:bb:cc:dd:ee:ff"
    assert intake.normalize_mac("aabb.ccdd.eeff") == "aa:bb:cc:dd:ee:ff"
    assert intake.normalize_mac("aa:bb-cc:dd:ee:ff") is None
    assert intake.normalize_mac("gg:bb:cc:dd:ee:ff") is None
    assert intake.decode("é".encode("utf-16")) == "é"
    parsed = intake.parse(b"SERIAL\tMODEL\nA1\tB\n")
    assert [(r.serial, r.model) for r in parsed.rows] == [("A1", "B")]
    assert intake.error_lines(
        [
            {"line": 3, "column": "macs", "message": "bad"},
            {"line": 4, "column": None, "message": "short"},
        ]
    ) == ["line 3, column macs: bad", "line 4: short"]


def test_laptop_scanned_unexpected_then_quarantined_blocks_its_line(
    app_client: TestClient, world: World, db: Database
) -> None:
    scan = app_client.post(
        "/scan",
        json={"code": "STRAY-Q", "bench_id": world.bench.id, "damaged": True},
        headers=auth(world.token(Role.TECHNICIAN)),
    )
    assert scan.json()["outcome"] == "quarantined"
    before = totals(db)
    r = post_notice(app_client, world, "serial,model\nOK-Q,M\nSTRAY-Q,M\n")
    assert errors_of(r) == [
        (
            3,
            "serial",
            "serial STRAY-Q was scanned as unexpected and is now quarantined; "
            "resolve it at the bench first",
        ),
    ]
    assert totals(db) == before


@pytest.mark.slow  # two imports racing on a real server
def test_concurrent_imports_of_one_file_make_each_device_once(db: Database, world: World) -> None:
    """Four logistics clerks upload the same notice at once to a real server: every
    answer is a success or a clean 409, never a 500, and each laptop exists once."""
    data = "serial,model\n" + "".join(f"CC-{i:04d},Latitude 7450\n" for i in range(300))
    token = world.token(Role.LOGISTICS, "ACME")
    statuses: list[int] = []
    lock = threading.Lock()
    with running_server(db) as base:
        barrier = threading.Barrier(4)

        def one() -> None:
            with httpx.Client(base_url=base, timeout=120) as c:
                barrier.wait(timeout=30)
                r = c.post(
                    f"/deliveries/{world.acme_delivery.id}/import",
                    content=data.encode(),
                    headers={**auth(token), "Content-Type": "text/csv"},
                )
                with lock:
                    statuses.append(r.status_code)

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=150)
    assert len(statuses) == 4 and set(statuses) <= {200, 409}, statuses
    assert 200 in statuses
    assert len([d for d in devices_of(db, world.acme_delivery.id) if d.startswith("CC-")]) == 300


def test_model_spelling_follows_the_catalogue(
    app_client: TestClient, world: World, db: Database
) -> None:
    # The factories put "Latitude 5440" in the catalogue; ACME0001 is one.
    r = post_notice(
        app_client, world, "serial,model\nACME0001,LATITUDE  5440\nMS-1,latitude 5440\n"
    )
    assert r.status_code == 200, r.text
    assert (r.json()["unchanged"], r.json()["created"], r.json()["new_hardware_models"]) == (
        1,
        1,
        [],
    )
    with db.session(write=False) as s:
        models = s.exec(select(HardwareModel.model)).all()
    assert list(models) == ["Latitude 5440"]
