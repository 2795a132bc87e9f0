"""Ship-notice intake through the real API on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import threading
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlmodel import col, func, select

from core.db import Database
from core.principal import Role
from inventory import intake
from inventory.models import Device, DeviceEvent, HardwareModel
from inventory.schemas import IntakeFormat
from tests.conftest import auth
from tests.support.factories import World
from tests.support.server import running_server

GENERIC_HEADER = "serial,vendor,model,macs,order_reference,carton_id,asset_tag"
HASH = base64.b64encode(b"\x01\x02hardware-hash-bytes" * 20).decode()


def _import(
    client: TestClient,
    world: World,
    data: bytes | str,
    *,
    delivery_id: int | None = None,
    token: str | None = None,
    content_type: str = "text/csv",
    **params: Any,
) -> httpx.Response:
    body = data.encode() if isinstance(data, str) else data
    return client.post(
        f"/deliveries/{delivery_id or world.acme_delivery.id}/import",
        content=body,
        params={k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()},
        headers={
            **auth(token or world.token(Role.LOGISTICS, "ACME")),
            "Content-Type": content_type,
        },
    )


def _devices(db: Database, delivery_id: int) -> dict[str, Device]:
    with db.session(write=False) as s:
        rows = s.exec(select(Device).where(Device.delivery_id == delivery_id)).all()
    return {d.serial: d for d in rows}


def _totals(db: Database) -> tuple[int, int, int]:
    with db.session(write=False) as s:
        devices = s.exec(select(func.count()).select_from(Device)).one()
        events = s.exec(select(func.count()).select_from(DeviceEvent)).one()
        models = s.exec(select(func.count()).select_from(HardwareModel)).one()
    return int(devices), int(events), int(models)


def _errors(r: httpx.Response) -> list[tuple[int | None, str | None, str]]:
    return [(e["line"], e["column"], e["message"]) for e in r.json()["errors"]]


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
    r = _import(app_client, world, text.encode("utf-8-sig"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["format"], body["rows"], body["created"]) == ("generic", 2, 2)
    assert body["new_hardware_models"] == ["Dell Latitude 7450"]
    devices = _devices(db, world.acme_delivery.id)
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
    r = _import(app_client, world, text.encode("cp1252"))
    assert r.status_code == 200, r.text
    with db.session(write=False) as s:
        models = {m.model for m in s.exec(select(HardwareModel)).all()}
    assert "Précision 3581 Édition" in models
    assert _devices(db, world.acme_delivery.id)["CP-1"].carton_id == "Carton é"


def test_quoted_fields_and_multiline_values_keep_line_numbers(
    app_client: TestClient, world: World
) -> None:
    text = 'serial,model,carton_id\n"Q-1","Model, with comma","two\nlines"\nQ-2,M,\n,M,\n'
    r = _import(app_client, world, text, dry_run=True)
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == 3
    # The record on lines 2-3 is one row, reported at its first line (a line break is no
    # part of a carton id); the empty serial is on physical line 5.
    assert _errors(r) == [
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
    r = _import(app_client, world, text)
    assert r.status_code == 200, r.text
    assert (r.json()["format"], r.json()["created"]) == ("autopilot", 2)
    devices = _devices(db, world.acme_delivery.id)
    ap1 = devices["AP-1"]
    assert ap1.vendor == "Dell" and ap1.hardware_model_id is None
    assert (ap1.windows_product_id, ap1.hardware_hash) == ("00330-80000-00000-AA123", HASH)
    assert (ap1.group_tag, ap1.assigned_user) == ("ACME-Laptops", "jane@acme.example")
    assert devices["AP-2"].group_tag is None
    # The vendor's CSV arriving later fills in the model: same devices, updated.
    later = _import(app_client, world, "serial,model\nAP-1,Latitude 7450\nAP-2,Latitude 7450\n")
    assert (later.json()["created"], later.json()["updated"]) == (0, 2)
    assert _devices(db, world.acme_delivery.id)["AP-1"].hardware_hash == HASH
    # Explicit format works too, and a generic header read as Autopilot is refused.
    again = _import(app_client, world, text, format="autopilot")
    assert again.json()["unchanged"] == 2
    wrong = _import(app_client, world, "serial,model\nX,Y\n", format=IntakeFormat.AUTOPILOT.value)
    assert wrong.status_code == 422
    assert (
        1,
        "serial",
        "unknown column (expected: serial, windows_product_id, hardware_hash, "
        "group_tag, assigned_user)",
    ) in _errors(wrong)


# Errors: every one with its line and column; nothing written.
def test_every_row_error_is_reported_with_line_and_column_and_nothing_is_written(
    app_client: TestClient, world: World, db: Database
) -> None:
    before = _totals(db)
    long_model = "M" * 129
    text = "\n".join(
        [
            GENERIC_HEADER,
            "OK-1,Dell,Latitude 7450,aa:bb:cc:dd:ee:ff,,,",  # 2: fine
            ",Dell,Latitude 7450,,,,",  # 3: missing serial
            "OK-2,Dell,Latitude 7450,aa:bb:cc:dd:ee,,,",  # 4: bad MAC
            f"OK-3,Dell,{long_model},,,,",  # 5: overlong model
            "OK-4,Dell,Latitude 7450,,,",  # 6: one field short
            "ok-1,Dell,Latitude 7450,,,,",  # 7: duplicate of line 2 once normalised
            "GLBX0001,Dell,Latitude 5440,,,,",  # 8: another company's delivery
            "ACME0001,Dell,XPS 13,,,,",  # 9: already expected here as another model
            "BAD SERIAL,Dell,Latitude 7450,,,,",  # 10: blank inside a serial
            "OK-5,Dell,,,,,",  # 11: empty model
            "OK-6,Dell,Latitude 7450,,,,AT-1",  # 12: fine
            "OK-7,Dell,Latitude 7450,,,,at-1",  # 13: duplicate asset tag
            "OK-8,Dell,Latitude\x07,,,,",  # 14: control character
        ]
    )
    r = _import(app_client, world, text)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["title"] == "Import rejected"
    assert _errors(r) == [
        (3, "serial", "serial is empty"),
        (4, "macs", "'aa:bb:cc:dd:ee' is not a MAC address"),
        (5, "model", "longer than 128 characters (129)"),
        (6, None, "expected 7 fields, found 6"),
        (7, "serial", "serial OK-1 appears twice (first on line 2)"),
        (8, "serial", "serial GLBX0001 (Dell) is already registered to another delivery"),
        (
            9,
            "model",
            "serial ACME0001 is already expected in this delivery as Latitude 5440, not XPS 13",
        ),
        (
            10,
            "serial",
            "serial 'BAD SERIAL' contains a space: a serial is 2 to 64 of A-Z, 0-9 and "
            ". _ / -, starting with A-Z or 0-9",
        ),
        (11, "model", "model is empty"),
        (13, "asset_tag", "asset tag AT-1 appears twice (first on line 12)"),
        (14, "model", "contains control characters"),
    ]
    assert _totals(db) == before


def test_header_errors_stop_before_the_rows(app_client: TestClient, world: World) -> None:
    r = _import(app_client, world, "Serial,Colour,Colour,,Model\nA,red,blue,x,M\n")
    assert r.status_code == 422
    assert _errors(r) == [
        (
            1,
            "Colour",
            "unknown column (expected: serial, vendor, model, macs, order_reference, "
            "carton_id, asset_tag)",
        ),
        (
            1,
            "Colour",
            "unknown column (expected: serial, vendor, model, macs, order_reference, "
            "carton_id, asset_tag)",
        ),
        (1, "", "empty column name"),
    ]
    missing = _import(app_client, world, "serial;macs\nA;\n")
    assert _errors(missing) == [(1, "model", "required column 'model' is missing")]
    empty = _import(app_client, world, b"\xef\xbb\xbf\r\n  \r\n")
    assert _errors(empty) == [(1, None, "the file is empty")]
    binary = _import(app_client, world, b"serial,model\nA,\x81\x8d\n")
    assert _errors(binary) == [(2, None, "not UTF-8 or Windows-1252 text (is this a spreadsheet?)")]


def test_serial_held_by_another_vendor_is_a_different_device(
    app_client: TestClient, world: World, db: Database
) -> None:
    # Serials are unique per vendor: Lenovo's ACME0001 is not Dell's.
    r = _import(app_client, world, "serial,vendor,model\nACME0001,Lenovo,ThinkPad T14\n")
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 1
    with db.session(write=False) as s:
        vendors = sorted(
            d.vendor for d in s.exec(select(Device).where(Device.serial == "ACME0001"))
        )
    assert vendors == ["Dell", "Lenovo"]


def test_asset_tag_of_another_device_is_refused(app_client: TestClient, world: World) -> None:
    assert _import(app_client, world, f"{GENERIC_HEADER}\nT-1,Dell,M,,,,TAG-1\n").status_code == 200
    r = _import(app_client, world, f"{GENERIC_HEADER}\nT-2,Dell,M,,,,tag-1\n")
    assert _errors(r) == [(2, "asset_tag", "asset tag TAG-1 is already used by another device")]


def test_private_values_are_never_echoed(app_client: TestClient, world: World) -> None:
    user = "jean.dupont@acme.example"
    text = (
        "Device Serial Number,Windows Product ID,Hardware Hash,Group Tag,Assigned User\n"
        f"P-1,,not base64 {user}!,,{user}\n"
        f"P-2,,{HASH},,{user * 20}\n"
    )
    r = _import(app_client, world, text)
    assert r.status_code == 422
    assert _errors(r) == [
        (2, "Hardware Hash", "hardware hash is not base64"),
        (3, "Assigned User", f"longer than 256 characters ({len(user) * 20})"),
    ]
    assert user not in r.text and "not base64 jean" not in r.text


# Dry run, idempotence, scanned-first laptops.
def test_dry_run_counts_and_writes_nothing(
    app_client: TestClient, world: World, db: Database
) -> None:
    before = _totals(db)
    good = f"{GENERIC_HEADER}\nDR-1,Dell,New Model,,,,\nACME0001,Dell,Latitude 5440,,,,\n"
    r = _import(app_client, world, good, dry_run=True)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["dry_run"], body["created"], body["unchanged"]) == (True, 1, 1)
    assert body["new_hardware_models"] == ["Dell New Model"]
    assert body["errors"] == []
    bad = _import(app_client, world, f"{GENERIC_HEADER}\nDR-2,Dell,M,zz,,,\n", dry_run=True)
    assert bad.status_code == 200
    assert bad.json()["errors"] == [
        {"line": 2, "column": "macs", "message": "'zz' is not a MAC address"}
    ]
    assert _totals(db) == before


def test_reimport_is_idempotent_and_changed_details_update(
    app_client: TestClient, world: World, db: Database
) -> None:
    text = (
        f"{GENERIC_HEADER}\n"
        "RI-1,Dell,Latitude 7450,aa:bb:cc:dd:ee:ff,,C-1,\n"
        "RI-2,Dell,Latitude 7450,,,C-1,\n"
    )
    first = _import(app_client, world, text)
    assert first.json()["created"] == 2
    before = _totals(db)
    second = _import(app_client, world, text)
    assert second.status_code == 200
    assert (second.json()["created"], second.json()["unchanged"]) == (0, 2)
    assert _totals(db) == before
    # A corrected file fills in a MAC; blanks never erase what is known.
    fixed = text.replace("RI-2,Dell,Latitude 7450,,", "RI-2,Dell,Latitude 7450,a0:b0:c0:d0:e0:f0,")
    fixed = fixed.replace(",C-1,\nRI-2", ",,\nRI-2")
    third = _import(app_client, world, fixed)
    assert (third.json()["updated"], third.json()["unchanged"]) == (1, 1)
    devices = _devices(db, world.acme_delivery.id)
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
    r = _import(app_client, world, "serial,model\nEARLY-1,Latitude 7450\nEARLY-2,Latitude 7450\n")
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["attached"]) == (1, 1)
    devices = _devices(db, world.acme_delivery.id)
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
        _import(app_client, world, "serial,model\nEARLY-1,Latitude 7450\n").json()["unchanged"] == 1
    )


# Access and limits.
def test_roles_and_companies(app_client: TestClient, world: World) -> None:
    text = "serial,model\nR-1,M\n"
    other = _import(app_client, world, text, delivery_id=world.globex_delivery.id)
    assert other.status_code == 404
    assert _import(app_client, world, text, token=world.token(Role.DSI, "ACME")).status_code == 403
    assert _import(app_client, world, text, delivery_id=999_999).status_code == 404
    staff = _import(
        app_client,
        world,
        text,
        delivery_id=world.globex_delivery.id,
        token=world.token(Role.TECHNICIAN),
    )
    assert staff.status_code == 200, staff.text


def test_size_limits_and_form_uploads(app_client: TestClient, world: World) -> None:
    big = b"serial,model\n" + b"A" * intake.MAX_BYTES
    r = _import(app_client, world, big)
    assert r.status_code == 413
    assert "limit" in r.json()["detail"]
    # The token is checked before the body is read: strangers cannot make us read 20 MB.
    anonymous = app_client.post(
        f"/deliveries/{world.acme_delivery.id}/import",
        content=big,
        headers={"Content-Type": "text/csv"},
    )
    assert anonymous.status_code == 401
    rows = "serial,model\n" + "".join(f"S{i},M\n" for i in range(intake.MAX_ROWS + 1))
    r = _import(app_client, world, rows, dry_run=True)
    assert r.status_code == 413
    assert "100000 rows" in r.json()["detail"]
    form = _import(app_client, world, "serial=A", content_type="application/x-www-form-urlencoded")
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
    before = _totals(db)
    r = _import(app_client, world, "serial,model\nOK-Q,M\nSTRAY-Q,M\n")
    assert _errors(r) == [
        (
            3,
            "serial",
            "serial STRAY-Q was scanned as unexpected and is now quarantined; "
            "resolve it at the bench first",
        ),
    ]
    assert _totals(db) == before


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
    assert len([d for d in _devices(db, world.acme_delivery.id) if d.startswith("CC-")]) == 300


def test_model_spelling_follows_the_catalogue(
    app_client: TestClient, world: World, db: Database
) -> None:
    # The factories put "Latitude 5440" in the catalogue; ACME0001 is one.
    r = _import(app_client, world, "serial,model\nACME0001,LATITUDE  5440\nMS-1,latitude 5440\n")
    assert r.status_code == 200, r.text
    assert (r.json()["unchanged"], r.json()["created"], r.json()["new_hardware_models"]) == (
        1,
        1,
        [],
    )
    with db.session(write=False) as s:
        models = s.exec(select(HardwareModel.model)).all()
    assert list(models) == ["Latitude 5440"]


def test_a_rejected_dry_run_counts_nothing(app_client: TestClient, world: World) -> None:
    text = (
        f"{GENERIC_HEADER}\nDR-1,Dell,Latitude 7450,,,,\nDR-2,Dell,Latitude 7450,,,,\n,Dell,M,,,,\n"
    )
    r = _import(app_client, world, text, dry_run=True)
    assert r.status_code == 200
    body = r.json()
    assert body["rejected"] is True and body["rows"] == 3
    assert (body["created"], body["updated"], body["unchanged"], body["attached"]) == (0, 0, 0, 0)
    assert body["new_hardware_models"] == []
    ok = _import(app_client, world, text.rsplit(",Dell,M", 1)[0], dry_run=True)
    assert (ok.json()["rejected"], ok.json()["created"]) == (False, 2)


def test_an_autopilot_file_for_another_vendors_laptops_is_refused_with_the_reason(
    app_client: TestClient, world: World, db: Database
) -> None:
    """ACME0001 is a Dell laptop of PO-ACME-1. Its Autopilot hashes imported into an HP
    delivery would create an HP ACME0001 beside it (Autopilot lines name no vendor), and
    the bench could no longer scan it ("matches devices of several vendors")."""
    token = world.token(Role.LOGISTICS, "ACME")
    made = app_client.post(
        "/deliveries",
        json={"vendor": "HP", "order_reference": "PO-HP-1"},
        headers=auth(token),
    )
    assert made.status_code == 201, made.text
    hp = made.json()["id"]
    before = _totals(db)
    autopilot = (
        "Device Serial Number,Windows Product ID,Hardware Hash\n"
        f"ACME0001,,{HASH}\nHP-NEW-1,,{HASH}\n"
    )
    r = _import(app_client, world, autopilot, delivery_id=hp)
    assert r.status_code == 422, r.text
    ((line, column, message),) = _errors(r)
    assert (line, column) == (2, "Device Serial Number")
    assert message.startswith(
        "serial ACME0001 is already a Dell laptop (order PO-ACME-1); an Autopilot file "
        "names no vendor, so it would become a second laptop under this delivery's "
        "vendor (HP)"
    )
    assert "allow_other_vendor" in message
    assert _totals(db) == before
    # The same from a generic file without a vendor column; a named vendor is explicit.
    generic = _import(app_client, world, "serial,model\nACME0001,EliteBook\n", delivery_id=hp)
    assert generic.status_code == 422 and "this line names no vendor" in generic.text
    # Another company's laptop is not described.
    globex = _import(app_client, world, "serial,model\nGLBX0001,EliteBook\n", delivery_id=hp)
    assert "already a laptop of another vendor;" in globex.text and "GLOBEX" not in globex.text
    # The bench still scans the Dell laptop.
    scan = app_client.post(
        "/scan",
        json={"code": "ACME0001", "bench_id": world.bench.id},
        headers=auth(world.token(Role.TECHNICIAN)),
    )
    assert scan.json()["outcome"] == "received"
    # Really another laptop: the flag says so.
    forced = _import(app_client, world, autopilot, delivery_id=hp, allow_other_vendor=True)
    assert forced.status_code == 200 and forced.json()["created"] == 2
