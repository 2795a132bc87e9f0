"""``masterline demo run --vms N``: the demo with N QEMU laptops instead of lab processes,
from power-on to READY with nothing wired (docs/boot.md, "Rehearse with VMs").

What it does, printing each step: the API on the host (for you, and for this demo's own
calls), the demo OS image (``lab/demo_os.py``: built once from Debian packages, then
kept in the data directory) uploaded for the demo client with its configuration, a
delivery of N laptops, a bench of its own at PAR, PAR's worker key, the N laptops scanned
in; then ``lab up --vms N``'s bench (``lab/vm_bench.py``: a namespace with dnsmasq, an API
for the PEs and a worker, all on this database) whose VMs network-boot Masterline's PE,
register, and are imaged, rebooted from their disks, configured and checked. The bench
view prints until every run is finished; Ctrl-C stops everything (``lab down``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from core.console import console
from demo.run import ok, serve_api
from lab.errors import InvalidLabInput

MAX_VMS = 8
"""Each TCG guest takes a core for minutes: more than a few is a bench, not a demo."""
SUBNET = "10.78.0"
VENDOR, MODEL = "QEMU Lab", "Masterline VM"


def parse_vm_count(text: str) -> int:
    """``--vms``'s value. :raises InvalidLabInput: not a whole number from 1 to
    ``MAX_VMS`` (one line, like every bad input of the CLI)."""
    value = text.strip()
    if not value.isdigit() or not 1 <= int(value) <= MAX_VMS:
        raise InvalidLabInput(f"--vms must be a whole number from 1 to {MAX_VMS}, not {text!r}")
    return int(value)


def preflight(count: int) -> None:
    """What the VM demo needs, checked before anything starts.
    :raises InvalidLabInput: not root, no QEMU, no PE in the catalogue."""
    if os.geteuid() != 0:
        raise InvalidLabInput("VM laptops need root (network namespace, TAP devices)")
    if shutil.which("qemu-system-x86_64") is None or not Path("/usr/sbin/dnsmasq").exists():
        raise InvalidLabInput("QEMU or dnsmasq is missing: make system-deps")
    from boot.pe import repository as pe_catalogue

    if pe_catalogue.current_version() is None:
        raise InvalidLabInput("no PE in the catalogue: build one with `masterline pe build`")


def demo_os_image(work: Path) -> tuple[Path, int, str]:
    """The demo OS as the image store takes it (zstd), with its raw size and sha256:
    built once per inputs (the Debian packages and the builder) into ``work``."""
    import zstandard

    from lab import demo_os

    key = demo_os.inputs_key(demo_os.resolve())
    target = work / key
    if not (target / "demo-os.json").is_file():
        console.print("building the demo OS image from Debian packages (once)…")
        tmp = work / f".build-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            manifest = demo_os.build(tmp)
            with (tmp / demo_os.RAW).open("rb") as src, (tmp / "image.zst").open("wb") as dst:
                zstandard.ZstdCompressor(level=3).copy_stream(src, dst)
            (tmp / "demo-os.json").write_text(json.dumps(manifest, indent=2))
            shutil.rmtree(target, ignore_errors=True)
            tmp.replace(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    manifest = json.loads((target / "demo-os.json").read_text())
    raw_size = (target / demo_os.RAW).stat().st_size
    return target / "image.zst", raw_size, str(manifest["raw_sha256"])


def _stage(http: httpx.Client, serials: list[str], *, stamp: str, client: str, work: Path) -> str:
    """Image, configuration, delivery and bench, through the API; the bench's code."""
    packed, raw_size, raw_sha = demo_os_image(work / "demo-os")
    size = packed.stat().st_size
    digest = hashlib.sha256(packed.read_bytes()).hexdigest()
    image = ok(http.post("/images", json={
        "client_code": client, "name": "demo-os", "version": stamp, "os_family": "linux",
        "format": "raw+zstd", "size": size, "sha256": digest, "raw_size": raw_size,
        "raw_sha256": raw_sha,
    }))  # fmt: skip
    with packed.open("rb") as body:
        ok(http.put(f"/images/{image['id']}/content", content=body,
                     headers={"Content-Type": "application/octet-stream"}))  # fmt: skip
    console.print(f"uploaded image demo-os {stamp} ({size} bytes zstd, {raw_size} raw)")
    ok(http.post(f"/clients/{client}/configs", json={
        "hostname_pattern": "ACME-{serial}", "apps": [], "checks": ["image_hash", "hostname"],
    }))  # fmt: skip
    console.print("client configuration: hostname pattern, checks image hash and hostname")
    delivery = ok(http.post("/deliveries", json={
        "client_code": client, "vendor": VENDOR, "order_reference": f"PO-VM-{stamp}",
    }))  # fmt: skip
    csv = "serial,vendor,model\n" + "".join(f"{s},{VENDOR},{MODEL}\n" for s in serials)
    ok(http.post(f"/deliveries/{delivery['id']}/import", content=csv.encode(),
                  headers={"Content-Type": "text/csv"}))  # fmt: skip
    console.print(f"imported delivery PO-VM-{stamp}: {len(serials)} laptops")
    bench = ok(http.post("/benches", json={"site_code": "PAR", "code": f"VM-{stamp}",
                                            "slots": 16}))  # fmt: skip
    for serial in serials:
        done = ok(http.post("/scan", json={"code": serial, "bench_id": bench["id"]}))
        console.print(f"scan {serial} → {done['message']} ({done['device']['state']})")
    return str(bench["code"])


def _enroll(work: Path, bench_code: str) -> None:
    """PAR's worker key (its public half goes to every PE that registers) and the
    bench's enrollment credential, which the bench's iPXE script hands to its PEs."""
    from boot.registration import credentials, sites
    from boot.registration.schemas import CredentialCreate, SiteSettingsUpdate
    from core.db import get_database
    from core.principal import SYSTEM
    from lab.keys import generate_ed25519

    key = work / "worker" / "id_ed25519"
    if not key.exists():
        generate_ed25519(key, "worker@demo")
    with get_database().session() as s:
        credentials.create_credential(
            s,
            CredentialCreate(name=f"demo {bench_code}", site_code="PAR", bench_code=bench_code),
            SYSTEM,
        )
        sites.update_settings(
            s, "PAR",
            SiteSettingsUpdate(worker_key_path=str(key), heartbeat_seconds=5, silence_seconds=300),
        )  # fmt: skip


def run_vm_demo(count: int, *, host: str, port: int, stop_with_parent: bool = False) -> None:
    """``count`` VM laptops from power-on to READY (``count`` from ``parse_vm_count``).
    :raises InvalidLabInput: see ``preflight`` (nothing was started)."""
    from boot.netboot import service as netboot
    from core.db import get_database
    from core.settings import get_settings
    from demo import end as demo_end
    from demo.seed import DEMO_CLIENT, seed
    from lab.vm_bench import VmBench, VmBenchPlan
    from provisioning.runs.cli import runs_table
    from wiring import wire

    preflight(count)
    demo_end.install_stop_signals()
    if stop_with_parent:
        demo_end.stop_with_parent()
    settings = get_settings()
    wire()
    token = seed()
    db = get_database()
    work = settings.data_dir / "demo-vms"
    work.mkdir(parents=True, exist_ok=True)
    stamp = hashlib.sha256(os.urandom(8)).hexdigest()[:4].upper()
    serials = [f"V{stamp}{i:02d}" for i in range(1, count + 1)]
    bench = VmBench(work)
    cleanup = contextlib.ExitStack()
    started = time.monotonic()
    try:
        bench.down()  # a bench an earlier demo left behind
        api = serve_api(db, host=host, port=port, cleanup=cleanup)
        base = f"http://{host}:{port}"
        auth = {"Authorization": f"Bearer {token}"}
        http = httpx.Client(base_url=base, headers=auth, timeout=120)
        cleanup.callback(http.close)
        for _ in range(200):
            try:
                http.get("/openapi.json")
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        bench_code = _stage(http, serials, stamp=stamp, client=DEMO_CLIENT, work=work)
        _enroll(work, bench_code)
        console.print(f"bench {bench_code}: an enrollment credential; PAR: a worker key")
        with db.session(write=False) as s:
            link = netboot.bench_boot(s, netboot.bench_by_code(s, "PAR", bench_code)).link
        plan = VmBenchPlan(
            serials=serials, site="PAR", bench=bench_code, subnet=SUBNET,
            disk_bytes=512 * 1024 * 1024, vendor=VENDOR, model=MODEL,
        )  # fmt: skip
        cleanup.callback(bench.down)
        state = bench.up(plan, script_url=f"http://{SUBNET}.1:{plan.api_port}/boot/ipxe/{link}")
        console.print(
            f"powered on {count} VM laptops (QEMU {state['accel']}) on bench network "
            f"{SUBNET}.0/24 (namespace {state['namespace']}); consoles in {bench.dir}"
        )
        rows: list[dict[str, Any]] = []
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            page = ok(http.get("/runs", params={"limit": 500}))
            latest = {r["device_id"]: r for r in page["items"] if r["serial"] in serials}
            rows = sorted(latest.values(), key=lambda r: r["serial"])
            console.clear()
            elapsed = int(time.monotonic() - started)
            console.print(
                runs_table(rows, title=f"VM bench {bench_code} — {elapsed} s since the start")
            )
            _print_consoles(bench.dir, count)
            if len(rows) == count and all(
                r["status"] in ("succeeded", "failed", "aborted") for r in rows
            ):
                break
            time.sleep(2.0)
        console.print(f"{count} VM laptops done in {int(time.monotonic() - started)} s")
        console.print(demo_end.final_summary(rows, base=base, token=token))
        while api.is_alive():
            api.join(timeout=1.0)
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            console.print("stopping the server and the VM bench…")
    finally:
        with demo_end.signals_ignored():
            cleanup.close()


def _print_consoles(directory: Path, count: int) -> None:
    """Each VM's last agent line: what its PE is doing (registered, waiting…)."""
    for i in range(1, count + 1):
        try:
            text = (directory / f"vm{i}.console.log").read_bytes().decode(errors="replace")
        except OSError:
            continue
        lines = [ln.strip() for ln in text.splitlines() if "MASTERLINE-" in ln]
        console.print(f"  vm{i}: {lines[-1][:120] if lines else '(booting)'}")
