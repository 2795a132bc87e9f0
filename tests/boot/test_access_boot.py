"""A PE's secrets open the PE routes and nothing else: an enrollment credential or an
agent token is refused (401) by every route that takes an API token, and never appears
in logs, errors or API output."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

from tests.api.test_access import ROUTE_CASES
from tests.boot.conftest import HOST_KEY_2, Boot, register
from tests.boot.test_registration import scan
from tests.conftest import BACKENDS, auth
from tests.support.routes import device_auth


def _path(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", template)


# Refused before any database read: one backend.
@pytest.mark.parametrize("backend", BACKENDS[:1])
def test_pe_secrets_open_no_other_route(client: TestClient, boot: Boot) -> None:
    scan(client, boot, "ACME0001")
    go = register(client, boot.credential, "ACME0001").json()
    secrets = {"enrollment credential": boot.credential, "agent token": go["agent_token"]}
    api_routes = [(r, m) for r, m in ROUTE_CASES if device_auth(r) is None]
    assert len(api_routes) > 50  # the walk sees the whole API
    violations = []
    for route, method in api_routes:
        for label, secret in secrets.items():
            kwargs: dict[str, object] = {"headers": auth(secret)}
            if method in ("POST", "PUT", "PATCH"):
                kwargs["json"] = {}
            with client.stream(method, _path(route.path), **kwargs) as r:
                if r.status_code != 401:
                    violations.append(f"{method} {route.path} with an {label}: {r.status_code}")
    assert not violations, "\n".join(violations)
    # And each secret opens only its own PE route.
    assert client.post("/boot/heartbeat", headers=auth(boot.credential)).status_code == 401
    assert register(client, go["agent_token"], "ACME0001").status_code == 401


def test_secrets_never_reach_logs_errors_or_api_output(
    client: TestClient, boot: Boot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    scan(client, boot, "ACME0001")
    created = client.post(
        "/boot/credentials", json={"name": "wave 4", "site_code": "PAR"}, headers=boot.admin
    ).json()
    secret = created["credential"]
    go = register(client, secret, "ACME0001").json()
    token = go["agent_token"]
    outputs = [
        client.post("/boot/heartbeat", headers=auth(token)).text,
        client.get("/boot/credentials", params={"include_revoked": True}, headers=boot.admin).text,
        client.get("/boot/pes", headers=boot.technician).text,
        client.get("/boot/attempts", headers=boot.technician).text,
        register(client, secret, "NOSUCH01").text,  # a refusal
        register(client, secret, "ACME0001", host_key=HOST_KEY_2).text,  # a new boot
        client.post("/boot/heartbeat", headers=auth(token)).text,  # the old token, refused
        client.delete(f"/boot/credentials/{created['id']}", headers=boot.admin).text,
        register(client, secret, "ACME0001").text,  # revoked
        client.get(f"/devices/{go['device_id']}", headers=boot.technician).text,
    ]
    for text in outputs:
        assert secret not in text and token not in text
    assert created["prefix"] == secret[:12]
    logged = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    assert secret not in logged and token not in logged
    assert secret[12:] not in logged and token[4:] not in logged
