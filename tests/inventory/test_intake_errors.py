"""Ship-notice intake refusing bad files through the real API on SQLite and PostgreSQL: every
error with its line and column, nothing written, no private value echoed."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import select

from core.db import Database
from core.principal import Role
from inventory.models import Device
from tests.conftest import auth
from tests.inventory.intake_support import (
    GENERIC_HEADER,
    HASH,
    errors_of,
    post_notice,
    totals,
)
from tests.support.factories import World


def test_every_row_error_is_reported_with_line_and_column_and_nothing_is_written(
    app_client: TestClient, world: World, db: Database
) -> None:
    before = totals(db)
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
    r = post_notice(app_client, world, text)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["title"] == "Import rejected"
    assert errors_of(r) == [
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
    assert totals(db) == before


def test_header_errors_stop_before_the_rows(app_client: TestClient, world: World) -> None:
    r = post_notice(app_client, world, "Serial,Colour,Colour,,Model\nA,red,blue,x,M\n")
    assert r.status_code == 422
    assert errors_of(r) == [
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
    missing = post_notice(app_client, world, "serial;macs\nA;\n")
    assert errors_of(missing) == [(1, "model", "required column 'model' is missing")]
    empty = post_notice(app_client, world, b"\xef\xbb\xbf\r\n  \r\n")
    assert errors_of(empty) == [(1, None, "the file is empty")]
    binary = post_notice(app_client, world, b"serial,model\nA,\x81\x8d\n")
    assert errors_of(binary) == [
        (2, None, "not UTF-8 or Windows-1252 text (is this a spreadsheet?)")
    ]


def test_serial_held_by_another_vendor_is_a_different_device(
    app_client: TestClient, world: World, db: Database
) -> None:
    # Serials are unique per vendor: Lenovo's ACME0001 is not Dell's.
    r = post_notice(app_client, world, "serial,vendor,model\nACME0001,Lenovo,ThinkPad T14\n")
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 1
    with db.session(write=False) as s:
        vendors = sorted(
            d.vendor for d in s.exec(select(Device).where(Device.serial == "ACME0001"))
        )
    assert vendors == ["Dell", "Lenovo"]


def test_asset_tag_of_another_device_is_refused(app_client: TestClient, world: World) -> None:
    assert (
        post_notice(app_client, world, f"{GENERIC_HEADER}\nT-1,Dell,M,,,,TAG-1\n").status_code
        == 200
    )
    r = post_notice(app_client, world, f"{GENERIC_HEADER}\nT-2,Dell,M,,,,tag-1\n")
    assert errors_of(r) == [(2, "asset_tag", "asset tag TAG-1 is already used by another device")]


def test_private_values_are_never_echoed(app_client: TestClient, world: World) -> None:
    user = "jean.dupont@acme.example"
    text = (
        "Device Serial Number,Windows Product ID,Hardware Hash,Group Tag,Assigned User\n"
        f"P-1,,not base64 {user}!,,{user}\n"
        f"P-2,,{HASH},,{user * 20}\n"
    )
    r = post_notice(app_client, world, text)
    assert r.status_code == 422
    assert errors_of(r) == [
        (2, "Hardware Hash", "hardware hash is not base64"),
        (3, "Assigned User", f"longer than 256 characters ({len(user) * 20})"),
    ]
    assert user not in r.text and "not base64 jean" not in r.text


def test_a_rejected_dry_run_counts_nothing(app_client: TestClient, world: World) -> None:
    text = (
        f"{GENERIC_HEADER}\nDR-1,Dell,Latitude 7450,,,,\nDR-2,Dell,Latitude 7450,,,,\n,Dell,M,,,,\n"
    )
    r = post_notice(app_client, world, text, dry_run=True)
    assert r.status_code == 200
    body = r.json()
    assert body["rejected"] is True and body["rows"] == 3
    assert (body["created"], body["updated"], body["unchanged"], body["attached"]) == (0, 0, 0, 0)
    assert body["new_hardware_models"] == []
    ok = post_notice(app_client, world, text.rsplit(",Dell,M", 1)[0], dry_run=True)
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
    before = totals(db)
    autopilot = (
        "Device Serial Number,Windows Product ID,Hardware Hash\n"
        f"ACME0001,,{HASH}\nHP-NEW-1,,{HASH}\n"
    )
    r = post_notice(app_client, world, autopilot, delivery_id=hp)
    assert r.status_code == 422, r.text
    ((line, column, message),) = errors_of(r)
    assert (line, column) == (2, "Device Serial Number")
    assert message.startswith(
        "serial ACME0001 is already a Dell laptop (order PO-ACME-1); an Autopilot file "
        "names no vendor, so it would become a second laptop under this delivery's "
        "vendor (HP)"
    )
    assert "allow_other_vendor" in message
    assert totals(db) == before
    # The same from a generic file without a vendor column; a named vendor is explicit.
    generic = post_notice(app_client, world, "serial,model\nACME0001,EliteBook\n", delivery_id=hp)
    assert generic.status_code == 422 and "this line names no vendor" in generic.text
    # Another company's laptop is not described.
    globex = post_notice(app_client, world, "serial,model\nGLBX0001,EliteBook\n", delivery_id=hp)
    assert "already a laptop of another vendor;" in globex.text and "GLOBEX" not in globex.text
    # The bench still scans the Dell laptop.
    scan = app_client.post(
        "/scan",
        json={"code": "ACME0001", "bench_id": world.bench.id},
        headers=auth(world.token(Role.TECHNICIAN)),
    )
    assert scan.json()["outcome"] == "received"
    # Really another laptop: the flag says so.
    forced = post_notice(app_client, world, autopilot, delivery_id=hp, allow_other_vendor=True)
    assert forced.status_code == 200 and forced.json()["created"] == 2
