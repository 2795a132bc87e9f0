"""The forecast on the wave dashboard: the dates of the scope looked at, a committed
date set from the panel and the at-risk badge once the P90 passes it, the what-if
answer, and each company seeing its own deliveries only."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import event

from console.cache import TtlCache
from console.pages.forecast import MAX_LINES
from core.db import Database
from core.principal import SYSTEM, Role
from core.timeutil import utcnow
from forecast import service as forecast
from tests.console.support import sign_in
from tests.support.factories import World, create_delivery, create_devices

HTMX = {"HX-Request": "true"}


def test_the_dashboard_shows_the_forecast_and_a_passed_commitment_as_at_risk(
    app_client: TestClient, db: Database, world: World
) -> None:
    empty = app_client.get("/console/waves")  # not signed in: to the sign-in page
    assert empty.url.path == "/console/sign-in"
    csrf = sign_in(app_client, world.token(Role.LOGISTICS, "ACME"))
    before = app_client.get("/console/waves")
    assert "Pas encore de prévision" in before.text
    assert forecast.refresh(db)
    page = app_client.get("/console/waves")
    assert "Tous prêts" in page.text and "Tous expédiés" in page.text
    assert re.search(r'data-key="dispatched-p90"><time datetime="20\d\d-', page.text)
    assert "PO-ACME-1" in page.text and "PO-GLOBEX-1" not in page.text
    delivery = world.acme_delivery.id
    yesterday = (utcnow() - timedelta(days=1)).date().isoformat()
    saved = app_client.post(
        f"/console/waves/deliveries/{delivery}/commitment",
        data={"committed_date": yesterday},
        headers={"X-CSRF-Token": csrf, **HTMX},
    )
    assert saved.status_code == 200 and "Date d\u2019engagement fixée" in saved.text
    assert forecast.refresh(db)  # the refresher's job: the next forecast judges the date
    figures = app_client.get("/console/waves/figures", params={"delivery": delivery})
    line = rf'<tr id="forecast-delivery-{delivery}" class="bad">.*?</tr>'
    row = re.search(line, figures.text, re.S)
    assert row and "en retard probable" in row.group(0) and yesterday in row.group(0)
    assert "son P90 dépasse la date d\u2019engagement" in figures.text
    # Another company's delivery: not found, from the panel's form too.
    other = app_client.post(
        f"/console/waves/deliveries/{world.globex_delivery.id}/commitment",
        data={"committed_date": yesterday},
        headers={"X-CSRF-Token": csrf, **HTMX},
    )
    assert other.status_code == 404


def test_a_what_if_answers_with_new_dates_for_staff(
    app_client: TestClient, db: Database, world: World
) -> None:
    assert forecast.refresh(db)
    csrf = sign_in(app_client, world.token(Role.ADMIN))
    page = app_client.get("/console/waves")
    assert "Et si…" in page.text and "Goulot d\u2019étranglement" in page.text
    answer = app_client.post(
        "/console/waves/what-if",
        data={"site_id": str(world.bench.site_id), "slots": "128", "always_open": "true"},
        headers={"X-CSRF-Token": csrf, **HTMX},
    )
    assert answer.status_code == 200, answer.text[-800:]
    assert "La vague" in answer.text and "PO-ACME-1" in answer.text and "PO-GLOBEX-1" in answer.text
    bad = app_client.post(
        "/console/waves/what-if",
        data={"site_id": str(world.bench.site_id), "open_at": "25:00"},
        headers={"X-CSRF-Token": csrf, **HTMX},
    )
    assert bad.status_code == 422 and "open_at" in bad.text
    with TestClient(app_client.app) as dsi:
        sign_in(dsi, world.token(Role.DSI, "ACME"))
        assert "Et si…" not in dsi.get("/console/waves").text


def test_a_wave_of_many_deliveries_lists_the_urgent_ones_and_counts_the_rest(
    app_client: TestClient, db: Database, world: World
) -> None:
    with db.session() as s:
        for n in range(MAX_LINES + 2):
            delivery = create_delivery(s, client=world.acme, order=f"PO-MANY-{n:02d}")
            create_devices(s, delivery=delivery, serials=[f"MANY{n:04d}"])
        late = create_delivery(s, client=world.acme, order="PO-PROMISED")
        create_devices(s, delivery=late, serials=["PROM0001"])
        yesterday = (utcnow() - timedelta(days=1)).date()
        forecast.set_commitment(s, late.id or 0, SYSTEM, committed=yesterday)
    assert forecast.refresh(db)
    sign_in(app_client, world.token(Role.ADMIN))
    page = app_client.get("/console/waves").text
    listed = re.findall(r'<tr id="forecast-delivery-\d+"', page)
    assert len(listed) == MAX_LINES
    first = re.search(r'<tr id="forecast-delivery-\d+"[^>]*>\s*<td>([^<]+)', page)
    assert first and first.group(1).strip() == "PO-PROMISED"  # at risk: first
    assert "5 autres livraisons" in page  # 17 with a forecast, 12 listed


def test_a_computed_dashboard_lists_the_deliveries_once(
    app_client: TestClient, db: Database, world: World
) -> None:
    """The filter menu and the forecast panel share one read of the viewer's deliveries
    (the panel read them again), and the panel still names them."""
    app_client.app.state.figures_cache = TtlCache(ttl=0)  # type: ignore[attr-defined]
    sign_in(app_client, world.token(Role.ADMIN))
    assert forecast.refresh(db)
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        page = app_client.get("/console/waves")
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert page.status_code == 200
    listed = [s for s in seen if re.search(r"\bFROM delivery\b", s)]
    assert len(listed) == 1, listed
    assert 'id="forecast-delivery-' in page.text and "PO-GLOBEX-1" in page.text
