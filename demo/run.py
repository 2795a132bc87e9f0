"""``make run``: the whole main job on the embedded default, end to end.

Starts a lab (4 Linux + 4 Windows laptops by default), the API and a worker in this
process; then, through the HTTP API like any client would: uploads a demo image per OS
(small generated raw disks, zstd-compressed), sets the client's configuration, imports a
delivery whose serials are the lab laptops', wires the bench slots to the laptops and
scans them in. One laptop gets a flipped byte on its disk, to show a failure and its
reason. The bench view prints until every run is finished; the server keeps running
(Ctrl-C stops it and the lab).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import secrets
import string
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import zstandard

from core.console import console
from core.db import Database, get_database
from core.settings import get_settings
from lab.bootcontrol import slot_options
from wiring import wire

MiB = 1024 * 1024
LINUX_MODEL = "Precision 3480"
WINDOWS_MODEL = "Latitude 5440"


def _image(path: Path, *, mib: int, seed: int) -> tuple[bytes, int, str]:
    """A small raw disk: half pseudo-random blocks, half zeros; returns the zstd bytes
    with the raw size and sha256."""
    rng = random.Random(seed)  # noqa: S311 - filler bytes, not a secret
    block = 256 * 1024
    raw = b"".join(
        rng.randbytes(block) if i % 2 == 0 else b"\0" * block for i in range(mib * MiB // block)
    )
    packed = zstandard.ZstdCompressor(level=3).compress(raw)
    path.write_bytes(packed)
    return packed, len(raw), hashlib.sha256(raw).hexdigest()


def ok(r: httpx.Response) -> Any:
    """The JSON of a successful answer; one line naming the call otherwise."""
    if r.status_code >= 400:
        raise RuntimeError(
            f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:300]}"
        )
    return r.json() if r.content else None


def serve_api(
    db: Database, *, host: str, port: int, cleanup: contextlib.ExitStack
) -> threading.Thread:
    """The API in a thread of this process (returned); ``cleanup`` stops it."""
    import uvicorn

    from api.app import create_app

    server = uvicorn.Server(
        uvicorn.Config(create_app(db), host=host, port=port, log_level="warning")
    )
    api = threading.Thread(target=server.run, name="api", daemon=True)
    api.start()
    cleanup.callback(api.join, 30)
    cleanup.callback(setattr, server, "should_exit", True)
    return api


def run_demo(*, host: str, port: int, stop_with_parent: bool = False) -> None:
    from demo import end as demo_end
    from demo.seed import DEMO_CLIENT, seed
    from lab.faults import Fault
    from lab.lab import Lab
    from provisioning.pipeline.engine import JobEngine
    from provisioning.pipeline.worker import config_from_env, start_companions
    from provisioning.runs.cli import runs_table

    # SIGTERM, SIGHUP and Ctrl-C stop everything below (see demo/end.py).
    demo_end.install_stop_signals()
    if stop_with_parent:
        demo_end.stop_with_parent()
    n_linux = int(os.environ.get("MASTERLINE_DEMO_LINUX", "4"))
    n_windows = int(os.environ.get("MASTERLINE_DEMO_WINDOWS", "4"))
    settings = get_settings()
    wire()
    token = seed()
    db = get_database()
    # A fresh serial prefix per run: the demo database keeps earlier runs' laptops.
    stamp = "".join(secrets.choice(string.ascii_uppercase) for _ in range(4))
    # Owned by this process: if it is killed outright, the lab stops by itself.
    lab = Lab(settings.data_dir / "demo-lab", keep_running=False)
    cleanup = contextlib.ExitStack()  # what was started, stopped in reverse order
    try:
        lab.reset()
        cleanup.callback(lab.down)
        console.print(f"starting the lab: {n_linux} Linux + {n_windows} Windows laptops…")
        laptops = lab.up_n(
            n_linux, disk_bytes=64 * MiB, model=LINUX_MODEL, serial_prefix=f"L{stamp}"
        )
        if n_windows:
            laptops += lab.up_n(
                0,
                windows=n_windows,
                disk_bytes=64 * MiB,
                model=WINDOWS_MODEL,
                serial_prefix=f"W{stamp}",
            )
        api = serve_api(db, host=host, port=port, cleanup=cleanup)
        stop = threading.Event()
        engine = JobEngine(db, config_from_env())
        worker = threading.Thread(
            target=engine.run_forever, args=(stop,), name="worker", daemon=True
        )
        worker.start()
        cleanup.callback(worker.join, 60)
        start_companions(db, stop)  # the forecast's refresher
        cleanup.callback(stop.set)
        base = f"http://{host}:{port}"
        http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        cleanup.callback(http.close)
        for _ in range(200):
            try:
                http.get("/openapi.json")
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        bench_id = _stage(
            http, lab, laptops, stamp=stamp, client=DEMO_CLIENT, work=settings.data_dir
        )
        broken = laptops[min(1, len(laptops) - 1)]
        lab.set_fault(broken.name, Fault.FLIPPED_BYTE, offset=4096)
        console.print(f"[yellow]injected a flipped byte on {broken.serial}'s disk[/yellow]")
        _scan_all(http, laptops, bench_id=bench_id)
        console.print(f"[bold green]Masterline is up[/bold green] at {base} (docs: {base}/docs)")
        console.print(f"  admin token: {token}")
        serials = {lp.serial for lp in laptops}
        rows: list[dict[str, Any]] = []
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            page = ok(http.get("/runs", params={"limit": 500}))
            mine = [r for r in page["items"] if r["serial"] in serials]
            latest = {r["device_id"]: r for r in mine}
            rows = sorted(latest.values(), key=lambda r: r["slot"] or 0)
            console.clear()
            console.print(runs_table(rows, title=f"bench {bench_id} — {time.strftime('%H:%M:%S')}"))
            if rows and all(r["status"] in ("succeeded", "failed", "aborted") for r in rows):
                break
            time.sleep(1.0)
        console.print(demo_end.final_summary(rows, base=base, token=token))
        while api.is_alive():
            api.join(timeout=1.0)
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
            console.print("stopping the server, the worker and the lab…")
    finally:
        with demo_end.signals_ignored():
            cleanup.close()


def _stage(
    http: httpx.Client, lab: Any, laptops: list[Any], *, stamp: str, client: str, work: Path
) -> int:
    families = sorted({lp.os_family for lp in laptops})
    for seed, family in enumerate(families):
        model = LINUX_MODEL if family == "linux" else WINDOWS_MODEL
        packed, raw_size, raw_sha = _image(work / f"demo-{family}.raw.zst", mib=8, seed=seed)
        image = ok(
            http.post(
                "/images",
                json={
                    "client_code": client,
                    "name": f"demo-{family}",
                    "version": stamp,
                    "os_family": family,
                    "format": "raw+zstd",
                    "size": len(packed),
                    "sha256": hashlib.sha256(packed).hexdigest(),
                    "raw_size": raw_size,
                    "raw_sha256": raw_sha,
                    "compatible_models": [{"vendor": "Dell", "model": model}],
                },
            )
        )
        ok(
            http.put(
                f"/images/{image['id']}/content",
                content=packed,
                headers={"Content-Type": "application/octet-stream"},
            )
        )
        console.print(
            f"uploaded image demo-{family} {stamp} ({len(packed)} bytes zstd, {raw_size} raw)"
        )
    # A collaboration tool from the client's own image store: the pipeline copies it onto
    # each laptop's disk in the provisioning environment (as an MSI on Windows, a .deb on
    # Linux), then configuration installs it from there.
    installer = f"Masterline demo collaboration tool {stamp}\n".encode()
    tool = ok(
        http.post(
            "/images",
            json={
                "client_code": client,
                "name": "demo-collab-tool",
                "version": stamp,
                "os_family": families[0],
                "format": "file",
                "size": len(installer),
                "sha256": hashlib.sha256(installer).hexdigest(),
            },
        )
    )
    ok(
        http.put(
            f"/images/{tool['id']}/content",
            content=installer,
            headers={"Content-Type": "application/octet-stream"},
        )
    )
    ok(
        http.post(
            f"/clients/{client}/configs",
            json={
                "hostname_pattern": "ACME-{serial}",
                "apps": [
                    {
                        "name": "CollabTool",
                        "source": {"kind": "store", "image_id": tool["id"]},
                        "verify": {"kind": "package", "name": "CollabTool"},
                    }
                ],
                "checks": ["image_hash", "hostname", "apps"],
            },
        )
    )
    console.print(
        f"client configuration: hostname pattern, app CollabTool from the image "
        f"store (image {tool['id']})"
    )
    delivery = ok(
        http.post(
            "/deliveries",
            json={
                "client_code": client,
                "vendor": "Dell",
                "order_reference": f"PO-LAB-{stamp}",
            },
        )
    )
    csv = "serial,vendor,model\n" + "".join(f"{lp.serial},Dell,{lp.model}\n" for lp in laptops)
    ok(
        http.post(
            f"/deliveries/{delivery['id']}/import",
            content=csv.encode(),
            headers={"Content-Type": "text/csv"},
        )
    )
    console.print(f"imported delivery PO-LAB-{stamp}: {len(laptops)} laptops")
    bench = ok(
        http.post(
            "/benches",
            json={"site_code": "PAR", "code": f"LAB-{stamp}", "slots": max(16, len(laptops))},
        )
    )
    for slot, lp in enumerate(laptops, start=1):
        ok(
            http.put(
                "/runs/endpoints",
                json={
                    "bench_id": bench["id"],
                    "slot": slot,
                    "host": lp.host,
                    "ssh_port": lp.ssh_port,
                    "ssh_user": lp.ssh_user,
                    "key_path": str(lp.client_key_path),
                    "known_hosts_path": str(lp.known_hosts_path),
                    "options": slot_options(lab.root, lp.name),
                },
            )
        )
    return int(bench["id"])


def _scan_all(http: httpx.Client, laptops: list[Any], *, bench_id: int) -> None:
    for slot, lp in enumerate(laptops, start=1):
        done = ok(http.post("/scan", json={"code": lp.serial, "bench_id": bench_id, "slot": slot}))
        console.print(f"scan {lp.serial} → {done['message']} ({done['device']['state']})")
