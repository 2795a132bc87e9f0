"""One rule for what a scannable code is, at scan-in and in the ship-notice import."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import func, select

from core.db import Database
from core.principal import Role
from inventory import codes
from inventory.models import Device, DeviceEvent
from tests.conftest import auth
from tests.support.factories import World

REFUSED = {
    "hello world": "a space",
    "   ": "empty",
    "\t\r\n": "empty",
    "ABC\x00123": "U+0000",
    "\ufeffACME0001": "U+FEFF",
    "ACME\u200b0001": "U+200B ZERO WIDTH SPACE",
    "\u0410CME0001": "CYRILLIC CAPITAL LETTER A",  # looks exactly like ACME0001
    "ACM\u04150001": "CYRILLIC CAPITAL LETTER IE",
    "straße-1": "LATIN SMALL LETTER SHARP S",  # would upper-case to STRASSE-1
    "-ACME0001": "starts with '-'",
    "=cmd|calc": "'='",
    "A": "has 1 characters",
    "Z" * 65: "has 65 characters",
    "ACME\x1b[2J": "U+001B",
}


def _totals(db: Database) -> tuple[int, int]:
    with db.session(write=False) as s:
        devices = s.exec(select(func.count()).select_from(Device)).one()
        events = s.exec(select(func.count()).select_from(DeviceEvent)).one()
    return int(devices), int(events)


@pytest.mark.parametrize("raw", sorted(REFUSED))
def test_the_rule_refuses_with_a_reason(raw: str) -> None:
    why = codes.problem(raw)
    assert why is not None and REFUSED[raw] in why, why
    with pytest.raises(codes.InvalidCode):
        codes.scannable(raw)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (" acme0001 \r\n", "ACME0001"),
        ("]C1ACME0001", "ACME0001"),  # AIM symbology identifier sent by the scanner
        ("\uff21\uff23\uff2d\uff25\uff10\uff10\uff10\uff11", "ACME0001"),  # full-width input method
        ("00330-80000-00000-AA123", "00330-80000-00000-AA123"),
        ("cn/0f12.x_y", "CN/0F12.X_Y"),
    ],
)
def test_the_rule_normalises_what_real_scanners_send(raw: str, code: str) -> None:
    assert codes.problem(raw) is None
    assert codes.scannable(raw) == code


def test_scan_in_refuses_what_is_not_a_code_and_writes_nothing(
    app_client: TestClient, world: World, db: Database
) -> None:
    tech = auth(world.token(Role.TECHNICIAN))
    before = _totals(db)
    for raw, reason in REFUSED.items():
        r = app_client.post("/scan", json={"code": raw, "bench_id": world.bench.id}, headers=tech)
        if len(raw) > 128 or not raw:
            assert r.status_code == 422
            continue
        assert r.status_code == 422, (raw, r.text)
        body = r.json()
        assert r.headers["content-type"].startswith("application/problem+json")
        assert body["title"] == "Not a scannable code"
        assert reason in body["detail"] and "\n" not in body["detail"]
    assert _totals(db) == before
    ok = app_client.post(
        "/scan", json={"code": "]C1 acme0001\r", "bench_id": world.bench.id}, headers=tech
    )
    assert ok.status_code == 200 and ok.json()["device"]["serial"] == "ACME0001"
    assert ok.json()["outcome"] == "received"


def test_the_import_checks_serials_and_asset_tags_by_the_same_rule(
    app_client: TestClient, world: World, db: Database
) -> None:
    before = _totals(db)
    data = (
        "serial,model,asset_tag\n"
        "GOOD-1,Latitude 7450,\n"
        "\u0410CME9,Latitude 7450,\n"
        "HELLO WORLD,Latitude 7450,\n"
        "GOOD-2,Latitude 7450,TAG\u200b1\n"
    )
    r = app_client.post(
        f"/deliveries/{world.acme_delivery.id}/import",
        content=data.encode(),
        headers={**auth(world.token(Role.LOGISTICS, "ACME")), "Content-Type": "text/csv"},
    )
    assert r.status_code == 422, r.text
    errors = [(e["line"], e["column"], e["message"]) for e in r.json()["errors"]]
    assert [(line, col) for line, col, _ in errors] == [
        (3, "serial"),
        (4, "serial"),
        (5, "asset_tag"),
    ]
    assert "CYRILLIC CAPITAL LETTER A" in errors[0][2]
    assert "a space" in errors[1][2]
    assert "ZERO WIDTH SPACE" in errors[2][2]
    assert _totals(db) == before
