"""The help desk's pages (access is tests/console/test_access.py): the look-up's card and
a contact recorded from it, the knowledge base's versions and conflicts, welcome sheets,
the reports and the survey's call list. Laptops, runs and articles come from the help
desk's own fixture (``tests/helpdesk/conftest.py``)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core import helpcode
from core.db import Database
from core.principal import SYSTEM, Role
from core.settings import get_settings
from core.timeutil import utcnow
from helpdesk import survey
from helpdesk.models import SurveyOptOut
from helpdesk.schemas import SurveyCreate
from tests.conftest import auth, seeded_desk
from tests.console.support import sign_in
from tests.helpdesk.conftest import Desk
from tests.support.factories import World

HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Welcome sheets sign their QR links with a key derived from the secret key."""
    monkeypatch.setenv("MASTERLINE_SECRET_KEY", "console-desk-test-key")
    monkeypatch.setenv("MASTERLINE_HELP_PUBLIC_URL", "https://help.example.test")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def desk(db: Database, world: World, request: pytest.FixtureRequest) -> Desk:
    return seeded_desk(db, world, request)  # on SQLite, copied from a template made once


def _lookup(client: TestClient, csrf: str, q: str) -> str:
    answer = client.post(
        "/console/helpdesk/lookup", data={"q": q}, headers={"X-CSRF-Token": csrf, **HTMX}
    )
    assert answer.status_code == 200, answer.text[-800:]
    return answer.text


def test_a_help_code_opens_the_laptops_card_and_a_contact_is_recorded_from_it(
    app_client: TestClient, world: World, desk: Desk
) -> None:
    csrf = sign_in(app_client, world.token(Role.HELPDESK, "ACME"))
    code = helpcode.encode(desk.ids["ACMEH002"])
    card = _lookup(app_client, csrf, helpcode.pretty(code))
    assert f'id="card-{desk.ids["ACMEH002"]}"' in card
    assert "trouvé par code d\u2019aide" in card
    assert "win11-corporate 2026.11.1" in card and "ACME-ACMEH002" in card
    assert "acme-support" in card and "01 23 45 67 89" in card  # the queue
    assert "John Smith" in card and "john.smith@acme.example" in card
    assert "Baker Street" not in card and "+44 20" not in card  # no address, no phone
    # Zoom was not found by the gate on this laptop: said plainly.
    zoom = re.search(r"<tr><td>Zoom</td>.*?</tr>", card, re.S)
    assert zoom and "manquant" in zoom.group(0)
    assert "Connexion au VPN WireGuard" in card  # the articles that apply, in French
    assert "VPN Globex" not in card
    recorded = app_client.post(
        f"/console/helpdesk/laptops/{desk.ids['ACMEH002']}/contacts",
        data={
            "channel": "phone",
            "reason": "collaboration_tool",
            "item": "tool:Zoom",
            "resolved": "true",
            "article_id": str(desk.article_ids["teams"]),
            "note": "Zoom réinstallé",
        },
        headers={"X-CSRF-Token": csrf, **HTMX},
    )
    assert recorded.status_code == 200, recorded.text[-800:]
    assert 'class="new"' in recorded.text and "Contact enregistré." in recorded.text
    (contact,) = app_client.get("/helpdesk/contacts", headers=auth(world.token(Role.ADMIN))).json()
    assert (contact["device_id"], contact["reason"], contact["item"]) == (
        desk.ids["ACMEH002"],
        "collaboration_tool",
        "tool:Zoom",
    )
    assert contact["resolved_first_contact"] is True
    assert contact["article_id"] == desk.article_ids["teams"]


def test_a_look_up_by_e_mail_and_one_that_finds_nothing(
    app_client: TestClient, world: World, desk: Desk
) -> None:
    csrf = sign_in(app_client, world.token(Role.HELPDESK, "ACME"))
    found = _lookup(app_client, csrf, "Amelie.Poulain@acme.example")
    assert "ACMEH001" in found and "Amélie Poulain" in found
    # A bound advisor does not find another company's laptop, even by its serial.
    nothing = _lookup(app_client, csrf, "GLBXH001")
    assert "Aucun portable ne correspond" in nothing and "GLBXH001" in nothing
    assert 'id="card-' not in nothing
    other = app_client.get(f"/console/helpdesk/laptops/{desk.ids['GLBXH001']}")
    assert other.status_code == 404
    bad = app_client.post(
        f"/console/helpdesk/laptops/{desk.ids['ACMEH001']}/contacts",
        data={"channel": "phone", "reason": "vpn", "item": "printer"},
        headers={"X-CSRF-Token": csrf, **HTMX},
    )
    assert bad.status_code == 422 and "item" in bad.text


def test_articles_are_written_versioned_searched_and_kept_from_conflicting_edits(
    app_client: TestClient, world: World, desk: Desk
) -> None:
    csrf = sign_in(app_client, world.token(Role.DSI, "ACME"))
    headers = {"X-CSRF-Token": csrf, **HTMX}
    made = app_client.post(
        "/console/kb",
        data={
            "slug": "imprimante-maison",
            "language": "fr",
            "title": "Imprimer à la maison",
            "body": "Ajoutez l'**imprimante** depuis les paramètres.\n\n<script>x()</script>",
            "tools": "Teams",
            "os": "Windows",
            "welcome_section": "tools",
        },
        headers=headers,
    )
    assert made.status_code == 200, made.text[-800:]
    target = made.headers["HX-Redirect"]
    article_id = int(target.rsplit("/", 1)[1])
    page = app_client.get(target)
    assert "<strong>imprimante</strong>" in page.text
    assert "<script>x()</script>" not in page.text  # raw HTML is shown as text
    assert "Teams" in page.text and "windows" in page.text and "vos outils" in page.text.lower()
    edit = {"based_on": "1", "title": "Imprimer chez soi", "body": "Nouveau texte."}
    second = app_client.post(f"/console/kb/{article_id}", data=edit, headers=headers)
    assert second.headers.get("HX-Redirect") == f"/console/kb/{article_id}"
    stale = app_client.post(
        f"/console/kb/{article_id}", data={**edit, "body": "Perdu ?"}, headers=headers
    )
    assert stale.status_code == 409 and "version 2" in stale.text
    old = app_client.get(f"/console/kb/{article_id}?version=1")
    assert "Imprimer à la maison" in old.text and "Version 1 sur 2" in old.text
    hits = app_client.get("/console/kb", params={"q": "imprim"})
    assert "Imprimer chez soi" in hits.text
    bad_tag = app_client.post(
        f"/console/kb/{article_id}", data={**edit, "based_on": "2", "vpn": "pptp"}, headers=headers
    )
    assert bad_tag.status_code == 422 and "tags.vpn" in bad_tag.text
    # Another company's client IT neither finds nor reads it.
    with TestClient(app_client.app) as other:
        sign_in(other, world.token(Role.DSI, "GLOBEX"))
        assert "Imprimer" not in other.get("/console/kb", params={"q": "imprim"}).text
        assert other.get(f"/console/kb/{article_id}").status_code == 404


def test_welcome_sheets_for_one_laptop_and_a_dispatch_file(
    app_client: TestClient, world: World, desk: Desk, tmp_path: Path
) -> None:
    csrf = sign_in(app_client, world.token(Role.LOGISTICS, "ACME"))
    home = app_client.get("/console/welcome")
    assert f"/helpdesk/welcome?delivery_id={world.acme_delivery.id}" in home.text
    one = app_client.get(
        "/console/welcome/laptop", params={"serial": "acmeh001"}, follow_redirects=False
    )
    assert one.headers["location"] == f"/helpdesk/welcome?device_id={desk.ids['ACMEH001']}"
    laptop = app_client.get(f"/console/laptops/{desk.ids['ACMEH001']}")
    assert one.headers["location"] in laptop.text  # the laptop page links to its sheet
    sheet = app_client.get(one.headers["location"])  # the API's PDF, with the session cookie
    assert sheet.headers["content-type"] == "application/pdf"
    dispatch = (
        b"serial,name,email,phone,address,carrier,tracking\n"
        b"ACMEH002,J,j@a.example,,x,DHL,T2\n"
        b"ACMEH001,A,a@a.example,,x,DHL,T1\n"
    )
    pdf = app_client.post(
        "/console/welcome/dispatch-file",
        files={"file": ("boxes.csv", dispatch, "text/csv")},
        data={"csrf": csrf},
    )
    assert pdf.status_code == 200, pdf.text[-500:]
    out = tmp_path / "boxes.pdf"
    out.write_bytes(pdf.content)
    text = subprocess.run(
        ["pdftotext", "-layout", str(out), "-"], check=True, capture_output=True, text=True
    ).stdout
    assert text.index("John Smith") < text.index("Amélie Poulain")  # in the file's order


def test_reports_and_the_survey_call_list(
    app_client: TestClient, db: Database, world: World, desk: Desk
) -> None:
    this_month = utcnow().strftime("%Y-%m")
    with db.session() as s:
        survey.create(s, SurveyCreate(month=this_month, seed="console"), SYSTEM)
    csrf = sign_in(app_client, world.token(Role.HELPDESK, "ACME"))
    app_client.post(
        f"/console/helpdesk/laptops/{desk.ids['ACMEH001']}/contacts",
        data={"channel": "phone", "reason": "vpn", "item": "vpn:wireguard"},
        headers={"X-CSRF-Token": csrf, **HTMX},
    )
    reports = app_client.get("/console/desk-reports")
    assert reports.status_code == 200
    assert re.search(r"<td>ACME</td><td>Dell Latitude 5440</td><td>vpn</td>", reports.text)
    assert f"/console/desk-reports/surveys/{this_month}" in reports.text
    # The page's title is words, and the queues appear once, in the page's body.
    title = re.search(r"<title>(.*?)</title>", reports.text, re.S)
    assert title is not None and "<" not in title.group(1)
    assert reports.text.count('<table class="queues">') <= 1
    calls = app_client.get(f"/console/desk-reports/surveys/{this_month}")
    assert "Amélie Poulain" in calls.text and "+33 6 12 34 56 78" in calls.text
    call_id = re.search(r"/console/desk-reports/calls/(\d+)/answer", calls.text)
    assert call_id
    answered = app_client.post(
        f"/console/desk-reports/calls/{call_id.group(1)}/answer",
        data={"reachability": "4", "welcome": "5", "solution": "3", "comment": "bien"},
        headers={"X-CSRF-Token": csrf, **HTMX},
    )
    assert answered.status_code == 200 and "Réponses enregistrées." in answered.text
    after = app_client.get(f"/console/desk-reports/surveys/{this_month}")
    assert "répondu" in after.text
    # Client IT reads the results, never the people to call.
    with TestClient(app_client.app) as dsi:
        sign_in(dsi, world.token(Role.DSI, "ACME"))
        seen = dsi.get(f"/console/desk-reports/surveys/{this_month}")
        assert seen.status_code == 200 and "Amélie" not in seen.text and "+33 6" not in seen.text


def test_an_admin_sets_a_queue_and_draws_a_months_survey(
    app_client: TestClient, world: World, desk: Desk
) -> None:
    csrf = sign_in(app_client, world.token(Role.ADMIN))
    headers = {"X-CSRF-Token": csrf, **HTMX}
    saved = app_client.post(
        "/console/desk-reports/queues",
        data={"client_code": "GLOBEX", "name": "globex-desk", "phone_number": "04 00 00 00 00"},
        headers=headers,
    )
    assert saved.status_code == 200 and "globex-desk" in saved.text
    route = app_client.get(
        "/helpdesk/route",
        params={"number": helpcode.encode(desk.ids["GLBXH001"])},
        headers=auth(world.token(Role.HELPDESK)),
    )
    assert route.text.strip() == "globex-desk"
    bad = app_client.post(
        "/console/desk-reports/queues", data={"name": "no spaces allowed"}, headers=headers
    )
    assert bad.status_code == 422
    month = utcnow().strftime("%Y-%m")
    drawn = app_client.post(
        "/console/desk-reports/surveys",
        data={"month": month, "margin_pct": "10", "confidence_pct": "95", "seed": "s1"},
        headers=headers,
    )
    assert drawn.headers.get("HX-Redirect") == f"/console/desk-reports/surveys/{month}"
    page = app_client.get(f"/console/desk-reports/surveys/{month}")
    assert "graine s1" in page.text and "Amélie Poulain" in page.text
    again = app_client.post("/console/desk-reports/surveys", data={"month": month}, headers=headers)
    assert again.status_code == 409  # a month is drawn once


def test_an_advisor_records_that_a_caller_wants_no_survey_calls(
    app_client: TestClient, db: Database, world: World, desk: Desk
) -> None:
    csrf = sign_in(app_client, world.token(Role.HELPDESK, "ACME"))
    laptop = desk.ids["ACMEH001"]  # delivered to Amélie
    before = app_client.get(f"/console/helpdesk/laptops/{laptop}").text
    assert f'data-post="/console/helpdesk/laptops/{laptop}/survey-opt-out"' in before
    done = app_client.post(
        f"/console/helpdesk/laptops/{laptop}/survey-opt-out", headers={"X-CSRF-Token": csrf, **HTMX}
    )
    assert done.status_code == 200, done.text
    assert done.headers["HX-Redirect"] == f"/console/helpdesk/laptops/{laptop}"
    after = app_client.get(f"/console/helpdesk/laptops/{laptop}").text
    assert "survey-opt-out" not in after and "opted-out" in after
    with db.session(write=False) as s:
        assert s.get(SurveyOptOut, desk.people["amelie"]) is not None
    api = app_client.post(
        "/helpdesk/lookup",
        json={"q": "ACMEH001"},
        headers=auth(world.token(Role.HELPDESK, "ACME")),
    )
    assert api.json()["items"][0]["teleworker"]["survey_opted_out"] is True
    # A laptop sent to nobody: one clear error, nothing written.
    nobody = app_client.post(
        f"/console/helpdesk/laptops/{desk.ids['ACMEH003']}/survey-opt-out",
        headers={"X-CSRF-Token": csrf, **HTMX},
    )
    assert nobody.status_code == 422 and "nobody" in nobody.text
