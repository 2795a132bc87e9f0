"""Webhooks against a real HTTP receiver on 127.0.0.1 (the only receivers tests use)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from core.db import Database
from core.principal import Role
from core.timeutil import utcnow
from inventory.models import DeviceEvent
from logistics.models import WebhookDelivery, WebhookSubscription
from logistics.sender import SenderPolicy, send_due
from tests.conftest import auth
from tests.logistics.conftest import PERSON, Receiver, make_ready
from tests.support.factories import World
from tests.support.waiting import eventually

REPO = Path(__file__).resolve().parents[2]


def _subscribe(
    client: TestClient, world: World, receiver: Receiver, types: list[str] | None = None
) -> dict[str, Any]:
    r = client.post(
        "/webhooks",
        json={"url": receiver.url, "event_types": types or ["*"]},
        headers=auth(world.token(Role.LOGISTICS, "ACME")),
    )
    assert r.status_code == 201, r.text
    body = dict(r.json())
    receiver.secret = body["secret"]
    return body


def test_subscription_rules_and_the_secret_is_never_shown_again(
    app_client: TestClient, world: World, receiver: Receiver, db: Database
) -> None:
    token = auth(world.token(Role.LOGISTICS, "ACME"))
    for url in ("ftp://127.0.0.1/x", "file:///etc/passwd", "http://user:pw@127.0.0.1/", "x"):
        r = app_client.post("/webhooks", json={"url": url}, headers=token)
        assert r.status_code == 422, url
    r = app_client.post(
        "/webhooks", json={"url": receiver.url, "event_types": ["device.nope"]}, headers=token
    )
    assert r.status_code == 422
    created = _subscribe(app_client, world, receiver)
    assert created["secret"].startswith("whsec_")
    listing = app_client.get("/webhooks", headers=token)
    one = app_client.get(f"/webhooks/{created['id']}", headers=token)
    for response in (listing, one):
        assert created["secret"] not in response.text and "secret" not in response.text
    with db.session(write=False) as s:
        stored = s.exec(select(WebhookSubscription)).one()
    assert created["secret"] not in stored.secret_encrypted  # encrypted at rest
    other = auth(world.token(Role.LOGISTICS, "GLOBEX"))
    assert app_client.get(f"/webhooks/{created['id']}", headers=other).status_code == 404
    tech = auth(world.token(Role.TECHNICIAN))
    assert app_client.get("/webhooks", headers=tech).status_code == 403
    # The test ping is signed like every message; the receiver checks the signature.
    r = app_client.post(f"/webhooks/{created['id']}/test", headers=token)
    assert r.json()["delivered"] is True, r.text
    assert receiver.bad_signatures == 0 and receiver.ids() == [r.json()["message_id"]]


def test_transitions_are_delivered_signed_with_retries_and_backoff(
    app_client: TestClient,
    world: World,
    receiver: Receiver,
    db: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sub = _subscribe(app_client, world, receiver, ["device.ready", "device.dispatched"])
    make_ready(db, world.acme_delivery, ["ACMER001"])
    make_ready(db, world.globex_delivery, ["GLBXR001"])  # another client: not delivered
    receiver.fail_first = 2
    policy = SenderPolicy(backoff_seconds=10, max_attempts=5)
    t0 = utcnow() + timedelta(seconds=1)
    clock = {"now": t0}

    def round_at(offset: float) -> int:
        clock["now"] = t0 + timedelta(seconds=offset)
        return send_due(db, policy=policy, clock=lambda: clock["now"])

    assert round_at(0) == 1  # 503
    assert round_at(9) == 0  # backoff: 10 s after the first failure
    assert round_at(10) == 1  # 503 again
    assert round_at(29) == 0  # then 20 s
    assert round_at(30) == 1  # delivered
    assert round_at(1000) == 0
    assert receiver.bad_signatures == 0
    assert len(receiver.received) == 1
    message = receiver.received[0]["body"]
    assert isinstance(message, dict)
    assert message["type"] == "device.ready"
    assert message["data"]["serial"] == "ACMER001"
    log = app_client.get(
        f"/webhooks/{sub['id']}/deliveries", headers=auth(world.token(Role.LOGISTICS, "ACME"))
    ).json()
    (delivery,) = log["items"]
    assert delivery["status"] == "delivered"
    assert [a["status_code"] for a in delivery["log"]] == [503, 503, 204]
    assert delivery["message_id"] == receiver.received[0]["id"]
    assert receiver.secret not in caplog.text


def test_failed_deliveries_give_up_then_replay_with_the_same_id(
    app_client: TestClient, world: World, receiver: Receiver, db: Database
) -> None:
    sub = _subscribe(app_client, world, receiver, ["device.ready"])
    make_ready(db, world.acme_delivery, ["ACMER001"])
    receiver.fail_first = 3
    policy = SenderPolicy(backoff_seconds=1, max_attempts=2)
    token = auth(world.token(Role.LOGISTICS, "ACME"))
    later = utcnow()
    for step in range(4):

        def clock(s: int = step) -> datetime:
            return later + timedelta(seconds=10 * s)

        send_due(db, policy=policy, clock=clock)
    log = app_client.get(f"/webhooks/{sub['id']}/deliveries", headers=token).json()
    assert [d["status"] for d in log["items"]] == ["failed"]
    assert log["items"][0]["attempts"] == 2
    r = app_client.post(f"/webhooks/{sub['id']}/replay", json={"failed_only": True}, headers=token)
    assert r.json() == {"requeued": 1, "created": 0}
    send_due(db, policy=policy)  # 3rd call to the receiver: still 503
    send_due(db, policy=policy, clock=lambda: utcnow() + timedelta(seconds=5))
    assert len(receiver.received) == 1
    # Replay everything after seq 0: the same event again, with the same webhook-id.
    r = app_client.post(f"/webhooks/{sub['id']}/replay", json={"since_seq": 0}, headers=token)
    assert r.json() == {"requeued": 1, "created": 0}
    send_due(db, policy=policy)
    ids = receiver.ids()
    assert len(ids) == 2 and ids[0] == ids[1]
    assert receiver.received[0]["body"] == receiver.received[1]["body"]
    assert receiver.bad_signatures == 0


@contextmanager
def _sender(db: Database, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "MASTERLINE_DATABASE_URL": db.url}
    # `masterline webhooks send`, through its Typer sub-app: the same command, without
    # importing every other domain at start-up (which costs seconds on a busy machine).
    code = "import sys; from logistics.cli_webhooks import webhooks_app; webhooks_app(sys.argv[1:])"
    cmd = [
        sys.executable,
        "-c",
        code,
        "send",
        "--interval",
        "0.05",
        "--backoff",
        "0.2",
        "--lease",
        "1",
        "--timeout",
        "5",
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)


def _wait_for(predicate: Any, *, limit: float = 90.0) -> bool:
    return bool(eventually(predicate, timeout=limit))


@pytest.mark.slow  # kills and restarts a sender process
def test_nothing_is_lost_when_the_sender_is_killed(
    app_client: TestClient, world: World, receiver: Receiver, db: Database, tmp_path: Path
) -> None:
    """SIGKILL the sender mid-delivery, make more transitions while it is dead, restart it:
    every event arrives at least once, always with the same webhook-id and body, signed."""
    _subscribe(app_client, world, receiver)
    make_ready(db, world.acme_delivery, ["ACMER001", "ACMER002", "ACMER003"])
    receiver.delay = 0.05
    log = tmp_path / "sender.log"
    with _sender(db, log) as first:
        assert _wait_for(lambda: len(receiver.received) >= 3), log.read_text()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=20)
    assert first.returncode == -signal.SIGKILL
    # The server goes on while no sender runs: these must not be lost either.
    token = auth(world.token(Role.LOGISTICS, "ACME"))
    for serial in ("ACMER001", "ACMER002"):
        r = app_client.post(
            "/dispatch",
            json={
                "serial": serial,
                "carrier": "DHL",
                "tracking": f"T-{serial}",
                "teleworker": PERSON,
            },
            headers=token,
        )
        assert r.status_code == 200, r.text
    with db.session(write=False) as s:
        since = s.exec(select(WebhookSubscription)).one().created_at
        expected = {
            f"msg_evt_{e.id}"
            for e in s.exec(select(DeviceEvent)).all()
            if e.at >= since and e.actor != "test-globex"
        }
    assert len(expected) == 3 * 7 + 2
    with _sender(db, log):
        assert _wait_for(lambda: expected <= set(receiver.ids())), log.read_text()
    assert set(receiver.ids()) == expected
    bodies: dict[str, Any] = {}
    for r in receiver.received:
        assert bodies.setdefault(str(r["id"]), r["body"]) == r["body"]
    assert receiver.bad_signatures == 0
    with db.session(write=False) as s:
        statuses = {d.status for d in s.exec(select(WebhookDelivery)).all()}
    assert statuses == {"delivered"}
    for value in PERSON.values():
        assert value not in log.read_text()
