"""Contacts, the reports on them, and the retention purge over everything the help desk
keeps about people."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import select

from core.db import Database
from core.principal import SYSTEM, Role
from core.timeutil import utcnow
from helpdesk import reports, survey
from helpdesk.models import Contact, SurveyAnswer, SurveyCall
from helpdesk.schemas import AnswerIn, SurveyCreate
from logistics.retention import purge_personal_data
from tests.conftest import auth
from tests.helpdesk.conftest import Desk, build_desk
from tests.support.factories import World


def _post(client: TestClient, token: str, **body: Any) -> Any:
    payload = {"channel": "phone", "reason": "vpn"} | body
    return client.post("/helpdesk/contacts", json=payload, headers=auth(token))


def test_recording_contacts(app_client: TestClient, world: World, desk: Desk) -> None:
    token = world.token(Role.HELPDESK, "ACME")
    r = _post(
        app_client,
        token,
        device_id=desk.ids["ACMEH001"],
        item="vpn:wireguard",
        resolved_first_contact=True,
        article_id=desk.article_ids["vpn-fr"],
        note="Tunnel réactivé",
    )
    assert r.status_code == 201, r.text
    row = r.json()
    assert row["client_id"] == world.acme.id
    assert row["teleworker_id"] == desk.people["amelie"]  # from the laptop's shipment
    assert row["week"].startswith(str(utcnow().isocalendar()[0]))
    # Without a laptop: the token's own client; a centre-wide token names one.
    assert _post(app_client, token, reason="how_to").json()["device_id"] is None
    assert _post(app_client, world.token(Role.HELPDESK), reason="other").status_code == 422
    every = world.token(Role.HELPDESK)
    assert _post(app_client, every, reason="other", client_code="GLOBEX").status_code == 201
    # Another company's laptop or article, a bad item, a time in the future.
    assert _post(app_client, token, device_id=desk.ids["GLBXH001"]).status_code == 404
    other_article = desk.article_ids["globex"]
    r = _post(app_client, token, device_id=desk.ids["ACMEH001"], article_id=other_article)
    assert r.status_code == 404
    assert _post(app_client, token, item="printer").status_code == 422
    future = (utcnow() + timedelta(days=1)).isoformat()
    assert _post(app_client, token, at=future).status_code == 422
    assert _post(app_client, world.token(Role.DSI, "ACME")).status_code == 403
    listed = app_client.get("/helpdesk/contacts", headers=auth(token)).json()
    assert {c["client_id"] for c in listed} == {world.acme.id} and len(listed) == 2
    card = app_client.post("/helpdesk/lookup", json={"q": "ACMEH001"}, headers=auth(token)).json()[
        "items"
    ][0]
    assert [c["item"] for c in card["contacts"]] == ["vpn:wireguard"]


def test_reasons_per_week_client_model_and_item(
    app_client: TestClient, world: World, desk: Desk
) -> None:
    token = world.token(Role.HELPDESK)
    now = utcnow()
    for days, device, reason, item, resolved in (
        (0, "ACMEH001", "vpn", "vpn:wireguard", True),
        (0, "ACMEH002", "vpn", "vpn:wireguard", False),
        (0, "ACMEH002", "collaboration_tool", "tool:Zoom", False),
        (7, "ACMEH001", "vpn", "vpn:wireguard", True),
        (0, "GLBXH001", "hardware", None, True),
    ):
        at = (now - timedelta(days=days)).isoformat()
        body = {"device_id": desk.ids[device], "reason": reason, "item": item}
        assert (
            _post(app_client, token, at=at, resolved_first_contact=resolved, **body).status_code
            == 201
        )
    rows = app_client.get("/helpdesk/reports/reasons", headers=auth(token)).json()
    this_week = f"{now.isocalendar()[0]}-W{now.isocalendar()[1]:02d}"
    current = {
        (r["client_code"], r["model"], r["reason"], r["item"]): (
            r["contacts"],
            r["resolved_first_contact"],
        )
        for r in rows
        if r["week"] == this_week
    }
    assert current == {
        ("ACME", "Dell Latitude 5440", "vpn", "vpn:wireguard"): (2, 1),
        ("ACME", "Dell Latitude 5440", "collaboration_tool", "tool:Zoom"): (1, 0),
        ("GLOBEX", "Dell Latitude 5440", "hardware", None): (1, 1),
    }
    assert sum(r["contacts"] for r in rows) == 5
    dsi = app_client.get("/helpdesk/reports/reasons", headers=auth(world.token(Role.DSI, "ACME")))
    assert {r["client_code"] for r in dsi.json()} == {"ACME"}
    csv = app_client.get("/helpdesk/reports/reasons", params={"format": "csv"}, headers=auth(token))
    assert csv.text.splitlines()[0].startswith("week,client_code,model,reason,item")


def test_contacts_per_100_laptops_in_their_first_ten_days(db: Database, world: World) -> None:
    from helpdesk import service
    from helpdesk.schemas import ContactCreate

    delivered = utcnow() - timedelta(days=15)
    desk = build_desk(db, world, delivered_at=delivered)
    with db.session() as s:
        for device, offset in (
            ("ACMEH001", 1),  # inside the first ten days
            ("ACMEH001", 9),
            ("ACMEH001", 12),  # after: not counted
            ("ACMEH002", 1),  # dispatched, not delivered: not in the figure
            ("GLBXH001", 2),
        ):
            service.record_contact(
                s,
                ContactCreate(
                    device_id=desk.ids[device],
                    channel="phone",
                    reason="vpn",
                    at=delivered + timedelta(days=offset),
                ),
                SYSTEM,
            )
        waves = {w.order_reference: w for w in reports.waves(s, SYSTEM)}
    acme, globex = waves["PO-ACME-1"], waves["PO-GLOBEX-1"]
    assert (acme.delivered, acme.window_closed, acme.contacts, acme.per_100) == (1, 1, 2, 200.0)
    assert (globex.delivered, globex.window_closed, globex.contacts, globex.per_100) == (
        1,
        1,
        1,
        100.0,
    )
    with db.session() as s:
        # Twelve days in, the ACME laptop's window was still open: nothing counted yet.
        early = reports.waves(s, SYSTEM, now=delivered + timedelta(days=5))
    assert [(w.window_closed, w.per_100) for w in early] == [(0, None), (0, None)]


def test_the_retention_purge_covers_contacts_calls_and_answers(
    db: Database, world: World, desk: Desk
) -> None:
    from helpdesk import service
    from helpdesk.schemas import ContactCreate

    month = utcnow().strftime("%Y-%m")
    with db.session() as s:
        for device in ("ACMEH001", "ACMEH002"):
            service.record_contact(
                s,
                ContactCreate(
                    device_id=desk.ids[device],
                    channel="phone",
                    reason="vpn",
                    note="Appelle le soir",
                ),
                SYSTEM,
            )
        drawn = survey.create(s, SurveyCreate(month=month, seed="r"), SYSTEM)
        calls = s.exec(select(SurveyCall).where(SurveyCall.survey_id == drawn.id)).all()
        survey.answer(
            s,
            calls[0].id or 0,
            AnswerIn(
                reachability=5,
                welcome=5,
                speed=5,
                availability=5,
                clarity=5,
                solution=5,
                comment="Merci Paul",
            ),
            SYSTEM,
        )
    with db.session() as s:
        # Within retention: nothing changes.
        report: dict[str, int] = {}
        assert purge_personal_data(s, retention_days=30, report=report) == 0
        assert set(report.values()) == {0}
    with db.session() as s:
        # Past it for the delivered laptops' people: Amélie's and Gina's data is erased,
        # their links cut at once; John (still in transit) keeps his, but his contact and
        # call are older than the retention too.
        report = {}
        later = utcnow() + timedelta(days=31)
        assert purge_personal_data(s, retention_days=30, now=later, report=report) == 2
        assert report == {
            "contact(s) anonymised": 2,
            "survey call(s) anonymised": 3,
            "survey comment(s) blanked": 1,
        }
    with db.session() as s:
        contacts = s.exec(select(Contact)).all()
        assert [(c.teleworker_id, c.note) for c in contacts] == [(None, None), (None, None)]
        assert all(c.reason == "vpn" and c.device_id for c in contacts)  # counts stay
        assert {c.teleworker_id for c in s.exec(select(SurveyCall)).all()} == {None}
        (answer,) = s.exec(select(SurveyAnswer)).all()
        assert (answer.comment, answer.solution) == (None, 5)
    with db.session() as s:
        report = {}
        purge_personal_data(s, retention_days=30, now=later, report=report)
        assert set(report.values()) == {0}  # idempotent


def test_an_erased_persons_contacts_are_anonymised_at_once(db: Database, world: World) -> None:
    from helpdesk import service
    from helpdesk.schemas import ContactCreate

    desk = build_desk(db, world, delivered_at=utcnow() - timedelta(days=10))
    with db.session() as s:
        for device in ("ACMEH001", "ACMEH002"):
            service.record_contact(
                s,
                ContactCreate(device_id=desk.ids[device], channel="email", reason="sign_in"),
                SYSTEM,
            )
    with db.session() as s:
        # Amélie's laptop arrived ten days ago: past a five-day retention she is erased,
        # and her contact of today loses its link; John's (in transit) keeps it.
        assert purge_personal_data(s, retention_days=5) == 2
    with db.session() as s:
        links = {c.device_id: c.teleworker_id for c in s.exec(select(Contact)).all()}
    assert links == {desk.ids["ACMEH001"]: None, desk.ids["ACMEH002"]: desk.people["john"]}
