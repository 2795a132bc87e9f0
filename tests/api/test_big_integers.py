"""Every integer the API takes is a 64-bit one: 2^63 (or below -2^63) anywhere — path,
query, body — is a 422 problem+json, never a 500 from the database driver."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.db import Database
from core.principal import Role
from tests.conftest import auth
from tests.support.factories import World

HUGE = 2**63
TINY = -(2**63) - 1


def _unbounded(spec: dict[str, Any]) -> list[str]:
    """Integers in any operation's parameters or request body without both bounds."""
    comps = spec["components"]["schemas"]
    found: list[str] = []

    def walk(schema: dict[str, Any], where: str, seen: frozenset[str]) -> None:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                walk(comps[name], name, seen | {name})
            return
        if schema.get("type") == "integer" and not ("minimum" in schema and "maximum" in schema):
            found.append(where)
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in schema.get(key, []):
                walk(sub, where, seen)
        for name, sub in schema.get("properties", {}).items():
            walk(sub, f"{where}.{name}", seen)
        if isinstance(schema.get("items"), dict):
            walk(schema["items"], f"{where}[]", seen)
        if isinstance(schema.get("additionalProperties"), dict):
            walk(schema["additionalProperties"], f"{where}{{}}", seen)

    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for p in op.get("parameters", []):
                walk(p.get("schema", {}), f"{method.upper()} {path} {p['name']}", frozenset())
            for media in op.get("requestBody", {}).get("content", {}).values():
                walk(media.get("schema", {}), f"{method.upper()} {path} body", frozenset())
    return found


@pytest.mark.slow  # builds the whole OpenAPI document
def test_no_integer_is_left_unbounded_in_the_openapi(tmp_path: Any) -> None:
    spec = create_app(Database(f"sqlite:///{tmp_path / 'x.db'}")).openapi()
    assert _unbounded(spec) == []


def test_the_walker_finds_an_unbounded_integer() -> None:
    spec = {
        "paths": {
            "/x/{id}": {"get": {"parameters": [{"name": "id", "schema": {"type": "integer"}}]}}
        },
        "components": {"schemas": {}},
    }
    assert _unbounded(spec) == ["GET /x/{id} id"]


@pytest.mark.slow  # every integer of every route
def test_huge_integers_anywhere_are_422(app_client: TestClient, world: World, db: Database) -> None:
    headers = auth(world.token(Role.ADMIN))
    spec = app_client.get("/openapi.json").json()
    tried = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            params = op.get("parameters", [])
            ints = [p for p in params if _is_int(p.get("schema", {}))]
            for target in ints:
                for bad in (HUGE, TINY):
                    url = path
                    query: dict[str, Any] = {}
                    for p in params:
                        value: Any = bad if p is target else (1 if _is_int(p["schema"]) else "x")
                        if p["in"] == "path":
                            url = url.replace("{" + p["name"] + "}", str(value))
                        elif p is target:
                            query[p["name"]] = value
                    r = app_client.request(method.upper(), url, params=query, headers=headers)
                    assert r.status_code == 422, (method, url, query, r.status_code, r.text)
                    assert r.headers["content-type"] == "application/problem+json"
                    tried += 1
    assert tried > 40  # every id and cursor of the API
    # Bodies too.
    for method, url, body in (
        ("POST", "/scan", {"code": "SN1", "bench_id": HUGE}),
        ("POST", "/scan", {"code": "SN1", "bench_id": 1, "slot": HUGE}),
        ("POST", "/devices/1/attach", {"delivery_id": TINY}),
        ("POST", "/sites", {"code": "X", "name": "X", "max_bytes_per_second": HUGE}),
    ):
        r = app_client.request(method, url, json=body, headers=headers)
        assert r.status_code == 422, (url, body, r.text)
    # The largest 64-bit integer passes the edge: an unknown id on SQLite (64-bit ids),
    # out of the column's range on PostgreSQL (32-bit ids); never a 500.
    edge = app_client.get(f"/devices/{HUGE - 1}", headers=headers)
    assert edge.status_code == (404 if db.url.startswith("sqlite") else 422), edge.text
    assert app_client.get(f"/runs?cursor={2**31}", headers=headers).status_code in (200, 422)


def _is_int(schema: dict[str, Any]) -> bool:
    if schema.get("type") == "integer":
        return True
    return any(_is_int(s) for s in schema.get("anyOf", []))


def test_the_id_pattern_of_paths_is_what_the_walk_fills() -> None:
    assert re.sub(r"\{[a-z_]+\}", "1", "/devices/{device_id}/attach") == "/devices/1/attach"
