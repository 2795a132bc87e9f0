"""What the pages do (their access is tests/console/test_access.py): intake's line
errors, the configuration editor's write-only secrets, dispatch, tokens, /metrics."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from core.db import Database
from core.principal import Role
from tests.conftest import auth
from tests.console.support import failed_device, sign_in
from tests.support.factories import World

HTMX = {"HX-Request": "true"}


def test_an_intake_preview_shows_each_error_on_its_line_and_writes_nothing(
    app_client: TestClient, world: World
) -> None:
    csrf = sign_in(app_client, world.token(Role.LOGISTICS, "ACME"))
    notice = b"serial,model\nNEW00001,Latitude 5440\nBAD SERIAL!,Latitude 5440\nNEW00003,\n"
    url = f"/console/deliveries/{world.acme_delivery.id}/import"
    preview = app_client.post(
        url,
        files={"file": ("notice.csv", notice, "text/csv")},
        data={"mode": "preview"},
        headers={"X-CSRF-Token": csrf, **HTMX},
    )
    assert preview.status_code == 200
    rows = re.findall(r'<tr class="bad" data-line="(\d+)">(.*?)</tr>', preview.text, re.S)
    lines = {int(n): body for n, body in rows}
    assert set(lines) == {3, 4}
    assert "BAD SERIAL!,Latitude 5440" in lines[3]  # the line itself, beside its error
    assert "2 erreurs : rien n" in preview.text
    page = app_client.get(f"/console/deliveries/{world.acme_delivery.id}")
    assert "NEW00001" not in page.text
    good = b"serial,model\nNEW00001,Latitude 5440\nNEW00002,Latitude 5440\n"
    done = app_client.post(
        url,
        files={"file": ("notice.csv", good, "text/csv")},
        data={"mode": "import"},
        headers={"X-CSRF-Token": csrf, **HTMX},
    )
    assert "Importé." in done.text
    listed = app_client.get("/deliveries/" + str(world.acme_delivery.id) + "/reconciliation")
    assert listed.json()["expected"] == 4


def test_configuration_secrets_are_write_only_and_kept_when_left_empty(
    app_client: TestClient, world: World
) -> None:
    csrf = sign_in(app_client, world.token(Role.DSI, "ACME"))
    document = (
        '{"hostname_pattern": "ACME-{serial}", "vpn": {"kind": "wireguard", '
        '"server": "vpn.acme.example", "settings": {"server_public_key": "pub"}}}'
    )
    first = app_client.post(
        "/console/configs/ACME",
        data={"csrf": csrf, "document": document, "secret_preshared_key": "s3cr3t-psk-value"},
        follow_redirects=False,
    )
    assert first.status_code == 303
    page = app_client.get("/console/configs/ACME")
    assert "s3cr3t-psk-value" not in page.text and "preshared_key" in page.text
    second = app_client.post(
        "/console/configs/ACME",
        data={"csrf": csrf, "document": document, "secret_private_key": "another-secret"},
        follow_redirects=False,
    )
    assert second.status_code == 303
    active = app_client.get("/clients/ACME/configs/active").json()
    assert active["version"] == 2
    assert sorted(active["vpn"]["secret_names"]) == ["preshared_key", "private_key"]
    bad = app_client.post(
        "/console/configs/ACME", data={"csrf": csrf, "document": '{"hostname_pattern": "a b"}'}
    )
    assert bad.status_code == 422 and "hostname_pattern" in bad.text


def test_a_ready_laptop_is_dispatched_from_the_form(
    app_client: TestClient, db: Database, world: World
) -> None:
    from inventory import lifecycle
    from inventory.models import Device
    from inventory.states import Event

    with db.session() as s:
        device = s.get(Device, failed_device(s, world, client="ACME")[0].id)
        assert device is not None
        for e in (Event.RETRY, Event.IMAGE, Event.CONFIGURE, Event.VERIFY, Event.DONE):
            lifecycle.apply(s, device, e, actor="test")
        serial = device.serial
    csrf = sign_in(app_client, world.token(Role.LOGISTICS, "ACME"))
    sent = app_client.post(
        "/console/logistics/dispatch",
        data={
            "serial": serial,
            "name": "Camille Martin",
            "email": "camille@acme.example",
            "address": "1 rue de la Paix, Paris",
            "carrier": "DHL",
            "tracking": "JD0001",
        },
        headers={"X-CSRF-Token": csrf, **HTMX},
    )
    assert sent.status_code == 200 and f"{serial} expédié" in sent.text
    status = app_client.get("/logistics/status", params={"serial": serial}).json()
    assert status["items"][0]["state"] == "dispatched"


def test_a_token_made_in_the_console_is_shown_once_and_revoked_there(
    app_client: TestClient, world: World
) -> None:
    csrf = sign_in(app_client, world.token(Role.ADMIN))
    made = app_client.post(
        "/console/admin/tokens",
        data={"name": "prometheus", "role": "monitoring"},
        headers={"X-CSRF-Token": csrf, **HTMX},
    )
    token = re.search(r'id="token-value">(mlt_[^<]+)<', made.text)
    assert token
    assert app_client.get("/metrics", headers=auth(token.group(1))).status_code == 200
    assert token.group(1) not in app_client.get("/console/admin").text
    token_id = app_client.get("/tokens", headers=auth(world.token(Role.ADMIN))).json()[-1]["id"]
    app_client.post(
        f"/console/admin/tokens/{token_id}/revoke", headers={"X-CSRF-Token": csrf, **HTMX}
    )
    assert app_client.get("/metrics", headers=auth(token.group(1))).status_code == 401


def test_metrics_count_scans_and_read_the_pipeline_at_scrape_time(
    app_client: TestClient, db: Database, world: World
) -> None:
    monitoring = auth(world.token(Role.MONITORING))

    def value(text: str, name: str) -> float:
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    before = app_client.get("/metrics", headers=monitoring).text
    scanned = app_client.post(
        "/scan",
        json={"code": "ACME0001", "bench_id": world.bench.id},
        headers=auth(world.token(Role.TECHNICIAN)),
    )
    assert scanned.status_code == 200
    with db.session() as s:
        failed_device(s, world, client="GLOBEX")
    after = app_client.get("/metrics", headers=monitoring)
    assert after.headers["content-type"].startswith("text/plain")
    name = 'masterline_scans_total{outcome="received"}'
    assert value(after.text, name) == value(before, name) + 1
    assert value(after.text, 'masterline_laptops{state="failed_imaging"}') == 1
    assert value(after.text, 'masterline_runs{status="failed",step="stream"}') == 1
    assert 'masterline_webhook_deliveries{status="pending"}' in after.text
    assert "masterline_db_pool_checked_out" in after.text
    assert "masterline_step_duration_seconds" in after.text
    # A bench token sees nothing of it.
    assert app_client.get("/metrics", headers=auth(world.token(Role.TECHNICIAN))).status_code == 403


def test_a_laptop_is_scanned_in_from_the_board(app_client: TestClient, world: World) -> None:
    csrf = sign_in(app_client, world.token(Role.TECHNICIAN))
    answer = app_client.post(
        f"/console/benches/{world.bench.id}/scan",
        data={"code": " acme0002 ", "slot": "5"},
        headers={"X-CSRF-Token": csrf, **HTMX},
    )
    assert answer.status_code == 200 and "ACME0002 reçu sur le slot 5." in answer.text
    again = app_client.post(
        f"/console/benches/{world.bench.id}/scan",
        data={"code": "ACME0002"},
        headers={"X-CSRF-Token": csrf, **HTMX},
    )
    assert "déjà été scanné" in again.text
    board = app_client.get(f"/console/benches/{world.bench.id}")
    assert 'id="slot-5" class="tile s-received' in board.text
