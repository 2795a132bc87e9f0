"""Structured logs: JSON lines with the request, run and laptop ids, and no secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from core import logs, vault
from core.principal import Role
from tests.conftest import auth
from tests.support.factories import World


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logs.configure(fmt="json")
    assert isinstance(handler, logging.StreamHandler)  # configure's: one on stderr
    handler.setStream(out)
    try:
        yield out
    finally:
        logging.getLogger().removeHandler(handler)


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_each_request_has_an_id_in_its_log_lines_and_its_answer(
    app_client: TestClient, world: World, captured: io.StringIO
) -> None:
    answer = app_client.get(
        "/me", headers={**auth(world.token(Role.TECHNICIAN)), "X-Request-ID": "bench-42.a"}
    )
    assert answer.headers["x-request-id"] == "bench-42.a"
    mine = [e for e in _lines(captured) if e.get("request_id") == "bench-42.a"]
    assert mine and mine[-1]["path"] == "/me" and mine[-1]["status"] == 200
    odd = app_client.get("/me", headers={"X-Request-ID": "no spaces\tor tabs"})
    assert odd.headers["x-request-id"] != "no spaces\tor tabs"  # replaced, not echoed


def test_run_and_laptop_ids_come_from_context(captured: io.StringIO) -> None:
    with logs.bound(run_id=7, laptop="ACME0001"):
        logging.getLogger("masterline.worker").info("step %s done", "stream")
    entry = _lines(captured)[-1]
    assert entry["run_id"] == 7 and entry["laptop"] == "ACME0001"
    assert entry["message"] == "step stream done" and entry["level"] == "info"


def test_no_secret_reaches_a_log_line(captured: io.StringIO) -> None:
    ciphertext = vault.encrypt_map({"preshared_key": "wg-psk-Zq9xT3", "password": "hunter2!!"})
    vault.decrypt_map(ciphertext)  # the worker holds them in clear from here on
    log = logging.getLogger("masterline.worker")
    log.info("configuring with psk wg-psk-Zq9xT3 and hunter2!!")
    log.warning("auth failed: password=correct-horse token: mlt_abcdefghijklmnopqrstuvwxyz")
    try:
        raise RuntimeError("ssh said: wg-psk-Zq9xT3 rejected")
    except RuntimeError:
        log.exception("step failed")
    text = captured.getvalue()
    for secret in ("wg-psk-Zq9xT3", "hunter2!!", "correct-horse", "mlt_abcdefghijklmnop"):
        assert secret not in text
    assert text.count("[redacted]") >= 5
    assert "password=[redacted]" in text
