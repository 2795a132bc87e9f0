"""A real Chromium (Debian's /usr/bin/chromium, driven by Playwright) against a real
server: fixtures and small helpers for the console's browser tests.

Playwright's own browser download is never used. ``launch()`` gives the browser a fresh,
temporary profile; every test gets a new context (no cookie, no storage). Everything is
waited for by condition (Playwright's auto-waiting ``expect``) with generous bounds that
only catch a hang.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",  # root in CI
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PATIENCE_MS = 120_000
"""Bound of every wait on a page: only a hang reaches it (a busy CI machine is slow)."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(locale="fr-FR", viewport={"width": 1600, "height": 1000})
    ctx.set_default_timeout(PATIENCE_MS)
    expect.set_options(timeout=PATIENCE_MS)
    try:
        yield ctx
    finally:
        ctx.close()


def sign_in(page: Page, base: str, token: str, *, then: str = "/console/") -> None:
    """Sign in through the form, as a person does."""
    page.goto(f"{base}/console/sign-in?next={then}")
    page.get_by_label("Jeton").fill(token)
    page.get_by_role("button", name="Se connecter").click()
    expect(page.get_by_role("button", name="Se déconnecter")).to_be_visible()
