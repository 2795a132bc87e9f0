"""Sign-in by token, the session cookie, CSRF, sign-out, expiry, revocation."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from console.deps import SESSION_COOKIE
from core.db import Database
from core.principal import Role
from tests.conftest import auth
from tests.console.support import sign_in
from tests.support.factories import World


def test_a_token_opens_a_session_whose_cookie_is_httponly_and_samesite(
    app_client: TestClient, world: World
) -> None:
    form = app_client.get("/console/sign-in")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce
    answer = app_client.post(
        "/console/sign-in",
        data={"token": world.token(Role.TECHNICIAN), "nonce": nonce.group(1), "next": "/console/"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/console/benches"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=" in cookie
    assert "Secure" not in cookie  # plain HTTP here; Secure under HTTPS (next test)
    # The browser holds a session key, never the token.
    assert world.token(Role.TECHNICIAN) not in cookie


def test_the_cookie_is_secure_over_https(db: Database, world: World) -> None:
    from api.app import create_app

    with TestClient(create_app(db), base_url="https://console.test") as client:
        form = client.get("/console/sign-in")
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
        assert nonce
        answer = client.post(
            "/console/sign-in",
            data={"token": world.token(Role.ADMIN), "nonce": nonce.group(1)},
            follow_redirects=False,
        )
        assert "Secure" in answer.headers["set-cookie"]


def test_a_bad_token_or_a_missing_nonce_opens_nothing(app_client: TestClient, world: World) -> None:
    form = app_client.get("/console/sign-in")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce
    bad = app_client.post("/console/sign-in", data={"token": "mlt_nope", "nonce": nonce.group(1)})
    assert bad.status_code == 401 and "Jeton inconnu ou révoqué" in bad.text
    assert SESSION_COOKIE not in app_client.cookies
    # A sign-in posted from elsewhere (no nonce cookie of ours): login CSRF refused.
    app_client.cookies.clear()
    forged = app_client.post(
        "/console/sign-in", data={"token": world.token(Role.ADMIN), "nonce": "guess"}
    )
    assert forged.status_code == 403 and SESSION_COOKIE not in app_client.cookies


def test_a_form_without_the_session_csrf_token_changes_nothing(
    app_client: TestClient, world: World
) -> None:
    csrf = sign_in(app_client, world.token(Role.ADMIN))
    refused = app_client.post("/console/admin/clients", data={"code": "NEW", "name": "New"})
    assert refused.status_code == 403
    wrong = app_client.post(
        "/console/admin/clients", data={"code": "NEW", "name": "New", "csrf": "x" * 43}
    )
    assert wrong.status_code == 403
    assert "NEW" not in app_client.get("/console/admin").text
    made = app_client.post(
        "/console/admin/clients",
        data={"code": "NEW", "name": "New"},
        headers={"X-CSRF-Token": csrf, "HX-Request": "true"},
    )
    assert made.status_code == 200 and "NEW" in made.text


def test_the_api_accepts_the_session_only_with_csrf_on_writes(
    app_client: TestClient, world: World
) -> None:
    csrf = sign_in(app_client, world.token(Role.DSI, "ACME"))
    assert app_client.get("/me").json()["role"] == "dsi"
    body = {"name": "img", "version": "1", "os_family": "linux", "size": 1, "sha256": "a" * 64}
    assert app_client.post("/images", json=body).status_code == 403
    assert app_client.post("/images", json=body, headers={"X-CSRF-Token": csrf}).status_code == 201


def test_sign_out_ends_the_session(app_client: TestClient, world: World) -> None:
    csrf = sign_in(app_client, world.token(Role.TECHNICIAN))
    key = app_client.cookies[SESSION_COOKIE]
    out = app_client.post("/console/sign-out", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    # Even a copy of the old cookie is worthless now.
    app_client.cookies.set(SESSION_COOKIE, key)
    again = app_client.get("/console/benches", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"].startswith("/console/sign-in")


def test_a_revoked_token_ends_its_sessions_at_once(
    app_client: TestClient, db: Database, world: World
) -> None:
    from api import service as tokens

    with db.session() as s:
        row, clear = tokens.create_token(s, name="shift", role=Role.TECHNICIAN)
    sign_in(app_client, clear)
    assert app_client.get("/console/benches", follow_redirects=False).status_code == 303
    assert app_client.get(f"/console/benches/{world.bench.id}").status_code == 200
    revoked = app_client.delete(f"/tokens/{row.id}", headers=auth(world.token(Role.ADMIN)))
    assert revoked.status_code == 200
    gone = app_client.get(f"/console/benches/{world.bench.id}", follow_redirects=False)
    assert gone.status_code == 303


def test_a_session_expires(app_client: TestClient, db: Database, world: World) -> None:
    from datetime import timedelta

    from sqlmodel import select

    from console.models import WebSession
    from core.timeutil import utcnow

    sign_in(app_client, world.token(Role.TECHNICIAN))
    assert app_client.get(f"/console/benches/{world.bench.id}").status_code == 200
    with db.session() as s:  # the shift is over
        for row in s.exec(select(WebSession)).all():
            row.expires_at = utcnow() - timedelta(seconds=1)
            s.add(row)
    page = app_client.get(f"/console/benches/{world.bench.id}", follow_redirects=False)
    assert page.status_code == 303


def test_next_never_leaves_the_console(app_client: TestClient, world: World) -> None:
    form = app_client.get("/console/sign-in?next=https://evil.example/")
    assert 'name="next" value="/console/"' in form.text
    form = app_client.get("/console/sign-in?next=//evil.example/console/")
    assert 'name="next" value="/console/"' in form.text
