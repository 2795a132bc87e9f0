"""Logistics fixtures: READY laptops made by walking the real lifecycle, a webhook
receiver on 127.0.0.1 that verifies Standard Webhooks signatures, a raw TCP "printer"."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlmodel import Session

from core.db import Database
from core.settings import get_settings
from inventory import lifecycle
from inventory import repository as inventory_repo
from inventory.models import Delivery, Device
from inventory.states import Event
from tests.support.factories import World, create_devices

WALK_TO_READY = (Event.RECEIVE, Event.QUEUE, Event.IMAGE, Event.CONFIGURE, Event.VERIFY, Event.DONE)


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fixed MASTERLINE_SECRET_KEY, so no key file is generated in the repository and
    sender subprocesses (which inherit the environment) can decrypt webhook secrets; and
    127.0.0.1 allowed as a webhook destination."""
    monkeypatch.setenv("MASTERLINE_SECRET_KEY", "logistics-test-key")
    # The tests' receivers listen on 127.0.0.1, which webhooks refuse by default (SSRF):
    # they go through the allow-list, as an on-premise receiver would.
    monkeypatch.setenv("MASTERLINE_WEBHOOK_ALLOW_NETWORKS", "127.0.0.1/32")
    get_settings.cache_clear()
    yield "logistics-test-key"
    get_settings.cache_clear()


PERSON = {
    "name": "Amélie Poulain",
    "email": "amelie.poulain@acme.example",
    "phone": "+33 6 12 34 56 78",
    "address": "15 rue des Trois Frères, 75018 Paris",
}


def walk_to_ready(session: Session, device: Device) -> Device:
    assert device.id is not None
    locked = inventory_repo.get_device_for_update(session, device.id)
    assert locked is not None
    for event in WALK_TO_READY:
        lifecycle.apply(session, locked, event, actor="test")
    return locked


def make_ready(
    db: Database, delivery: Delivery, serials: list[str], *, tags: bool = True
) -> list[int]:
    """New devices in ``delivery``, walked EXPECTED → … → READY; returns their ids."""
    with db.session() as session:
        devices = create_devices(session, delivery=delivery, serials=serials)
        for d in devices:
            if tags:
                d.asset_tag = "AT-" + d.serial
            session.add(d)
        session.flush()
        for d in devices:
            walk_to_ready(session, d)
        return [d.id for d in devices if d.id is not None]


@pytest.fixture
def ready(db: Database, world: World) -> list[int]:
    """Three READY ACME laptops (ACMER001..3) and one READY GLOBEX laptop (GLBXR001)."""
    ids = make_ready(db, world.acme_delivery, ["ACMER001", "ACMER002", "ACMER003"])
    ids += make_ready(db, world.globex_delivery, ["GLBXR001"])
    return ids


# A webhook receiver.
def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks verification, written from the spec (not our signer)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if "," in s]
    return any(hmac.compare_digest(expected, o) for o in offered)


@dataclass
class Receiver:
    url: str
    secret: str = ""
    fail_first: int = 0
    delay: float = 0.0
    received: list[dict[str, object]] = field(default_factory=list)
    bad_signatures: int = 0
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ids(self) -> list[str]:
        with self.lock:
            return [str(r["id"]) for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if state.delay:
                time.sleep(state.delay)  # a slow endpoint: a sender can die mid-request
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                state.calls += 1
                failing = state.calls <= state.fail_first
                ok = bool(state.secret) and verify(state.secret, headers, body)
                if not ok:
                    state.bad_signatures += 1
                if not failing and ok:
                    state.received.append({"id": headers["webhook-id"], "body": json.loads(body)})
            self.send_response(503 if failing else (204 if ok else 401))
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# A raw TCP printer.
@dataclass
class Printer:
    uri: str
    jobs: list[bytes] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def printer() -> Iterator[Printer]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    sock.settimeout(0.2)
    state = Printer(uri=f"tcp://127.0.0.1:{sock.getsockname()[1]}")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                chunks = []
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                state.jobs.append(b"".join(chunks))
                state.done.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        sock.close()
        thread.join(timeout=10)
