"""Test harness: lab laptops plugged into bench slots, their client's image and
configuration, scan-in, and a worker (in-process engine or a real subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from sqlmodel import col, select

from core.db import Database
from core.principal import SYSTEM
from core.settings import get_settings
from inventory import service as inventory
from inventory.models import Device, DeviceEvent
from inventory.schemas import ScanRequest
from inventory.states import TIMEOUT_OF, DeviceState
from lab.bootcontrol import slot_options
from lab.faults import Fault
from lab.lab import Lab, LabLaptop, LaptopSpec
from provisioning.pipeline.config import EngineConfig
from provisioning.pipeline.engine import JobEngine
from provisioning.runs import service
from provisioning.runs.models import ProvisioningRun, RunStatus, RunStepEvent
from provisioning.runs.schemas import EndpointCreate
from tests.support.factories import World
from tests.support.images import GeneratedImage, MiB
from tests.support.processes import stop
from tests.support.waiting import eventually

TERMINAL = {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.ABORTED}


@dataclass
class Bench:
    db: Database
    world: World
    lab: Lab
    tmp: Path
    laptops: dict[str, LabLaptop] = field(default_factory=dict)

    def plug(
        self,
        serial: str,
        *,
        slot: int,
        os_family: Literal["linux", "windows"] = "linux",
        disk_mib: int = 16,
        answering_serial: str | None = None,
    ) -> LabLaptop:
        """Start a lab laptop (reporting ``answering_serial`` if given: a swapped laptop)
        and wire bench slot ``slot`` to it."""
        (lp,) = self.lab.up(
            [
                LaptopSpec(
                    serial=answering_serial or serial,
                    os_family=os_family,
                    disk_bytes=disk_mib * MiB,
                )
            ]
        )
        self.laptops[serial] = lp
        with self.db.session() as s:
            service.register_endpoint(
                s,
                EndpointCreate(
                    bench_id=self.world.bench.id or 0,
                    slot=slot,
                    host=lp.host,
                    ssh_port=lp.ssh_port,
                    ssh_user=lp.ssh_user,
                    key_path=str(lp.client_key_path),
                    known_hosts_path=str(lp.known_hosts_path),
                    options=slot_options(self.lab.root, lp.name),
                ),
            )
        return lp

    def scan(self, serial: str, *, slot: int) -> ProvisioningRun | None:
        with self.db.session() as s:
            done = inventory.scan(
                s, ScanRequest(code=serial, bench_id=self.world.bench.id or 0, slot=slot), SYSTEM
            )
            assert done.device.id is not None
            from provisioning.runs import repository

            return repository.active_run_of_device(s, done.device.id)

    def run(self, run_id: int) -> ProvisioningRun:
        with self.db.session(write=False) as s:
            row = s.get(ProvisioningRun, run_id)
            assert row is not None
            return row

    def device(self, serial: str) -> Device:
        with self.db.session(write=False) as s:
            row = s.exec(select(Device).where(Device.serial == serial)).one()
            return row

    def device_events(self, serial: str) -> list[DeviceEvent]:
        device = self.device(serial)
        with self.db.session(write=False) as s:
            stmt = select(DeviceEvent).where(DeviceEvent.device_id == device.id)
            return list(s.exec(stmt.order_by(col(DeviceEvent.id))).all())

    def run_events(self, run_id: int) -> list[RunStepEvent]:
        with self.db.session(write=False) as s:
            stmt = select(RunStepEvent).where(RunStepEvent.run_id == run_id)
            return list(s.exec(stmt.order_by(col(RunStepEvent.seq))).all())

    def wait(
        self,
        run_id: int,
        *,
        until: set[RunStatus] | None = None,
        timeout: float = 120.0,
        step: str | None = None,
    ) -> ProvisioningRun:
        """Poll (bounded) until the run reaches one of ``until`` (default: finished), or
        is running ``step``."""
        wanted = until or TERMINAL

        def reached() -> ProvisioningRun | None:
            run = self.run(run_id)
            if run.status in wanted and (step is None or run.step_name == step):
                return run
            return run if step is not None and run.status in TERMINAL else None

        return eventually(
            reached,
            timeout=timeout,
            every=0.1,
            message=lambda: f"run {run_id} still {self.run(run_id).status}",
        )


@contextmanager
def local_store(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The image store and data directory under ``tmp`` for one test (settings are
    cached: cleared on the way in and out)."""
    monkeypatch.setenv("MASTERLINE_IMAGE_STORE_DIR", str(tmp / "store"))
    monkeypatch.setenv("MASTERLINE_DATA_DIR", str(tmp / "data"))
    get_settings.cache_clear()
    try:
        yield
    finally:
        get_settings.cache_clear()


def engine_config(tmp: Path, **kw: Any) -> EngineConfig:
    base: dict[str, Any] = {
        "worker_id": "test-worker",
        "cache_dir": tmp / "site-cache",
        "lease_seconds": 5.0,
        "poll_seconds": 0.1,
        "max_parallel": 8,
        "backoff_base": 0.1,
        "backoff_cap": 0.5,
        "sweep_seconds": 0.2,
        "state_timeouts": dict(TIMEOUT_OF),
        # The engine tests exercise the plain stream (one stream per laptop); relay
        # waves are tests/provisioning/pipeline/test_relay_*.py's, which ask for them.
        "relay": False,
    }
    base.update(kw)
    return EngineConfig(**base)


@contextmanager
def running_engine(
    db: Database, config: EngineConfig, prepare: Callable[[JobEngine], None] | None = None
) -> Iterator[JobEngine]:
    """A worker's engine in a thread, stopped on exit; ``prepare`` adjusts it before it
    claims anything."""
    engine = JobEngine(db, config)
    if prepare is not None:
        prepare(engine)
    stop = threading.Event()
    thread = threading.Thread(target=engine.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        yield engine
    finally:
        stop.set()
        thread.join(timeout=60)


@contextmanager
def worker_process(
    db: Database,
    tmp: Path,
    *,
    worker_id: str = "proc-worker",
    extra_env: dict[str, str] | None = None,
    command: list[str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``masterline worker`` subprocess on the test's database (``command``:
    another entry point with the same environment, e.g. ``tests.support.blocking_worker``)."""
    env = {
        **os.environ,
        "MASTERLINE_DATABASE_URL": db.url,
        "MASTERLINE_DATA_DIR": str(tmp / "data"),
        "MASTERLINE_SITE_CACHE_DIR": str(tmp / "site-cache"),
        "MASTERLINE_WORKER_ID": worker_id,
        "MASTERLINE_WORKER_LEASE_SECONDS": "5",
        "MASTERLINE_WORKER_POLL_SECONDS": "0.1",
        "MASTERLINE_WORKER_BACKOFF_BASE": "0.1",
        "MASTERLINE_WORKER_BACKOFF_CAP": "0.5",
        **(extra_env or {}),
    }
    log = open(tmp / f"worker-{worker_id}-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        command or [sys.executable, "-c", "import cli; cli.main()", "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        stop(proc)
        log.close()


def quick_timeouts(**secs: float) -> dict[DeviceState, timedelta]:
    out = dict(TIMEOUT_OF)
    for name, value in secs.items():
        out[DeviceState(name)] = timedelta(seconds=value)
    return out


def zero(path: Path, size: int) -> bool:
    with open(path, "rb") as f:
        return f.read(size).count(0) == len(f.read(0)) + min(size, path.stat().st_size)


def publish_image(
    db: Database,
    *,
    client_id: int,
    image: GeneratedImage,
    os_family: str,
    name: str = "master",
    version: str = "1",
) -> int:
    """An AVAILABLE raw+zstd image of ``client_id`` in the local store (the images
    domain's tables and store, filled the way its upload path leaves them)."""
    import shutil

    from images.models import Image, ImageFormat, ImageStatus, OsFamily
    from images.store import get_store

    store = get_store()
    store.ensure()
    temp = store.temp_path("put")
    shutil.copyfile(image.zst_path, temp)
    store.publish(temp, image.zst_sha256)
    from core.timeutil import utcnow

    with db.session() as s:
        row = Image(
            client_id=client_id,
            name=name,
            version=version,
            os_family=OsFamily(os_family),
            format=ImageFormat.RAW_ZSTD,
            raw_size=image.raw_size,
            raw_sha256=image.raw_sha256,
            stored_size=image.zst_size,
            stored_sha256=image.zst_sha256,
            status=ImageStatus.AVAILABLE,
            uploaded_by="test",
            published_at=utcnow(),
        )
        s.add(row)
        s.flush()
        assert row.id is not None
        return row.id


def publish_installer(
    db: Database, *, client_id: int, data: bytes, name: str, os_family: str
) -> tuple[int, Path]:
    """An AVAILABLE installer file (format ``file``) of ``client_id`` in the local store,
    as the images domain's upload path leaves it. Returns (image id, stored path)."""
    import hashlib

    from core.timeutil import utcnow
    from images.models import Image, ImageFormat, ImageStatus, OsFamily
    from images.store import get_store

    sha = hashlib.sha256(data).hexdigest()
    store = get_store()
    store.ensure()
    temp = store.temp_path("put")
    temp.write_bytes(data)
    path = store.publish(temp, sha)
    with db.session() as s:
        row = Image(
            client_id=client_id,
            name=name,
            version="1",
            os_family=OsFamily(os_family),
            format=ImageFormat.FILE,
            raw_size=len(data),
            raw_sha256=sha,
            stored_size=len(data),
            stored_sha256=sha,
            status=ImageStatus.AVAILABLE,
            uploaded_by="test",
            published_at=utcnow(),
        )
        s.add(row)
        s.flush()
        assert row.id is not None
        return row.id, Path(path)


def store_app(name: str, image_id: int) -> dict[str, Any]:
    """A configuration app installed from the client's image store, verified by the
    product name the package manager lists it under (the installer file's stem)."""
    import re

    stem = re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-.")
    return {
        "name": name,
        "source": {"kind": "store", "image_id": image_id},
        "silent_args": [],
        "verify": {"kind": "package", "name": stem},
    }


def set_config(db: Database, body: dict[str, Any], *, client_code: str = "ACME") -> None:
    """Validate ``body`` as the images domain does and make it the client's active one."""
    from images import configs
    from images.schemas import ClientConfigBody

    with db.session() as s:
        configs.set_config(s, client_code, ClientConfigBody.model_validate(body), SYSTEM)


def activate_config(db: Database, *, client_id: int, body: dict[str, Any]) -> None:
    from images.models import ClientConfig

    with db.session() as s:
        s.add(
            ClientConfig(client_id=client_id, version=1, active=True, body=body, created_by="test")
        )


LINUX_CONFIG: dict[str, Any] = {
    "hostname_pattern": "ACME-{serial}",
    "apps": [],
    "checks": ["image_hash", "hostname"],
}


def ssh_clients_to(port: int) -> list[int]:
    """Pids of ``ssh`` clients to ``port`` on this machine."""
    from tests.support.processes import live_processes

    pids = []
    for pid, argv in live_processes():
        if argv[0] == b"ssh" and b"-p" in argv:
            i = argv.index(b"-p")
            if i + 1 < len(argv) and argv[i + 1] == str(port).encode():
                pids.append(pid)
    return pids


def disk_untouched(path: Path) -> bool:
    data = path.read_bytes()
    return data.count(0) == len(data)


def transitions(bench: Bench, serial: str) -> list[tuple[str | None, str, str]]:
    return [(e.from_state, e.to_state, e.event) for e in bench.device_events(serial)]


def run_with_fault(bench: Bench, fault: Fault, **params: int) -> ProvisioningRun:
    """Plug ACME0001 into slot 1 with ``fault`` set, scan it in, and run the engine until
    its run has finished."""
    lp = bench.plug("ACME0001", slot=1)
    bench.lab.set_fault(lp.name, fault, **params)
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.id is not None
    with running_engine(bench.db, engine_config(bench.tmp)):
        return bench.wait(run.id)
