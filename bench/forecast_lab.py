"""A lab wave with injected failures: the forecast at 10 %, 30 % and 50 % of completion
against the wave's actual end (``python -m bench.forecast lab``; docs/benchmarks.md).

Real lab laptops (sshd), the API and a worker in this process on a fresh SQLite file,
staged as the demo stages them (``demo/run.py``). Faults: one laptop on a slow link,
one whose disk flips a byte (its readback fails: the run fails), one whose link drops
mid-stream (retried, then failed). A technician loop clears a failed laptop's faults
and retries its run. The site is open day and night (seconds, not days, are at stake).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import string
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from bench import forecast_explain

N_LAPTOPS = int(os.environ.get("BENCH_FORECAST_LAPTOPS", "16"))
STREAMS = 4
POINTS = (0.1, 0.3, 0.5)
EXPLAIN = os.environ.get("BENCH_FORECAST_EXPLAIN", "") not in ("", "0")
KEEP = os.environ.get("BENCH_FORECAST_KEEP", "")
"""A folder: the database is copied there each time another laptop is ready, so that
``bench/forecast_replay.py`` can forecast each moment again with a changed model."""


def main() -> float:
    with tempfile.TemporaryDirectory(prefix="forecast-lab-") as tmp:
        os.environ["MASTERLINE_DATA_DIR"] = tmp
        os.environ["MASTERLINE_DATABASE_URL"] = f"sqlite:///{tmp}/masterline.db"
        return _run(Path(tmp))


def _run(tmp: Path) -> float:
    import httpx
    import uvicorn
    from sqlmodel import select

    from api.app import create_app
    from core.db import get_database
    from core.migrate import upgrade
    from core.settings import get_settings
    from core.timeutil import utcnow
    from demo.run import LINUX_MODEL, _scan_all, _stage, ok
    from demo.seed import DEMO_CLIENT, seed
    from forecast import service
    from inventory.models import Device, Site
    from inventory.states import DeviceState
    from lab.faults import Fault
    from lab.lab import Lab
    from provisioning.pipeline.engine import JobEngine
    from provisioning.pipeline.worker import config_from_env
    from wiring import wire

    get_settings.cache_clear()
    wire()
    db = get_database()
    upgrade(db.url)
    token = seed()
    with db.session() as s:
        site = s.exec(select(Site)).one()
        site.max_imaging_streams = STREAMS
        s.add(site)
        service.set_site_settings(s, site.id or 0, {"always_open": True, "tech_delay_minutes": 0})
    stamp = "".join(secrets.choice(string.ascii_uppercase) for _ in range(4))
    lab = Lab(tmp / "lab", keep_running=False)
    stop = threading.Event()
    cleanup = contextlib.ExitStack()
    with cleanup:
        cleanup.callback(lab.down)
        laptops = lab.up_n(
            N_LAPTOPS, disk_bytes=64 * 1024 * 1024, model=LINUX_MODEL, serial_prefix=f"F{stamp}"
        )
        server = uvicorn.Server(
            uvicorn.Config(create_app(db), host="127.0.0.1", port=0, log_level="warning")
        )
        api = threading.Thread(target=server.run, daemon=True)
        api.start()
        cleanup.callback(api.join, 30)
        cleanup.callback(setattr, server, "should_exit", True)
        for _ in range(400):
            if server.started:
                break
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        engine = JobEngine(db, config_from_env(worker_id=f"bench-{stamp}"))
        worker = threading.Thread(target=engine.run_forever, args=(stop,), daemon=True)
        worker.start()
        cleanup.callback(worker.join, 60)
        cleanup.callback(stop.set)
        http = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        cleanup.callback(http.close)
        bench_id = _stage(http, lab, laptops, stamp=stamp, client=DEMO_CLIENT, work=tmp)
        lab.set_fault(laptops[2].name, Fault.SLOW_LINK, bytes_per_second=1_500_000)
        lab.set_fault(laptops[4].name, Fault.FLIPPED_BYTE, offset=4096)
        lab.set_fault(laptops[7].name, Fault.SSH_DROP, after_bytes=2_000_000)
        by_serial = {lp.serial: lp for lp in laptops}
        started = utcnow()
        _scan_all(http, laptops, bench_id=bench_id)
        serials = set(by_serial)
        taken: dict[float, tuple[float, datetime | None, datetime]] = {}
        explained: dict[float, dict[str, object]] = {}
        kept: dict[int, str] = {}
        deadline = time.monotonic() + 1800
        delivery_id = None
        while time.monotonic() < deadline:
            with db.session(write=False) as s:
                devices = s.exec(select(Device).where(Device.serial.in_(serials))).all()  # type: ignore[attr-defined]
            delivery_id = devices[0].delivery_id
            assert delivery_id is not None, "the lab's laptops were scanned from a delivery"
            ready = sum(1 for d in devices if d.state == DeviceState.READY)
            for d in devices:
                if d.state in (
                    DeviceState.FAILED_IMAGING,
                    DeviceState.FAILED_CONFIGURING,
                    DeviceState.FAILED_VERIFYING,
                ):
                    lab.clear_faults(by_serial[d.serial].name)
                    runs = ok(http.get("/runs", params={"limit": 500}))["items"]
                    mine = [r for r in runs if r["device_id"] == d.id and r["status"] == "failed"]
                    for r in mine:
                        http.post(f"/runs/{r['id']}/retry")
            if KEEP and ready not in kept and ready < len(devices):
                kept[ready] = _keep(db.url, Path(KEEP) / f"at-{ready:02d}.db", utcnow())
            for point in POINTS:
                if point not in taken and ready >= point * len(devices):
                    now = utcnow()
                    with db.session(write=False) as s:
                        computed = service.compute(s, now=now, bottlenecks=False)
                    if EXPLAIN:
                        serial_of = {d.id: d.serial for d in devices if d.id is not None}
                        explained[point] = forecast_explain.at_point(
                            computed, started=started, serial_of=serial_of
                        )
                    fig = computed.figures[("delivery", delivery_id)]
                    p50 = datetime.fromisoformat(fig["ready_p50"]) if fig["ready_p50"] else None
                    taken[point] = (ready / len(devices), p50, now)
            if ready == len(devices):
                break
            time.sleep(0.5)
        with db.session(write=False) as s:
            from forecast import repository

            finished = repository.ready_at(s, [d.id for d in devices if d.id is not None])
            records = repository.step_records(s, since=started, bench_site={})
        end = max(finished.values())
        if KEEP:
            meta = {
                "started": started.isoformat(),
                "end": end.isoformat(),
                "delivery_id": delivery_id,
                "laptops": len(devices),
                "snapshots": kept,
            }
            (Path(KEEP) / "wave.json").write_text(json.dumps(meta, indent=1))
        if EXPLAIN:
            serial_of = {d.id: d.serial for d in devices if d.id is not None}
            actual = {serial_of[k]: (v - started).total_seconds() for k, v in finished.items()}
            forecast_explain.report(explained, actual=actual, records=records)
    span = (end - started).total_seconds()
    what = f"{len(laptops)} laptops, {STREAMS} live runs, faults on 3"
    print(f"lab wave: {what}; {span:.0f} s from scan-in to the last READY")
    worst = 0.0
    for point, (done, p50, at) in sorted(taken.items()):
        err = abs((p50 - end).total_seconds()) / span if p50 else float("inf")
        if point >= 0.3:
            worst = max(worst, err)
        said = f"{(p50 - started).total_seconds():.0f} s" if p50 else "none"
        print(
            f"  at {done:.0%} done ({(at - started).total_seconds():.0f} s in): all ready P50 "
            f"at {said}, actual {span:.0f} s: error {err:.1%} of the wave"
        )
    return worst


def _keep(url: str, path: Path, at: datetime) -> str:
    """Copy the SQLite database at ``url`` to ``path`` (a consistent online backup)."""
    import sqlite3

    from core.files import sqlite_path

    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    src = sqlite3.connect(str(sqlite_path(url)))
    dst = sqlite3.connect(str(path))
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return at.isoformat()


if __name__ == "__main__":
    sys.exit(int(main() > 0.10))
