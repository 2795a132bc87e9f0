"""The console in a real browser (Chromium through Playwright) against a real server:
a real worker imaging real lab laptops under the eyes of an open bench board, a retry
from the board with the keyboard alone, an intake file's line error, a browser upload
that resumes after a reload, in French and in English."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Request, expect

from core.db import Database
from core.principal import SYSTEM, Role
from core.settings import get_settings
from lab.faults import Fault
from lab.lab import Lab
from tests.console.browser import browser, context, sign_in
from tests.support.factories import World
from tests.support.harness import Bench, local_store, publish_image, worker_process
from tests.support.images import make_image
from tests.support.lab import lab
from tests.support.server import running_server
from tests.support.waiting import eventually

__all__ = ["browser", "context", "lab"]  # fixtures

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("backend", ["sqlite"], indirect=True),
]

PSK = "PSK-console-never-log-5b1e"
WIREGUARD = {
    "hostname_pattern": "ACME-{serial}",
    "vpn": {
        "kind": "wireguard",
        "server": "vpn.acme.example",
        "port": 51820,
        "settings": {
            "server_public_key": "x" * 43 + "=",
            "allowed_ips": "10.0.0.0/8",
            "address": "10.8.0.2/32",
        },
        "device_secret": "generate",
        "secrets": {"preshared_key": PSK},
    },
    "checks": ["image_hash", "hostname", "vpn_profile"],
}


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with local_store(tmp_path, monkeypatch):
        yield


def test_the_board_follows_a_real_worker_and_a_failure_is_retried_with_the_keyboard(
    db: Database, world: World, lab: Lab, tmp_path: Path, store: None, context: BrowserContext
) -> None:
    from images import configs
    from images.schemas import ClientConfigBody

    image = make_image(tmp_path / "img", mib=4)
    assert world.acme.id is not None
    publish_image(db, client_id=world.acme.id, image=image, os_family="linux")
    with db.session() as s:
        configs.set_config(s, "ACME", ClientConfigBody.model_validate(WIREGUARD), SYSTEM)
    bench = Bench(db=db, world=world, lab=lab, tmp=tmp_path)
    broken = bench.plug("ACME0001", slot=1)
    bench.lab.set_fault(broken.name, Fault.DISK_FULL, after_bytes=1024 * 1024)
    bench.plug("ACME0002", slot=2)
    page = context.new_page()
    with (
        running_server(db) as base,
        worker_process(db, tmp_path, extra_env={"MASTERLINE_LOG_FORMAT": "json"}),
    ):
        sign_in(page, base, world.token(Role.TECHNICIAN))
        expect(page).to_have_url(re.compile(r"/console/benches/\d+$"))
        expect(page.locator("#live-status")).to_have_text("en direct")
        # Scanned in while the board is open: everything below arrives by the live stream.
        bench.scan("ACME0001", slot=1)
        bench.scan("ACME0002", slot=2)
        ready = page.locator("#slot-2")
        expect(ready).to_contain_text("ACME0002")
        expect(ready.locator(".state")).to_have_text("prêt")
        failed = page.locator("#slot-1")
        expect(failed).to_have_class(re.compile(r"\bfailed\b"))
        expect(failed.locator(".cause")).to_contain_text(
            "Le disque du portable est trop petit pour"
        )
        # Keyboard only: skip link, into the board, across and back, R, Enter.
        bench.lab.clear_faults(broken.name)
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Aller au contenu")).to_be_focused()
        page.keyboard.press("Enter")
        # Past the scan field and its options, to the first slot.
        for _ in range(12):
            if page.evaluate("document.activeElement.id") == "slot-1":
                break
            page.keyboard.press("Tab")
        expect(failed).to_be_focused()
        page.keyboard.press("ArrowRight")
        expect(ready).to_be_focused()
        page.keyboard.press("ArrowLeft")
        expect(failed).to_be_focused()
        page.keyboard.press("r")
        dialog = page.locator("dialog#confirm")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("Relancer ACME0001 ?")
        page.keyboard.press("Enter")
        expect(page.locator("#messages")).to_contain_text("ACME0001 : relance en file")
        expect(failed.locator(".state")).to_have_text("prêt")
        expect(page.locator("#slot-1")).to_be_focused()  # focus survived the live updates
        page.screenshot(path=str(tmp_path / "board.png"))
    # The worker's JSON log: ids on its lines, never a secret of the run.
    logs = b"".join(p.read_bytes() for p in tmp_path.glob("worker-*.log")).decode()
    entries = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(e.get("run_id") and e.get("laptop") == "ACME0001" for e in entries)
    secrets = [PSK]
    with db.session() as s:
        from sqlmodel import col, select

        from images.models import ClientConfig
        from inventory.models import Device

        config = s.exec(select(ClientConfig).where(col(ClientConfig.active))).one()
        for serial in ("ACME0001", "ACME0002"):
            device = s.exec(select(Device).where(Device.serial == serial)).one()
            secrets += [v for v in configs.device_secrets(s, config, device).values() if v]
    assert len(secrets) >= 3
    for secret in secrets:
        assert secret not in logs


def test_an_intake_file_shows_its_line_error_in_english(
    db: Database, world: World, context: BrowserContext, tmp_path: Path
) -> None:
    notice = tmp_path / "notice.csv"
    notice.write_text("serial,model\nOK000001,Latitude 5440\nNOT A SERIAL!,Latitude 5440\n")
    page = context.new_page()
    with running_server(db) as base:
        sign_in(page, base, world.token(Role.LOGISTICS, "ACME"))
        page.get_by_role("button", name="EN").click()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        page.goto(f"{base}/console/deliveries/{world.acme_delivery.id}")
        page.get_by_label("Ship notice file").set_input_files(str(notice))
        page.get_by_role("button", name="Preview").click()
        line = page.locator('tr[data-line="3"]')
        expect(line).to_contain_text("NOT A SERIAL!,Latitude 5440")
        expect(page.locator("#import-result")).to_contain_text("1 error: nothing was imported.")
        page.get_by_role("button", name="FR").click()
        expect(page.get_by_role("heading", name="Livraison PO-ACME-1")).to_be_visible()


def test_a_browser_upload_resumes_after_a_reload(
    db: Database,
    world: World,
    context: BrowserContext,
    tmp_path: Path,
    store: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chunk = 64 * 1024
    monkeypatch.setenv("MASTERLINE_CONSOLE_UPLOAD_CHUNK_BYTES", str(chunk))
    get_settings.cache_clear()
    installer = tmp_path / "agent-1.2.msi"
    installer.write_bytes(os.urandom(8 * chunk))
    page = context.new_page()
    patches: list[Request] = []
    page.on("request", lambda r: patches.append(r) if r.method == "PATCH" else None)
    gate = UploadGate(let_through=2)

    with running_server(db, wrap=gate.around) as base:
        sign_in(page, base, world.token(Role.DSI, "ACME"), then="/console/images")
        page.get_by_label("Nom", exact=True).fill("agent")
        page.get_by_label("Version", exact=True).fill("1.2")
        page.get_by_label("Format").select_option("file")
        page.get_by_label("Fichier", exact=True).set_input_files(str(installer))
        page.get_by_role("button", name="Envoyer", exact=True).click()
        eventually(lambda: _upload_offset(db, "agent") == 2 * chunk, timeout=120)
        page.reload()  # the page is gone; the browser keeps nothing of the upload
        gate.open = True
        row = page.locator("tr", has_text="agent")
        expect(row.locator("progress")).to_have_attribute("value", str(2 * chunk))
        patches.clear()
        page.get_by_label("Reprendre agent 1.2").set_input_files(str(installer))
        expect(page.locator("#upload-status")).to_contain_text("Envoyée et vérifiée")
        assert patches[0].headers["upload-offset"] == str(2 * chunk)  # resumed, not restarted
        expect(page.locator("tr", has_text="agent").locator(".badge")).to_have_text("disponible")
    get_settings.cache_clear()
    with db.session() as s:
        from images import service as images

        (row_,) = [r for r in images.list_images(s, SYSTEM, name="agent") if r.version == "1.2"]
        assert row_.stored_sha256 == hashlib.sha256(installer.read_bytes()).hexdigest()


def _upload_offset(db: Database, name: str) -> int:
    from sqlmodel import select

    from images.models import Image

    with db.session(write=False) as s:
        row = s.exec(select(Image).where(Image.name == name)).first()
        return row.upload_offset if row is not None else -1


class UploadGate:
    """ASGI middleware: after ``let_through`` chunks (tus PATCHes), answers 503 to every
    further one until ``open``: the server holds exactly that many chunks, whatever the
    timing of the browser's retries."""

    def __init__(self, *, let_through: int) -> None:
        self.let_through = let_through
        self.seen = 0
        self.open = False

    def around(self, app: Any) -> Any:
        async def gated(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["method"] == "PATCH" and not self.open:
                self.seen += 1
                if self.seen > self.let_through:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 503,
                            "headers": [(b"tus-resumable", b"1.0.0")],
                        }
                    )
                    await send({"type": "http.response.body", "body": b""})
                    return
            await app(scope, receive, send)

        return gated
