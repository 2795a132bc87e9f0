"""Bodies are read only after the caller is known, and never past their cap.

Against a real server process: what it consumed is read from ``/proc/<pid>/io``
(``rchar``: every byte its read calls returned, sockets included), not timed.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.principal import Role
from tests.conftest import auth
from tests.support.factories import World
from tests.support.server import server_process

MiB = 1024 * 1024


def _io(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


def _rss_peak(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _post_big(base: str, path: str, size: int, headers: dict[str, str]) -> bytes:
    """POST ``size`` bytes of JSON-looking body from a raw socket, sending until the
    server answers or closes; returns what it answered."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=120)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n{head}\r\n".encode()
    )
    chunk = b'{"pad":"' + b"x" * (MiB - 10) + b'",'

    def pump() -> None:
        sent = 0
        try:
            while sent < size:
                part = chunk[: size - sent]
                sock.sendall(part)
                sent += len(part)
        except OSError:
            pass  # the server closed: what we want

    sender = threading.Thread(target=pump, daemon=True)
    sender.start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        sock.close()
        sender.join(timeout=120)
    return answer


@pytest.mark.slow  # a real server and a large body
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_big_body_without_token_gets_401_unread(database_url: str, world: World) -> None:
    size = 64 * MiB
    with server_process(database_url) as (base, proc):
        before_read, before_peak = _io(proc.pid), _rss_peak(proc.pid)
        answer = _post_big(base, "/deliveries", size, {})
        consumed = _io(proc.pid) - before_read
        grown = _rss_peak(proc.pid) - before_peak
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"application/problem+json" in answer
    assert b"connection: close" in answer.lower()
    # Kernel buffers hold a few MiB; the server itself read next to nothing of 200 MiB.
    assert consumed < 16 * MiB, f"the server read {consumed} bytes"
    assert grown < 32 * MiB, f"the server grew by {grown} bytes"


@pytest.mark.slow  # a real server and a large body
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_json_body_over_the_cap_gets_413_and_is_not_read_further(
    database_url: str, world: World
) -> None:
    token = world.token(Role.ADMIN)
    env = {"MASTERLINE_MAX_JSON_BODY": str(256 * 1024)}
    with server_process(database_url, env=env) as (base, proc):
        before = _io(proc.pid)
        answer = _post_big(base, "/deliveries", 64 * MiB, auth(token))
        consumed = _io(proc.pid) - before
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in answer
    assert consumed < 16 * MiB, f"the server read {consumed} bytes"


def test_declared_length_over_the_cap_is_refused_before_reading(
    app_client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.settings import get_settings

    monkeypatch.setenv("MASTERLINE_MAX_JSON_BODY", "4096")
    get_settings.cache_clear()
    try:
        body = json.dumps({"client_code": "ACME", "vendor": "Dell", "order_reference": "X" * 5000})
        r = app_client.post(
            "/deliveries",
            content=body,
            headers={**auth(world.token(Role.ADMIN)), "Content-Type": "application/json"},
        )
    finally:
        monkeypatch.delenv("MASTERLINE_MAX_JSON_BODY")
        get_settings.cache_clear()
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    assert "4096" in r.json()["detail"]


def test_a_large_json_body_under_the_cap_is_parsed(app_client: TestClient, world: World) -> None:
    # Over the on-loop threshold: parsed in a worker thread, same result.
    body = json.dumps(
        {"client_code": "ACME", "vendor": "Dell", "order_reference": "PO-BIG"}
    ) + " " * (200 * 1024)
    headers = {**auth(world.token(Role.ADMIN)), "Content-Type": "application/json"}
    r = app_client.post("/deliveries", content=body, headers=headers)
    assert r.status_code == 201, r.text
    bad = app_client.post("/deliveries", content=body[:-10] + "{" * 10, headers=headers)
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"


def test_the_role_is_checked_before_the_body(app_client: TestClient, world: World) -> None:
    # A logistics token may not create clients: 403, whatever (invalid) body came with it.
    r = app_client.post(
        "/clients",
        content=b"not json at all",
        headers={**auth(world.token(Role.LOGISTICS, "ACME")), "Content-Type": "application/json"},
    )
    assert r.status_code == 403, r.text
