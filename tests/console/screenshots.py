"""``make screenshots``: the bench board and the wave dashboard, in French, from a real
browser against a real server on a staged scene (docs/img/*.png).

``python -m tests.console.screenshots docs/img``
"""

from __future__ import annotations

import random
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from sqlmodel import select

from core import helpcode
from core.db import Database
from core.migrate import upgrade
from core.principal import SYSTEM, Role
from core.timeutil import utcnow
from inventory import lifecycle
from inventory.models import Device, DeviceEvent
from inventory.states import DeviceState, Event
from provisioning.runs import lifecycle as runs
from provisioning.runs.models import ProvisioningRun, RunStatus
from tests.support.factories import World, build_world, create_devices
from tests.support.server import running_server

MiB = 1024 * 1024
PATHS = {
    DeviceState.QUEUED: (Event.RECEIVE, Event.QUEUE),
    DeviceState.IMAGING: (Event.RECEIVE, Event.QUEUE, Event.IMAGE),
    DeviceState.CONFIGURING: (Event.RECEIVE, Event.QUEUE, Event.IMAGE, Event.CONFIGURE),
    DeviceState.VERIFYING: (
        Event.RECEIVE,
        Event.QUEUE,
        Event.IMAGE,
        Event.CONFIGURE,
        Event.VERIFY,
    ),
    DeviceState.READY: (
        Event.RECEIVE,
        Event.QUEUE,
        Event.IMAGE,
        Event.CONFIGURE,
        Event.VERIFY,
        Event.DONE,
    ),
    DeviceState.FAILED_IMAGING: (Event.RECEIVE, Event.QUEUE, Event.IMAGE, Event.FAIL),
    DeviceState.FAILED_VERIFYING: (
        Event.RECEIVE,
        Event.QUEUE,
        Event.IMAGE,
        Event.CONFIGURE,
        Event.VERIFY,
        Event.FAIL,
    ),
    DeviceState.RECEIVED: (Event.RECEIVE,),
    DeviceState.DISPATCHED: (
        Event.RECEIVE,
        Event.QUEUE,
        Event.IMAGE,
        Event.CONFIGURE,
        Event.VERIFY,
        Event.DONE,
        Event.DISPATCH,
    ),
}
# (state, step, progress %, error type, failed checks) of the bench's sixteen slots.
SLOTS = [
    (DeviceState.IMAGING, "stream", 62, None, None),
    (DeviceState.IMAGING, "stream", 38, None, None),
    (DeviceState.READY, None, None, None, None),
    (DeviceState.FAILED_IMAGING, "identify", None, "IdentityMismatch", None),
    (DeviceState.CONFIGURING, "configure", None, None, None),
    (DeviceState.IMAGING, "stream", 81, None, None),
    (DeviceState.VERIFYING, "gate", None, None, None),
    (DeviceState.QUEUED, None, None, None, None),
    (DeviceState.FAILED_VERIFYING, "gate", None, "GateFailed", ["vpn_profile"]),
    (DeviceState.IMAGING, "verify", None, None, None),
    (DeviceState.READY, None, None, None, None),
    (DeviceState.IMAGING, "stream", 12, None, None),
    (DeviceState.FAILED_IMAGING, "verify", None, "ChecksumMismatch", None),
    (DeviceState.CONFIGURING, "configure", None, None, None),
    (DeviceState.IMAGING, "stream", 47, None, None),
    (DeviceState.QUEUED, None, None, None, None),
]


def stage(db: Database) -> tuple[int, World]:
    """A wave in progress: one bench of sixteen slots, a delivery of 400 laptops with a
    day of history. Returns (bench id, the world)."""
    rng = random.Random(7)
    world = build_world(db)
    now = utcnow()
    with db.session() as s:
        from inventory import service as inventory
        from inventory.schemas import BenchCreate

        bench = inventory.create_bench(s, BenchCreate(site_code="PAR", code="A1", slots=16))
        serials = [f"5CG{4100 + n:04d}X{n % 7}" for n in range(400)]
        devices = create_devices(
            s, delivery=world.acme_delivery, serials=serials, model="Latitude 5440"
        )
        for n, (state, step, pct, error, checks) in enumerate(SLOTS, start=1):
            device = devices[n - 1]
            device.bench_id, device.slot = bench.id, n
            _move(s, device, state, step, pct, error, checks)
        spread = [DeviceState.READY] * 170 + [DeviceState.DISPATCHED] * 60
        spread += [DeviceState.RECEIVED] * 20 + [DeviceState.FAILED_IMAGING] * 4
        for device, state in zip(devices[len(SLOTS) :], spread, strict=False):
            _move(s, device, state, "stream", None, "ConnectFailed", None)
        s.flush()
        # A day of history: moves spread over the last 24 hours, busier in the morning.
        for event in s.exec(select(DeviceEvent).where(DeviceEvent.to_state != "expected")):
            hours = rng.triangular(0, 24, 20)
            event.at = now - timedelta(hours=hours, minutes=rng.randint(0, 59))
            s.add(event)
        for device in devices:
            device.state_changed_at = now - timedelta(minutes=rng.randint(2, 300))
            s.add(device)
        bench_id = bench.id or 0
    return bench_id, world


def forecast_and_desk(db: Database, world: World) -> int:
    """The forecast of the wave with a committed date on its delivery, and a help desk's
    laptops (staged, shipped, with articles). Returns the laptop to look up."""
    from forecast import service as forecast
    from tests.helpdesk.conftest import build_desk

    desk = build_desk(db, world)
    with db.session() as s:
        tomorrow = (utcnow() + timedelta(days=1)).date()
        forecast.set_commitment(s, world.acme_delivery.id or 0, SYSTEM, committed=tomorrow)
    forecast.refresh(db)
    return desk.ids["ACMEH002"]


def _move(
    s: object,
    device: Device,
    state: DeviceState,
    step: str | None,
    pct: int | None,
    error: str | None,
    checks: list[str] | None,
) -> None:
    from sqlmodel import Session

    assert isinstance(s, Session)
    for event in PATHS[state]:
        if event is Event.FAIL:
            lifecycle.apply(s, device, event, actor="worker", details={"error": error})
        elif event is Event.DISPATCH:
            lifecycle.apply(s, device, event, actor="logistics:demo")
        else:
            lifecycle.apply(s, device, event, actor="worker")
    if Event.QUEUE not in PATHS[state]:
        return
    # The run as a worker would have left it (a picture: written whole, not replayed).
    names = ["identify", "pick_disk", "stream", "verify", "installers", "reboot", "configure"]
    failed = state in DeviceState.failed()
    done = state in (DeviceState.READY, DeviceState.DISPATCHED)
    status = (
        RunStatus.FAILED
        if failed
        else RunStatus.SUCCEEDED
        if done
        else RunStatus.QUEUED
        if state is DeviceState.QUEUED
        else RunStatus.RUNNING
    )
    total = 40 * 1024 * MiB if pct is not None else 0
    rate = float(95 * MiB + (pct or 0) * MiB) if pct is not None else 0.0
    sent = total * (pct or 0) // 100
    run = ProvisioningRun(
        device_id=device.id or 0,
        client_id=device.client_id,
        status=status,
        step_name=None if done else step,
        step_index=names.index(step) if step in names else 7,
        failed_step=step if failed else None,
        last_error=f"{step}: {error}" if failed else None,
        progress_total=total,
        progress_bytes=sent,
        rate_bps=rate,
        eta_seconds=(total - sent) / rate if rate else None,
    )
    s.add(run)
    s.flush()
    if failed:
        runs.add_event(
            s,
            run,
            step=step or "",
            kind="failed",
            message=run.last_error or "",
            details={"error": error, "failed_checks": checks or []},
        )


def main(argv: list[str]) -> int:
    from playwright.sync_api import sync_playwright

    from tests.console.browser import CHROMIUM, FLAGS

    out = Path(argv[0] if argv else "docs/img")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'scene.db'}"
        upgrade(url)
        db = Database(url)
        bench_id, world = stage(db)
        laptop = forecast_and_desk(db, world)
        token = world.token(Role.ADMIN)
        with running_server(db) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_page(locale="fr-FR", viewport={"width": 1600, "height": 1000})
            page.goto(f"{base}/console/sign-in")
            page.get_by_label("Jeton").fill(token)
            page.get_by_role("button", name="Se connecter").click()
            page.goto(f"{base}/console/benches/{bench_id}")
            page.locator("#live-status.ok").wait_for()
            page.screenshot(path=str(out / "bench-board.png"), full_page=True)
            page.goto(f"{base}/console/waves")
            page.locator("#live-status.ok").wait_for()
            page.screenshot(path=str(out / "wave-dashboard.png"), full_page=True)
            page.goto(f"{base}/console/helpdesk")
            page.locator("input[name=q]").fill(helpcode.pretty(helpcode.encode(laptop)))
            page.get_by_role("button", name="Rechercher").click()
            page.locator(f"#card-{laptop}").wait_for()
            page.screenshot(path=str(out / "helpdesk-card.png"), full_page=True)
            browser.close()
        db.dispose()
    print(f"screenshots in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
