from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from core.db import Database
from core.principal import Role
from core.timeutil import utcnow
from inventory.models import Device, DeviceEvent
from logistics.models import Shipment, Teleworker
from logistics.retention import purge_personal_data
from tests.conftest import auth
from tests.logistics.conftest import PERSON
from tests.support.factories import World

PERSONAL_VALUES = [
    PERSON["name"],
    PERSON["email"],
    PERSON["phone"],
    PERSON["address"],
    "Poulain",
    "amelie",
]


def _dispatch(client: TestClient, token: str, serial: str, **extra: Any) -> Any:
    body = {
        "serial": serial,
        "carrier": "DHL",
        "tracking": f"TRK-{serial}",
        "teleworker": PERSON,
        **extra,
    }
    return client.post("/dispatch", json=body, headers=auth(token))


def test_ready_laptop_is_dispatched_to_its_clients_teleworker(
    app_client: TestClient, world: World, ready: list[int], db: Database
) -> None:
    r = _dispatch(app_client, world.token(Role.LOGISTICS, "ACME"), "acmer001")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "dispatched"
    assert body["shipment"]["carrier"] == "DHL"
    assert body["teleworker"]["email"] == PERSON["email"]
    with db.session(write=False) as s:
        event = s.exec(select(DeviceEvent).where(DeviceEvent.event == "dispatch")).one()
    assert event.actor == "logistics:logistics-ACME"
    assert set(event.details) == {"shipment_id", "teleworker_id", "carrier", "tracking"}
    for value in PERSONAL_VALUES:
        assert value not in str(event.details)


def test_only_ready_laptops_can_be_dispatched(app_client: TestClient, world: World) -> None:
    r = _dispatch(app_client, world.token(Role.LOGISTICS, "ACME"), "ACME0001")  # EXPECTED
    assert r.status_code == 409
    assert r.json()["current_state"] == "expected"
    assert "receive" in r.json()["allowed_events"]


def test_other_clients_laptops_and_teleworkers_are_invisible(
    app_client: TestClient, world: World, ready: list[int]
) -> None:
    globex = world.token(Role.LOGISTICS, "GLOBEX")
    assert _dispatch(app_client, globex, "ACMER001").status_code == 404
    first = _dispatch(app_client, world.token(Role.LOGISTICS, "ACME"), "ACMER001").json()
    acme_teleworker = first["teleworker"]["id"]
    body = {
        "serial": "GLBXR001",
        "carrier": "UPS",
        "tracking": "T1",
        "teleworker_id": acme_teleworker,
    }
    # Logistics of GLOBEX cannot even see ACME's teleworker: 404.
    assert app_client.post("/dispatch", json=body, headers=auth(globex)).status_code == 404
    # An admin sees both, but a laptop only goes to a teleworker of its own client: 422.
    r = app_client.post("/dispatch", json=body, headers=auth(world.token(Role.ADMIN)))
    assert r.status_code == 422
    assert "does not belong" in r.json()["detail"]


def test_technicians_and_dsi_cannot_dispatch(
    app_client: TestClient, world: World, ready: list[int]
) -> None:
    assert _dispatch(app_client, world.token(Role.TECHNICIAN), "ACMER001").status_code == 403
    assert _dispatch(app_client, world.token(Role.DSI, "ACME"), "ACMER001").status_code == 403


def test_deliver_return_restage_and_retire(
    app_client: TestClient, world: World, ready: list[int], db: Database
) -> None:
    token = auth(world.token(Role.LOGISTICS, "ACME"))
    one, two = ready[0], ready[1]
    _dispatch(app_client, world.token(Role.LOGISTICS, "ACME"), "ACMER001")
    _dispatch(app_client, world.token(Role.LOGISTICS, "ACME"), "ACMER002")
    r = app_client.post(f"/logistics/devices/{one}/deliver", headers=token)
    assert r.json()["state"] == "delivered"
    assert r.json()["shipment"]["delivered_at"]
    # A return needs a reason.
    assert (
        app_client.post(
            f"/logistics/devices/{one}/return", json={"reason": ""}, headers=token
        ).status_code
        == 422
    )
    r = app_client.post(
        f"/logistics/devices/{one}/return", json={"reason": "broken screen"}, headers=token
    )
    assert r.json()["state"] == "returned"
    assert r.json()["shipment"]["return_reason"] == "broken screen"
    r = app_client.post(f"/logistics/devices/{one}/restage", json={}, headers=token)
    assert r.json()["state"] == "received"
    # Returned straight from DISPATCHED (refused at the door), then retired.
    app_client.post(f"/logistics/devices/{two}/return", json={"reason": "refused"}, headers=token)
    assert (
        app_client.post(f"/logistics/devices/{two}/retire", json={}, headers=token).status_code
        == 422
    )
    r = app_client.post(f"/logistics/devices/{two}/retire", json={"reason": "lost"}, headers=token)
    assert r.json()["state"] == "retired"
    # Delivering a READY laptop is illegal: 409 with allowed events.
    r = app_client.post(f"/logistics/devices/{ready[2]}/deliver", headers=token)
    assert r.status_code == 409
    assert r.json()["allowed_events"]
    with db.session(write=False) as s:
        events = [
            e.event
            for e in s.exec(
                select(DeviceEvent)
                .where(DeviceEvent.device_id == one)
                .order_by(col(DeviceEvent.id))
            ).all()
        ]
    assert events[-4:] == ["dispatch", "deliver", "return", "restage"]


def test_personal_data_is_for_logistics_and_admins_only(
    app_client: TestClient, world: World, ready: list[int]
) -> None:
    _dispatch(app_client, world.token(Role.LOGISTICS, "ACME"), "ACMER001")
    for role, client in ((Role.LOGISTICS, "ACME"), (Role.ADMIN, None)):
        r = app_client.get(
            "/logistics/status",
            params={"serial": "ACMER001"},
            headers=auth(world.token(role, client)),
        )
        assert r.json()["items"][0]["teleworker"]["name"] == PERSON["name"]
    for role, client in ((Role.TECHNICIAN, None), (Role.DSI, "ACME")):
        r = app_client.get(
            "/logistics/status",
            params={"serial": "ACMER001"},
            headers=auth(world.token(role, client)),
        )
        item = r.json()["items"][0]
        assert item["state"] == "dispatched"
        assert item["teleworker"] is None
        for value in PERSONAL_VALUES:
            assert value not in r.text
        csv_text = app_client.get(
            "/logistics/status", params={"format": "csv"}, headers=auth(world.token(role, client))
        ).text
        for value in PERSONAL_VALUES:
            assert value not in csv_text
    # The other company sees nothing at all.
    r = app_client.get(
        "/logistics/status",
        params={"serial": "ACMER001"},
        headers=auth(world.token(Role.LOGISTICS, "GLOBEX")),
    )
    assert r.json()["items"] == []
    # Teleworker lookups: by e-mail in a POST body (never a URL), logistics/admin only.
    r = app_client.post(
        "/logistics/teleworkers/search",
        json={"email": PERSON["email"]},
        headers=auth(world.token(Role.TECHNICIAN)),
    )
    assert r.status_code == 403
    r = app_client.post(
        "/logistics/teleworkers/search",
        json={"email": PERSON["email"]},
        headers=auth(world.token(Role.LOGISTICS, "GLOBEX")),
    )
    assert r.json() == []
    found = app_client.post(
        "/logistics/teleworkers/search",
        json={"email": PERSON["email"]},
        headers=auth(world.token(Role.LOGISTICS, "ACME")),
    ).json()
    r = app_client.get(
        "/logistics/status",
        params={"teleworker_id": found[0]["id"]},
        headers=auth(world.token(Role.TECHNICIAN)),
    )
    assert r.status_code == 404


def test_personal_data_never_reaches_logs_or_errors(
    app_client: TestClient, world: World, ready: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = world.token(Role.LOGISTICS, "ACME")
    _dispatch(app_client, token, "ACMER001")
    # Errors that involve the personal fields: a bad e-mail, a bad file, a conflict.
    bad = _dispatch(
        app_client, token, "ACMER002", teleworker={**PERSON, "email": "Amélie Poulain at home"}
    )
    assert bad.status_code == 422
    again = _dispatch(app_client, token, "ACMER001")
    assert again.status_code == 409
    csv = (
        "serial,name,email,phone,address,carrier,tracking\n"
        f'ACMER002,{PERSON["name"]},not-an-email,{PERSON["phone"]},"{PERSON["address"]}",'
        "DHL,T2\n"
    )
    rejected = app_client.post(
        "/dispatch/import",
        content=csv.encode(),
        headers={**auth(token), "content-type": "text/csv"},
    )
    assert rejected.status_code == 422
    assert rejected.json()["errors"][0]["column"] == "email"
    for response in (bad, again, rejected):
        for value in PERSONAL_VALUES:
            assert value not in response.text
    for value in PERSONAL_VALUES:
        assert value not in caplog.text


def test_purge_erases_personal_data_after_retention_and_keeps_history(
    app_client: TestClient, world: World, ready: list[int], db: Database
) -> None:
    token = world.token(Role.LOGISTICS, "ACME")
    _dispatch(app_client, token, "ACMER001")
    _dispatch(
        app_client,
        token,
        "ACMER002",
        teleworker={**PERSON, "email": "bob@acme.example", "name": "Bob"},
    )
    app_client.post(f"/logistics/devices/{ready[0]}/deliver", headers=auth(token))
    with db.session() as s:
        # Delivered just now: within retention; Bob's laptop is still on its way.
        assert purge_personal_data(s, retention_days=30) == 0
    with db.session() as s:
        later = utcnow() + timedelta(days=31)
        assert purge_personal_data(s, retention_days=30, now=later) == 1
    with db.session(write=False) as s:
        people = {t.id: t for t in s.exec(select(Teleworker)).all()}
        shipments = s.exec(select(Shipment).order_by(col(Shipment.id))).all()
        events = s.exec(select(DeviceEvent).where(DeviceEvent.event == "dispatch")).all()
    erased = people[shipments[0].teleworker_id]
    assert erased.erased_at is not None
    assert PERSON["name"] not in str(erased.model_dump())
    assert erased.phone is None
    assert people[shipments[1].teleworker_id].name == "Bob"  # not delivered: kept
    assert len(shipments) == 2 and len(events) == 2  # the history stays
    r = app_client.get("/logistics/status", params={"serial": "ACMER001"}, headers=auth(token))
    assert r.json()["items"][0]["teleworker"]["name"] == "erased"
    assert r.json()["items"][0]["shipment"]["tracking"] == "TRK-ACMER001"


BULK_HEADER = "serial;name;email;phone;address;carrier;tracking\n"


def _bulk(client: TestClient, token: str, text: str, dry_run: bool = False) -> Any:
    return client.post(
        "/dispatch/import",
        params={"dry_run": dry_run},
        content=text.encode("utf-8"),
        headers={**auth(token), "content-type": "text/csv"},
    )


def test_bulk_dispatch_is_all_or_nothing_with_line_and_column(
    app_client: TestClient, world: World, ready: list[int], db: Database
) -> None:
    token = world.token(Role.LOGISTICS, "ACME")
    text = (
        BULK_HEADER
        + "ACMER001;Ann;ann@acme.example;;1 Main St;DHL;T1\n"
        + "\n"
        + "ACMER002;Ben;not-mail;;2 Main St;DHL;T2\n"
        + "ACME0001;Cid;cid@acme.example;;3 Main St;DHL;T3\n"
        + "GLBXR001;Dan;dan@acme.example;;4 Main St;;T4\n"
        + "ACMER001;Eve;eve@acme.example;;5 Main St;DHL;T5\n"
    )
    r = _bulk(app_client, token, text)
    assert r.status_code == 422
    errors = {(e["line"], e["column"]) for e in r.json()["errors"]}
    assert (4, "email") in errors  # blank line 3 still counts as a line
    assert (5, "serial") in errors  # not READY
    assert (6, "carrier") in errors  # empty required value
    assert (7, "serial") in errors  # twice in the file
    with db.session(write=False) as s:
        assert s.exec(select(Shipment)).all() == []
        assert s.exec(select(Teleworker)).all() == []
    dry = _bulk(app_client, token, text, dry_run=True)
    assert dry.status_code == 200 and dry.json()["dispatched"] == 0
    assert len(dry.json()["errors"]) == len(r.json()["errors"])
    good = (
        BULK_HEADER + "ACMER001;Ann;ann@acme.example;;1 Main St;DHL;T1\n"
        "ACMER002;Ann;ann@acme.example;;1 Main St;DHL;T2\n"
    )
    assert _bulk(app_client, token, good, dry_run=True).json()["errors"] == []
    r = _bulk(app_client, token, good)
    assert r.status_code == 200, r.text
    assert r.json()["dispatched"] == 2
    with db.session(write=False) as s:
        assert len(s.exec(select(Teleworker)).all()) == 1  # same person twice
        states = {d.serial: d.state for d in s.exec(select(Device)).all()}
    assert states["ACMER001"] == states["ACMER002"] == "dispatched"


def test_bulk_file_with_a_bad_header_names_the_column(app_client: TestClient, world: World) -> None:
    token = world.token(Role.LOGISTICS, "ACME")
    r = _bulk(app_client, token, "serial,name,email,address,carrier,colour\nX,a,b,c,d,e\n")
    assert r.status_code == 422
    cols = {(e["line"], e["column"]) for e in r.json()["errors"]}
    assert (1, "colour") in cols and (1, "tracking") in cols


def test_carrier_status_file_delivers_and_returns(
    app_client: TestClient, world: World, ready: list[int]
) -> None:
    token = world.token(Role.LOGISTICS, "ACME")
    for serial in ("ACMER001", "ACMER002"):
        _dispatch(app_client, token, serial)
    bad = "tracking,status,date\nTRK-ACMER001,delivered,2026-11-20T10:00:00Z\nNOPE,delivered,\n"
    r = app_client.post(
        "/logistics/carrier-status",
        content=bad.encode(),
        headers={**auth(token), "content-type": "text/csv"},
    )
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"line": 3, "column": "tracking", "message": "no shipment with this tracking number"}
    ]
    good = (
        "tracking,status,date,reason\nTRK-ACMER001,delivered,2026-11-20T10:00:00Z,\n"
        "TRK-ACMER002,returned,,address unknown\n"
    )
    r = app_client.post(
        "/logistics/carrier-status",
        content=good.encode(),
        headers={**auth(token), "content-type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["delivered"], r.json()["returned"]) == (1, 1)
    items = app_client.get(
        "/logistics/status", params={"order_reference": "PO-ACME-1"}, headers=auth(token)
    ).json()["items"]
    by_serial = {i["serial"]: i for i in items}
    assert by_serial["ACMER001"]["state"] == "delivered"
    assert by_serial["ACMER001"]["shipment"]["delivered_at"].startswith("2026-11-20T10:00")
    assert by_serial["ACMER002"]["state"] == "returned"
    # Importing the same file again changes nothing.
    r = app_client.post(
        "/logistics/carrier-status",
        content=good.encode(),
        headers={**auth(token), "content-type": "text/csv"},
    )
    assert r.json()["unchanged"] == 2


def test_dispatch_takes_the_teleworkers_language(
    app_client: TestClient, world: World, ready: list[int], db: Database
) -> None:
    token = world.token(Role.LOGISTICS, "ACME")
    text = (
        "serial;name;email;address;carrier;tracking;langue\n"
        "ACMER001;Ann;ann@acme.example;1 Main St;DHL;T1;EN\n"
        "ACMER002;Bea;bea@acme.example;2 Main St;DHL;T2;\n"
    )
    assert _bulk(app_client, token, text.replace(";EN\n", ";de\n"), dry_run=True).json()[
        "errors"
    ] == [{"line": 2, "column": "langue", "message": "fr or en"}]  # as written
    assert _bulk(app_client, token, text).status_code == 200
    r = app_client.post(
        "/dispatch",
        json={
            "serial": "ACMER003",
            "carrier": "DHL",
            "tracking": "T3",
            "teleworker": {"name": "Cy", "email": "cy@acme.example", "address": "3 Main St"},
        },
        headers=auth(token),
    )
    assert r.json()["teleworker"]["language"] == "fr"  # the default
    with db.session(write=False) as s:
        languages = {t.email: t.language for t in s.exec(select(Teleworker)).all()}
    assert languages == {
        "ann@acme.example": "en",
        "bea@acme.example": "fr",
        "cy@acme.example": "fr",
    }
