"""Reconciliation of a delivery, JSON and CSV, through the real API on both databases."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient

from core.principal import Role
from tests.conftest import auth
from tests.support.factories import World

NOTICE = (
    "serial,model\n"
    "REC-1,Latitude 7450\n"
    "REC-2,Latitude 7450\n"
    "REC-3,Precision 3581\n"
    "REC-4,Precision 3581\n"
)


def _setup(client: TestClient, world: World) -> int:
    """A fresh ACME delivery of four laptops: two received (one of the wrong model), one
    quarantined, one missing; plus a laptop nobody expected."""
    logistics = auth(world.token(Role.LOGISTICS, "ACME"))
    created = client.post(
        "/deliveries", json={"vendor": "Dell", "order_reference": "PO-REC-1"}, headers=logistics
    )
    assert created.status_code == 201, created.text
    delivery_id = int(created.json()["id"])
    imported = client.post(
        f"/deliveries/{delivery_id}/import",
        content=NOTICE.encode(),
        headers={**logistics, "Content-Type": "text/csv"},
    )
    assert imported.json()["created"] == 4, imported.text
    tech = auth(world.token(Role.TECHNICIAN))
    scans: list[dict[str, object]] = [
        {"code": "rec-1", "model": "latitude  7450"},  # same model, other spelling
        {"code": "REC-3", "model": '=HYPERLINK("http://x")'},  # wrong model, hostile text
        {"code": "REC-4", "damaged": True, "reason": "cracked lid"},
        {"code": "STRAY-9"},
    ]
    for body in scans:
        r = client.post("/scan", json={**body, "bench_id": world.bench.id}, headers=tech)
        assert r.status_code == 200, r.text
    return delivery_id


def test_reconciliation_json_for_staff_and_client(app_client: TestClient, world: World) -> None:
    delivery_id = _setup(app_client, world)
    url = f"/deliveries/{delivery_id}/reconciliation"
    staff = app_client.get(url, headers=auth(world.token(Role.ADMIN)))
    assert staff.status_code == 200, staff.text
    body = staff.json()
    counts = {k: body[k] for k in ("expected", "received", "missing", "unexpected", "wrong_model")}
    assert counts == {"expected": 4, "received": 3, "missing": 1, "unexpected": 1, "wrong_model": 1}
    status = {line["serial"]: (line["status"], line["state"]) for line in body["lines"]}
    assert status == {
        "REC-1": ("received", "received"),
        "REC-2": ("missing", "expected"),
        "REC-3": ("wrong_model", "received"),
        "REC-4": ("received", "quarantined"),
        "STRAY-9": ("unexpected", "unexpected"),
    }
    wrong = next(line for line in body["lines"] if line["serial"] == "REC-3")
    assert wrong["expected_model"] == "Precision 3581"
    # A client-bound caller sees its own delivery, but not laptops that belong to nobody.
    client = app_client.get(url, headers=auth(world.token(Role.DSI, "ACME")))
    assert client.status_code == 200
    assert client.json()["unexpected"] == 0
    assert "STRAY-9" not in client.text
    assert (
        app_client.get(url, headers=auth(world.token(Role.LOGISTICS, "GLOBEX"))).status_code == 404
    )
    assert (
        app_client.get(
            "/deliveries/999999/reconciliation", headers=auth(world.token(Role.ADMIN))
        ).status_code
        == 404
    )


def test_reconciliation_csv(app_client: TestClient, world: World) -> None:
    delivery_id = _setup(app_client, world)
    url = f"/deliveries/{delivery_id}/reconciliation"
    headers = auth(world.token(Role.ADMIN))
    by_param = app_client.get(url, params={"format": "csv"}, headers=headers)
    assert by_param.status_code == 200
    assert by_param.headers["content-type"].startswith("text/csv")
    assert "attachment" in by_param.headers["content-disposition"]
    by_accept = app_client.get(url, headers={**headers, "Accept": "text/csv"})
    assert by_accept.text == by_param.text
    rows = list(csv.DictReader(io.StringIO(by_param.text)))
    assert list(rows[0]) == [
        "serial",
        "vendor",
        "expected_model",
        "observed_model",
        "state",
        "status",
    ]
    by_serial = {r["serial"]: r for r in rows}
    assert set(by_serial) == {"REC-1", "REC-2", "REC-3", "REC-4", "STRAY-9"}
    assert by_serial["REC-2"]["status"] == "missing"
    assert by_serial["REC-2"]["observed_model"] == ""
    # A spreadsheet must not run what a bench typed in as a model.
    assert by_serial["REC-3"]["observed_model"] == '\'=HYPERLINK("http://x")'
    assert by_serial["STRAY-9"]["vendor"] == "unknown"
    bad = app_client.get(url, params={"format": "xlsx"}, headers=headers)
    assert bad.status_code == 422
