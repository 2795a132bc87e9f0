"""The wave dashboard's figures kept per scope and filter (console/cache.py): one
computation for many viewers of one scope, never one client's figures shown to another,
forgotten when the live hub tells dashboards the figures changed."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from console.cache import TtlCache
from core.db import Database
from core.principal import Role
from tests.console.support import sign_in
from tests.support.factories import World, create_devices


def _total(html: str) -> int:
    """The dashboard's laptop count ("N portables · …" in its hint line)."""
    found = re.search(r'<p class="hint">\s*([\d\u202f\u00a0 ,.]+)\s+portables?', html)
    assert found, html[:2000]
    return int(re.sub(r"\D", "", found.group(1)))


def test_each_client_sees_its_own_figures_and_one_scope_computes_once(
    db: Database, world: World
) -> None:
    with db.session() as s:
        create_devices(s, delivery=world.acme_delivery, serials=[f"CA{i:04d}" for i in range(3)])
        create_devices(s, delivery=world.globex_delivery, serials=["CG0001"])
    with db.session(write=False) as s:
        from provisioning.runs.repository import count_by_state

        acme_total = sum(
            count_by_state(s, client_id=world.acme.id, delivery_id=None, site_id=None).values()
        )
        globex_total = sum(
            count_by_state(s, client_id=world.globex.id, delivery_id=None, site_id=None).values()
        )
    assert acme_total != globex_total
    app = create_app(db)
    with TestClient(app, raise_server_exceptions=False) as client:
        cache: TtlCache[object] = app.state.figures_cache
        cache.ttl = 3600.0  # kept for the whole test: what is shared is not left to timing
        sign_in(client, world.token(Role.DSI, "ACME"))
        assert _total(client.get("/console/waves").text) == acme_total
        assert _total(client.get("/console/waves/figures").text) == acme_total
        assert cache.computed == 1  # the page and its reload: one computation
        # Another company's viewer, the same (empty) filter, while ACME's are kept.
        client.cookies.clear()  # the next person at the same browser
        sign_in(client, world.token(Role.DSI, "GLOBEX"))
        assert _total(client.get("/console/waves").text) == globex_total
        assert cache.computed == 2
        # Staff looking at one client: their own key, that client's figures.
        client.cookies.clear()
        sign_in(client, world.token(Role.ADMIN))
        assert _total(client.get("/console/waves?client=GLOBEX").text) == globex_total
        assert _total(client.get("/console/waves").text) == acme_total + globex_total
        # A client asking for the other's figures by the filter gets nothing kept: 404.
        client.cookies.clear()
        sign_in(client, world.token(Role.DSI, "ACME"))
        assert client.get("/console/waves?client=GLOBEX").status_code == 404
        assert _total(client.get("/console/waves").text) == acme_total
        assert cache.computed == 4


def test_a_change_or_a_new_forecast_shows_at_once_and_the_hub_signal_clears(
    db: Database, world: World
) -> None:
    from forecast import service as forecast

    app = create_app(db)
    with TestClient(app, raise_server_exceptions=False) as client:
        cache: TtlCache[object] = app.state.figures_cache
        cache.ttl = 3600.0
        sign_in(client, world.token(Role.ADMIN))
        before = _total(client.get("/console/waves").text)
        assert _total(client.get("/console/waves").text) == before
        assert cache.computed == 1
        # A laptop's event moves the marks the figures are kept under: seen at once.
        with db.session() as s:
            create_devices(s, delivery=world.acme_delivery, serials=["NEW0001", "NEW0002"])
        assert _total(client.get("/console/waves").text) == before + 2
        assert cache.computed == 2
        # So does a forecast stored by the refresher (no laptop moved).
        assert "Pas encore de prévision" in client.get("/console/waves").text
        assert forecast.refresh(db)
        assert "Tous prêts" in client.get("/console/waves").text
        assert cache.computed == 3
        # The live hub's "stale" signal forgets what was kept.
        hub = app.state.live_hub
        hub.dashboard_every = 0.0
        asyncio.run(hub._tick())  # its first look: the marks
        with db.session() as s:
            create_devices(s, delivery=world.globex_delivery, serials=["NEW0003"])
        asyncio.run(hub._tick())  # they moved: dashboards told "stale", kept figures gone
        assert cache._entries == {}


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_values_are_kept_ttl_seconds_and_a_clear_forgets_them() -> None:
    clock = _Clock()
    cache: TtlCache[int] = TtlCache(ttl=2.0, max_entries=2, clock=clock)
    calls = iter(range(100))
    assert cache.get("a", lambda: next(calls)) == 0
    clock.now += 1.9
    assert cache.get("a", lambda: next(calls)) == 0
    clock.now += 0.1
    assert cache.get("a", lambda: next(calls)) == 1  # 2 s old: computed again
    cache.clear()
    assert cache.get("a", lambda: next(calls)) == 2
    cache.get("b", lambda: next(calls))
    cache.get("c", lambda: next(calls))  # at most two keys: "a" goes
    assert cache.get("a", lambda: next(calls)) == 5
    off: TtlCache[int] = TtlCache(ttl=0.0, clock=clock)
    assert [off.get("a", lambda: next(calls)) for _ in range(2)] == [6, 7]


def test_viewers_arriving_during_a_computation_wait_for_it_instead_of_computing() -> None:
    cache: TtlCache[str] = TtlCache(ttl=3600.0)
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> str:
        calls.append(1)
        started.set()
        assert release.wait(30)
        return "figures"

    got: list[str] = []
    first = threading.Thread(target=lambda: got.append(cache.get("k", slow)))
    first.start()
    assert started.wait(30)
    others = [threading.Thread(target=lambda: got.append(cache.get("k", slow))) for _ in range(8)]
    for t in others:
        t.start()
    release.set()
    for t in [first, *others]:
        t.join(30)
        assert not t.is_alive()
    assert got == ["figures"] * 9 and len(calls) == 1


def test_a_value_computed_across_a_clear_is_not_kept() -> None:
    cache: TtlCache[int] = TtlCache(ttl=3600.0)

    def cleared_meanwhile() -> int:
        cache.clear()
        return 1

    assert cache.get("k", cleared_meanwhile) == 1
    assert cache.get("k", lambda: 2) == 2


@pytest.mark.parametrize("ttl", [-1.0])
def test_a_negative_ttl_keeps_nothing(ttl: float) -> None:
    cache: TtlCache[int] = TtlCache(ttl=ttl)
    assert [cache.get("k", lambda: 3), cache.get("k", lambda: 4)] == [3, 4]
