"""The help desk and the forecast in a real browser (Chromium through Playwright), in
French: an advisor looks a laptop up by the help code the caller reads from its label
and records the contact; the wave dashboard shows the forecast and answers a what-if."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, expect

from core import helpcode
from core.db import Database
from core.principal import Role
from forecast import service as forecast
from tests.console.browser import browser, context, sign_in
from tests.helpdesk.conftest import build_desk
from tests.support.factories import World
from tests.support.server import running_server

__all__ = ["browser", "context"]  # fixtures

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("backend", ["sqlite"], indirect=True),
]


def test_an_advisor_finds_a_laptop_by_its_help_code_and_records_a_contact_in_french(
    db: Database, world: World, context: BrowserContext
) -> None:
    desk = build_desk(db, world)
    device_id = desk.ids["ACMEH001"]
    spoken = helpcode.pretty(helpcode.encode(device_id))  # "8134 6924", as printed
    page = context.new_page()
    with running_server(db) as base:
        sign_in(page, base, world.token(Role.HELPDESK, "ACME"))
        # An advisor lands on the look-up: the help desk is the role's first page.
        expect(page.get_by_role("heading", name="Assistance", exact=True)).to_be_visible()
        page.get_by_label("Code d\u2019aide, numéro de série").fill(spoken)
        page.get_by_role("button", name="Rechercher").click()
        card = page.locator(f"#card-{device_id}")
        expect(card.get_by_role("heading", name="ACMEH001")).to_be_visible()
        expect(card).to_contain_text("trouvé par code d\u2019aide")
        expect(card).to_contain_text("Amélie Poulain")
        expect(card).to_contain_text("acme-support")
        expect(card.get_by_role("link", name="Connexion au VPN WireGuard")).to_be_visible()
        card.get_by_label("Canal").select_option("phone")
        card.locator("select[name=reason]").select_option("vpn")
        card.get_by_label("Élément").select_option("vpn:wireguard")
        card.get_by_label("Article utilisé").select_option(label="Connexion au VPN WireGuard")
        card.get_by_label("Résolu au premier contact").check()
        card.get_by_role("button", name="Enregistrer le contact").click()
        # The card comes back with the contact in its list.
        card = page.locator(f"#card-{device_id}")
        expect(card.locator("tr.new")).to_contain_text("vpn:wireguard")
        expect(card.locator("tr.new")).to_contain_text("oui")
        expect(card.get_by_role("status")).to_contain_text("Contact enregistré.")


def test_the_wave_dashboard_shows_the_forecast_and_answers_a_what_if(
    db: Database, world: World, context: BrowserContext
) -> None:
    assert forecast.refresh(db)
    page = context.new_page()
    with running_server(db) as base:
        sign_in(page, base, world.token(Role.ADMIN), then="/console/waves")
        panel = page.locator("#forecast")
        expect(panel.get_by_role("heading", name="Prévision")).to_be_visible()
        dates = panel.locator("table.forecast-dates")
        expect(dates.get_by_role("row", name="Tous prêts")).to_contain_text("/20")
        expect(dates.get_by_role("row", name="Tous expédiés")).to_contain_text("/20")
        expect(panel).to_contain_text("Goulot d\u2019étranglement")
        expect(panel.locator(f"tr#forecast-delivery-{world.acme_delivery.id}")).to_contain_text(
            "PO-ACME-1"
        )
        page.get_by_label("Emplacements de banc").fill("128")
        page.get_by_role("button", name="Calculer les nouvelles dates").click()
        result = page.locator("#what-if-result")
        expect(result.get_by_role("row", name="La vague")).to_be_visible()
        expect(result).to_contain_text("PO-ACME-1")
        page.close()  # its live stream ends before the server stops
