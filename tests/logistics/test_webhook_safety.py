"""Webhooks cannot reach internal addresses, never hold a database transaction while
calling out, stop at a total deadline and read a capped, sanitised reply; secrets have
the Standard Webhooks form. Real receivers on 127.0.0.1 (allow-listed, as on-premise
receivers are), a real server, both backends."""

from __future__ import annotations

import base64
import ssl
import threading
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from core.db import Database
from core.principal import Role
from core.settings import get_settings
from logistics.sender import SenderPolicy, send_due
from tests.conftest import auth
from tests.logistics.conftest import Receiver, make_ready
from tests.support.factories import World, create_devices
from tests.support.hostile import hostile_receiver
from tests.support.server import running_server


@pytest.fixture
def public_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default: no allow-list."""
    monkeypatch.delenv("MASTERLINE_WEBHOOK_ALLOW_NETWORKS", raising=False)
    get_settings.cache_clear()


def _subscribe(client: TestClient, world: World, url: str, **extra: Any) -> httpx.Response:
    return client.post(
        "/webhooks",
        json={"url": url, "event_types": ["*"], **extra},
        headers=auth(world.token(Role.LOGISTICS, "ACME")),
    )


@pytest.mark.usefixtures("public_only")
def test_internal_destinations_are_refused_at_subscription(
    app_client: TestClient, world: World
) -> None:
    for url in (
        "http://127.0.0.1:9/hook",
        "http://localhost/",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://10.0.0.8/",
        "http://[::ffff:10.0.0.8]/",
    ):
        r = _subscribe(app_client, world, url)
        assert r.status_code == 422, (url, r.text)
        assert r.json()["title"] == "Destination refused"
        assert "MASTERLINE_WEBHOOK_ALLOW_NETWORKS" in r.json()["detail"]


def test_a_destination_is_checked_again_at_every_send(
    app_client: TestClient,
    world: World,
    db: Database,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = _subscribe(app_client, world, receiver.url)  # allowed now (on-premise)
    assert r.status_code == 201, r.text
    receiver.secret = r.json()["secret"]
    monkeypatch.delenv("MASTERLINE_WEBHOOK_ALLOW_NETWORKS")
    get_settings.cache_clear()
    make_ready(db, world.acme_delivery, ["SSRF0001"])
    assert send_due(db, policy=SenderPolicy(max_attempts=1)) > 0
    assert receiver.calls == 0
    log = app_client.get(
        f"/webhooks/{r.json()['id']}/deliveries",
        headers=auth(world.token(Role.LOGISTICS, "ACME")),
    ).json()
    errors = {a["error"] for d in log["items"] for a in d["log"]}
    assert len(errors) == 1 and errors.pop().startswith("refused: webhook host 127.0.0.1")


def test_secrets_have_the_standard_webhooks_form(app_client: TestClient, world: World) -> None:
    url = "http://127.0.0.1:9/hook"
    for bad, why in (
        ("0123456789abcdef0123456789", "must start with whsec_"),
        (
            "whsec_" + base64.b64encode(b"k" * 16).decode(),
            "24 to 64 random bytes (this one has 16)",
        ),
        ("whsec_" + "!" * 40, "must be whsec_ followed by base64"),
        ("whsec_" + base64.b64encode(b"k" * 80).decode(), "(this one has 80)"),
    ):
        r = _subscribe(app_client, world, url, secret=bad)
        assert r.status_code == 422, bad
        assert why in r.json()["detail"] and bad not in r.text
    good = "whsec_" + base64.b64encode(b"0123456789abcdefghijklmn").decode()
    r = _subscribe(app_client, world, url, secret=good)
    assert r.status_code == 201 and r.json()["secret"] is None  # yours: not shown back
    generated = _subscribe(app_client, world, url).json()["secret"]
    assert generated.startswith("whsec_")
    assert len(base64.b64decode(generated.removeprefix("whsec_"), validate=True)) >= 24


@pytest.mark.slow  # waits out a 3 s deadline
def test_scans_go_on_while_a_receiver_trickles_and_test_pings_are_capped(
    db: Database, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight test pings at once to a receiver that answers a byte every 0.3 s: four are
    sent (each cut at the 3 s deadline), four answer 429 at once, and scans at the
    same site all succeed meanwhile. Before: the ping held SQLite's write lock for as
    long as the receiver trickled (scans 503), and on PostgreSQL the pings took every
    request thread."""
    monkeypatch.setenv("MASTERLINE_WEBHOOK_DEADLINE_SECONDS", "3")
    get_settings.cache_clear()
    logistics = auth(world.token(Role.LOGISTICS, "ACME"))
    tech = auth(world.token(Role.TECHNICIAN))
    serials = [f"TRK{i:04d}" for i in range(10)]
    with db.session() as s:
        create_devices(s, delivery=world.acme_delivery, serials=serials)
    tls = ssl.create_default_context()
    with (
        hostile_receiver("trickle", trickle_every=0.3, trickle_bytes=200) as rx,
        running_server(db) as base,
        httpx.Client(base_url=base, timeout=120, verify=tls) as c,
    ):
        sub = c.post("/webhooks", json={"url": rx.url}, headers=logistics)
        assert sub.status_code == 201, sub.text
        pings: list[httpx.Response] = []
        lock = threading.Lock()

        def ping() -> None:
            with httpx.Client(base_url=base, timeout=120, verify=tls) as own:
                r = own.post(f"/webhooks/{sub.json()['id']}/test", headers=logistics)
                with lock:
                    pings.append(r)

        threads = [threading.Thread(target=ping) for _ in range(8)]
        for t in threads:
            t.start()
        # Every admitted ping is at the receiver, which keeps them all waiting.
        give_up = time.monotonic() + 60
        while (rx.accepted < 4 or len(pings) < 4) and time.monotonic() < give_up:
            time.sleep(0.02)
        assert rx.accepted == 4 and len(pings) == 4, (rx.accepted, len(pings))
        assert [p.status_code for p in pings] == [429] * 4
        scans = [
            c.post("/scan", json={"code": s, "bench_id": world.bench.id}, headers=tech)
            for s in serials
        ]
        for t in threads:
            t.join(timeout=90)
    assert [r.status_code for r in scans] == [200] * len(serials), [r.text for r in scans]
    sent = [p.json() for p in pings if p.status_code == 200]
    assert len(sent) == 4
    assert {(p["delivered"], p["error"]) for p in sent} == {(False, "no answer within 3 s")}
    assert len(rx.sent) == 4 and max(rx.sent) < 200, rx.sent


def test_a_huge_reply_leaves_a_short_clean_excerpt_in_the_log(
    app_client: TestClient, world: World, db: Database
) -> None:
    with hostile_receiver("huge") as rx:
        r = _subscribe(app_client, world, rx.url)
        assert r.status_code == 201, r.text
        make_ready(db, world.acme_delivery, ["HUGE0001"])
        assert send_due(db, policy=SenderPolicy(max_attempts=1)) > 0
    assert rx.sent and max(rx.sent) < 64 * 1024 * 1024, rx.sent
    log = app_client.get(
        f"/webhooks/{r.json()['id']}/deliveries",
        headers=auth(world.token(Role.LOGISTICS, "ACME")),
    ).json()
    attempts = [a for d in log["items"] for a in d["log"]]
    assert attempts and all(a["status_code"] == 200 for a in attempts)
    for a in attempts:
        excerpt = a["response_excerpt"]
        assert excerpt.startswith("[31mINTERNAL SECRET z") and len(excerpt) <= 200
        assert all(ch.isprintable() for ch in excerpt)
