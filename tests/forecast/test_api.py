"""The forecast over HTTP, on both databases: who sees what, committed dates, the
at-risk alert (a notice and a webhook through the outbox), site settings, what-if and
capacity questions, and bad input answered with one clear error."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from fastapi.testclient import TestClient
from sqlmodel import select

from core.db import Database
from core.principal import SYSTEM, Role
from forecast import service
from logistics.models import WebhookDelivery
from tests.conftest import auth
from tests.support.factories import World


def _h(world: World, role: Role, client: str | None = None) -> dict[str, str]:
    return auth(world.token(role, client))


def test_staff_see_every_scope_clients_only_their_own(app_client: TestClient, world: World) -> None:
    empty = app_client.get("/forecast", headers=_h(world, Role.TECHNICIAN)).json()
    assert empty["made_at"] is None and empty["wave"] is None  # never computed on a read
    r = app_client.post("/forecast/refresh", headers=_h(world, Role.TECHNICIAN))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["wave"]["laptops"] == 3
    assert body["wave"]["ready_p50"] <= body["wave"]["ready_p90"]
    assert body["wave"]["dispatched_p50"] <= body["wave"]["dispatched_p90"]
    assert [s["name"] for s in body["sites"]] == ["PAR"]
    assert body["sites"][0]["bottleneck"]["label"]
    assert {d["id"] for d in body["deliveries"]} == {
        world.acme_delivery.id,
        world.globex_delivery.id,
    }
    assert any("no image yet" in a for a in body["assumptions"])
    mine = app_client.get("/forecast", headers=_h(world, Role.DSI, "ACME")).json()
    assert mine["wave"] is None and mine["sites"] == []
    assert [d["id"] for d in mine["deliveries"]] == [world.acme_delivery.id]
    assert [c["id"] for c in mine["clients"]] == [world.acme.id]
    other = app_client.get(
        f"/forecast/deliveries/{world.globex_delivery.id}", headers=_h(world, Role.DSI, "ACME")
    )
    assert other.status_code == 404
    one = app_client.get(
        f"/forecast/deliveries/{world.acme_delivery.id}",
        headers=_h(world, Role.LOGISTICS, "ACME"),
    ).json()
    assert one["forecast"]["laptops"] == 2 and one["at_risk"] is False
    denied = app_client.post("/forecast/refresh", headers=_h(world, Role.DSI, "ACME"))
    assert denied.status_code == 403


def test_a_client_commits_a_date_for_its_own_deliveries(
    app_client: TestClient, world: World
) -> None:
    h = _h(world, Role.LOGISTICS, "ACME")
    url = f"/forecast/deliveries/{world.acme_delivery.id}/commitment"
    r = app_client.put(url, json={"committed_date": "2027-01-15"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["committed_date"] == "2027-01-15"
    assert r.json()["committed_by"].startswith("logistics:")
    other = f"/forecast/deliveries/{world.globex_delivery.id}/commitment"
    assert (
        app_client.put(other, json={"committed_date": "2027-01-15"}, headers=h).status_code == 404
    )
    staged = app_client.put(url, json={"committed_date": None, "site_id": 1}, headers=h)
    assert staged.status_code == 403
    bad = app_client.put(url, json={"committed_date": "15/01/2027"}, headers=h)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith(
        "application/problem+json"
    )
    staff = app_client.put(
        url, json={"committed_date": None, "site_id": 1}, headers=_h(world, Role.ADMIN)
    )
    assert staff.status_code == 200 and staff.json()["site_id"] == 1
    assert staff.json()["committed_date"] is None


def test_an_alert_fires_once_when_the_p90_passes_the_committed_date(
    app_client: TestClient, world: World, db: Database
) -> None:
    h = _h(world, Role.LOGISTICS, "ACME")
    sub = app_client.post(
        "/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "event_types": ["forecast.at_risk"]},
        headers=h,
    )
    assert sub.status_code == 201, sub.text
    url = f"/forecast/deliveries/{world.acme_delivery.id}/commitment"
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    assert app_client.put(url, json={"committed_date": yesterday}, headers=h).status_code == 200
    staff = _h(world, Role.TECHNICIAN)
    for _ in range(2):  # the second forecast is as late: nothing fires again
        assert app_client.post("/forecast/refresh", headers=staff).status_code == 200
    notices = app_client.get("/forecast/notices", headers=h).json()
    assert [(n["kind"], n["delivery_id"]) for n in notices] == [("at_risk", world.acme_delivery.id)]
    assert app_client.get("/forecast/notices", headers=_h(world, Role.DSI, "GLOBEX")).json() == []
    one = app_client.get(f"/forecast/deliveries/{world.acme_delivery.id}", headers=h).json()
    assert one["at_risk"] is True
    with db.session() as s:
        sent = s.exec(select(WebhookDelivery)).all()
    assert [d.event_type for d in sent] == ["forecast.at_risk"]
    assert '"committed_date":"' + yesterday + '"' in sent[0].payload
    # A new date is judged afresh: far enough, and nothing is at risk any more.
    later = (date.today() + timedelta(days=365)).isoformat()
    app_client.put(url, json={"committed_date": later}, headers=h)
    app_client.post("/forecast/refresh", headers=staff)
    assert (
        app_client.get(f"/forecast/deliveries/{world.acme_delivery.id}", headers=h).json()[
            "at_risk"
        ]
        is False
    )
    with db.session() as s:
        assert len(s.exec(select(WebhookDelivery)).all()) == 1


def test_a_p90_back_within_the_same_date_says_so(db: Database, world: World) -> None:
    assert world.acme_delivery.id is not None
    key = ("delivery", world.acme_delivery.id)
    now = datetime.now(UTC)
    with db.session() as s:
        service.set_commitment(s, world.acme_delivery.id, SYSTEM, committed=date(2027, 1, 15))
    with db.session() as s:
        late = service.check_commitments(
            s, {key: {"dispatched_p90": "2027-01-16T10:00:00+01:00"}}, now=now
        )
        again = service.check_commitments(
            s, {key: {"dispatched_p90": "2027-01-17T10:00:00+01:00"}}, now=now
        )
        # 23:30 in Paris on the 15th is still within the committed day.
        back = service.check_commitments(
            s, {key: {"dispatched_p90": "2027-01-15T23:30:00+01:00"}}, now=now
        )
    assert [n.kind for n in late] == ["at_risk"] and again == []
    assert [n.kind for n in back] == ["on_track"]


def test_webhook_subscriptions_accept_the_forecast_event_types(
    app_client: TestClient, world: World
) -> None:
    h = _h(world, Role.LOGISTICS, "ACME")
    ok = app_client.post(
        "/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "event_types": ["forecast.back_on_track"]},
        headers=h,
    )
    assert ok.status_code == 201
    bad = app_client.post(
        "/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "event_types": ["forecast.sometime"]},
        headers=h,
    )
    assert bad.status_code == 422


def test_site_settings_admin_writes_staff_read(app_client: TestClient, world: World) -> None:
    url = "/forecast/sites/1/settings"
    assert app_client.get(url, headers=_h(world, Role.TECHNICIAN)).json()["workers"] == 1
    body = {
        "hours": {"sat": {"open": "09:00", "close": "13:00"}, "mon": None},
        "cutoffs": ["16:30"],
        "workers": 2,
        "closed_dates": ["2026-12-25"],
    }
    assert app_client.put(url, json=body, headers=_h(world, Role.TECHNICIAN)).status_code == 403
    r = app_client.put(url, json=body, headers=_h(world, Role.ADMIN))
    assert r.status_code == 200, r.text
    got = app_client.get(url, headers=_h(world, Role.ADMIN)).json()
    assert got["hours"] == {"sat": {"open": "09:00", "close": "13:00"}, "mon": None}
    assert got["cutoffs"] == ["16:30"] and got["closed_dates"] == ["2026-12-25"]
    for bad in (
        {"hours": {"someday": None}},
        {"timezone": "Mars/Olympus"},
        {"cutoffs": ["25:00"]},
        {"workers": -1},
    ):
        assert app_client.put(url, json=bad, headers=_h(world, Role.ADMIN)).status_code == 422
    assert (
        app_client.get("/forecast/sites/999/settings", headers=_h(world, Role.ADMIN)).status_code
        == 404
    )
    assert app_client.get(url, headers=_h(world, Role.DSI, "ACME")).status_code == 403


def test_what_if_and_capacity(app_client: TestClient, world: World) -> None:
    staff = _h(world, Role.TECHNICIAN)
    body = {"sites": [{"site_id": 1, "always_open": True}], "deliveries_on_time": True}
    r = app_client.post("/forecast/what-if", json=body, headers=staff)
    assert r.status_code == 200, r.text
    wave = r.json()["wave"]
    assert wave["after"]["ready_p90"] <= wave["before"]["ready_p90"]
    assert (
        app_client.post(
            "/forecast/what-if", json=body, headers=_h(world, Role.DSI, "ACME")
        ).status_code
        == 403
    )
    nowhere = {"sites": [{"site_id": 999, "slots": 10}]}
    assert app_client.post("/forecast/what-if", json=nowhere, headers=staff).status_code == 422
    q = {"laptops": 50, "image_gb": 5, "days": 3, "start": "2026-12-07T00:00:00Z"}
    cap = app_client.post("/forecast/capacity", json=q, headers=staff)
    assert cap.status_code == 200, cap.text
    assert cap.json()["slots"] >= 17 and cap.json()["arithmetic"] and cap.json()["assumptions"]
    for bad in ({**q, "laptops": 0}, {**q, "image_gb": -1}, {**q, "os_family": "amiga"}):
        assert app_client.post("/forecast/capacity", json=bad, headers=staff).status_code == 422
