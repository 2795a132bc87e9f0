"""The pipeline against real lab laptops: the engine in-process (one test kills a real
worker subprocess), real sshd, real OpenSSH client, both databases."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.db import Database
from core.principal import SYSTEM, Role
from core.settings import get_settings
from inventory.states import DeviceState
from lab.faults import Fault
from lab.lab import Lab
from provisioning.pipeline.engine import JobEngine
from provisioning.pipeline.stages import sweep_timeouts
from provisioning.runs import service
from provisioning.runs.models import ProvisioningRun, RunStatus
from tests.support.factories import World
from tests.support.harness import (
    LINUX_CONFIG,
    Bench,
    engine_config,
    publish_image,
    publish_installer,
    quick_timeouts,
    running_engine,
    set_config,
    ssh_clients_to,
    store_app,
    transitions,
    worker_process,
)
from tests.support.images import make_image
from tests.support.waiting import eventually


def test_scan_queues_a_run_only_when_the_client_has_image_and_configuration(
    bench: Bench,
) -> None:
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.status == RunStatus.QUEUED
    assert bench.device("ACME0001").state == DeviceState.QUEUED
    # GLOBEX has neither: its laptop waits RECEIVED.
    assert bench.scan("GLBX0001", slot=2) is None
    assert bench.device("GLBX0001").state == DeviceState.RECEIVED


def test_retry_resumes_at_the_failed_step(bench: Bench) -> None:
    lp = bench.plug("ACME0001", slot=1)
    bench.lab.set_fault(lp.name, Fault.DISK_FULL, after_bytes=1024 * 1024)
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.id is not None
    with running_engine(bench.db, engine_config(bench.tmp)):
        failed = bench.wait(run.id)
        assert failed.failed_step == "stream"
        bench.lab.clear_faults(lp.name)
        with bench.db.session() as s:
            again = service.retry(s, run.id, SYSTEM)
            assert again.status == RunStatus.QUEUED and again.step_name == "stream"
        assert bench.device("ACME0001").state == DeviceState.QUEUED
        bench.wait(run.id, until={RunStatus.RUNNING}, step="reboot")
    events = bench.run_events(run.id)
    after = events[[e.kind for e in events].index("retry_requested") :]
    started = [e.step for e in after if e.kind == "step_started"]
    assert started[:2] == ["stream", "verify"]  # identify and pick_disk were not re-run
    assert bench.run(run.id).run_attempt == 2


def test_abort_stops_a_running_stream(bench: Bench) -> None:
    lp = bench.plug("ACME0001", slot=1)
    bench.lab.set_fault(lp.name, Fault.SLOW_LINK, bytes_per_second=256 * 1024)
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.id is not None
    run_id = run.id

    def progressing() -> ProvisioningRun | None:
        r = bench.run(run_id)
        return r if r.progress_bytes > 0 and r.rate_bps > 0 else None

    with running_engine(bench.db, engine_config(bench.tmp)):
        running = bench.wait(run.id, until={RunStatus.RUNNING}, step="stream")
        assert running.status == RunStatus.RUNNING
        # Progress shows while the stream runs.
        running = eventually(progressing, message="no progress reported")
        with bench.db.session() as s:
            service.abort(s, run.id, SYSTEM, reason="wrong laptop model on the bench")
        done = bench.wait(run.id)
    assert done.status == RunStatus.ABORTED and done.step_name == "stream"
    assert bench.device("ACME0001").state == DeviceState.FAILED_IMAGING
    assert bench.device_events("ACME0001")[-1].reason == "aborted by a technician"


def test_abort_of_a_queued_run_returns_the_laptop_to_received(bench: Bench) -> None:
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.id is not None
    with bench.db.session() as s:
        service.abort(s, run.id, SYSTEM)
    assert bench.run(run.id).status == RunStatus.ABORTED
    assert bench.device("ACME0001").state == DeviceState.RECEIVED


def test_a_state_held_past_its_timeout_becomes_its_failure(bench: Bench) -> None:
    lp = bench.plug("ACME0001", slot=1)
    bench.lab.set_fault(lp.name, Fault.SLOW_LINK, bytes_per_second=128 * 1024)
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.id is not None
    config = engine_config(bench.tmp, state_timeouts=quick_timeouts(imaging=2))
    with running_engine(bench.db, config):
        done = bench.wait(run.id)
    assert done.status == RunStatus.FAILED
    assert done.last_error is not None and "imaging timed out after 2 s" in done.last_error
    assert bench.device("ACME0001").state == DeviceState.FAILED_IMAGING


def test_a_step_past_its_timeout_is_retried_then_fails(bench: Bench) -> None:
    lp = bench.plug("ACME0001", slot=1)
    bench.lab.set_fault(lp.name, Fault.SLOW_LINK, bytes_per_second=128 * 1024)
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.id is not None
    config = engine_config(bench.tmp, step_timeouts={"stream": 1.0})
    with running_engine(bench.db, config):
        done = bench.wait(run.id)
    assert done.status == RunStatus.FAILED and done.failed_step == "stream"
    assert done.last_error is not None and "timed out" in done.last_error
    assert len([e for e in bench.run_events(run.id) if e.kind == "retry"]) == 2


def test_site_stream_limit_caps_claims(bench: Bench) -> None:
    from inventory.models import Site

    with bench.db.session() as s:
        site = s.get(Site, bench.world.bench.site_id)
        assert site is not None
        site.max_imaging_streams = 1
        s.add(site)
    first = bench.scan("ACME0001", slot=1)
    second = bench.scan("ACME0002", slot=2)
    assert first is not None and second is not None
    engine = JobEngine(bench.db, engine_config(bench.tmp))
    assert engine.claim() == [first.id]
    assert engine.claim() == []  # the site's one stream is taken
    assert bench.run(second.id or 0).status == RunStatus.QUEUED


def test_sigkill_mid_stream_then_restart_finishes_without_duplicate_events(
    bench: Bench,
) -> None:
    lp = bench.plug("ACME0001", slot=1)
    bench.lab.set_fault(lp.name, Fault.SLOW_LINK, bytes_per_second=512 * 1024)
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.id is not None
    run_id = run.id
    with worker_process(bench.db, bench.tmp, worker_id="w1") as proc:
        bench.wait(run.id, until={RunStatus.RUNNING}, step="stream")
        eventually(lambda: bench.run(run_id).progress_bytes > 0, message="no byte streamed")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        # Its ssh stream died with it (parent-death signal), instead of writing on into
        # the disk at the slow link's pace while the next worker streams there too.
        eventually(lambda: ssh_clients_to(lp.ssh_port) == [], message="the ssh stream lived on")
    interrupted = bench.run(run.id)
    assert interrupted.status == RunStatus.RUNNING and interrupted.step_name == "stream"
    assert bench.device("ACME0001").state == DeviceState.IMAGING
    bench.lab.clear_faults(lp.name)
    with worker_process(bench.db, bench.tmp, worker_id="w1"):
        bench.wait(run.id, until={RunStatus.RUNNING}, step="reboot")
    events = bench.run_events(run.id)
    kinds = [(e.step, e.kind) for e in events]
    assert ("stream", "resumed") in kinds
    assert [k for k in kinds if k == ("verify", "step_done")] == [("verify", "step_done")]
    # The device went QUEUED -> IMAGING exactly once: the resumed step did not re-apply it.
    image_moves = [t for t in transitions(bench, "ACME0001") if t[2] == "image"]
    assert image_moves == [("queued", "imaging", "image")]
    assert len({e.seq for e in events}) == len(events)


def test_a_dead_workers_runs_fail_by_timeout_not_stuck(bench: Bench) -> None:
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.id is not None
    bench.plug("ACME0001", slot=1)
    # A worker claimed the run, moved the laptop to IMAGING, then vanished for good.
    engine = JobEngine(bench.db, engine_config(bench.tmp, worker_id="gone"))
    assert engine.claim() == [run.id]
    assert engine.executor.begin_step(run.id) is not None
    assert bench.device("ACME0001").state == DeviceState.IMAGING
    assert sweep_timeouts(bench.db, quick_timeouts(imaging=0)) == 1
    assert bench.device("ACME0001").state == DeviceState.FAILED_IMAGING
    assert bench.run(run.id).status == RunStatus.FAILED


def test_linux_laptop_goes_to_ready(bench: Bench) -> None:
    """With a .deb from the client's image store: the offline step puts it on the
    installed system's disk, where Ansible installs it from."""
    assert bench.world.acme.id is not None
    deb = b"!<arch>\ndebian-binary   0 lab zoom package"
    zoom, _ = publish_installer(
        bench.db, client_id=bench.world.acme.id, data=deb, name="zoom-deb", os_family="linux"
    )
    set_config(
        bench.db,
        {
            **LINUX_CONFIG,
            "apps": [store_app("Zoom", zoom)],
            "checks": ["image_hash", "hostname", "apps"],
        },
    )
    lp = bench.plug("ACME0001", slot=1)
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.id is not None
    with running_engine(bench.db, engine_config(bench.tmp)):
        done = bench.wait(run.id, timeout=300)
    assert done.status == RunStatus.SUCCEEDED, done.last_error
    assert bench.device("ACME0001").state == DeviceState.READY
    path = [t[1] for t in transitions(bench, "ACME0001")]
    assert path[-5:] == ["queued", "imaging", "configuring", "verifying", "ready"]
    assert (lp.os_root / "etc" / "hostname").read_text().strip() == "ACME-ACME0001"
    device = bench.device("ACME0001")
    assert device.smbios_uuid == lp.smbios_uuid
    assert device.mac_addresses == sorted(lp.macs)
    assert done.progress_bytes == done.progress_total > 0
    kinds = {e.kind for e in bench.run_events(run.id)}
    assert {"step_started", "step_done", "succeeded"} <= kinds
    checks = done.context["checks"]
    assert checks and all(c["ok"] for c in checks)
    assert "app:Zoom" in {c["name"] for c in checks}
    assert (lp.os_root / "var/cache/masterline/installers/Zoom.deb").read_bytes() == deb
    assert (lp.os_root / "var/lib/masterline/apps/Zoom").exists()
    assert done.context["installers"] == [
        {
            "app": "Zoom",
            "store": f"image {zoom}",
            "sha256": hashlib.sha256(deb).hexdigest(),
            "size": len(deb),
            "written": True,
        }
    ]


def test_linux_laptops_reaching_configure_together_are_configured_in_one_run(
    bench: Bench,
) -> None:
    """Two laptops scanned together reach configure together: one Ansible run for both,
    each still READY on its own verdict. The window is long so that a loaded machine
    cannot split them; the leader stops waiting once the other laptop has joined."""
    runs = []
    for slot, serial in enumerate(("ACME0001", "ACME0002"), start=1):
        bench.plug(serial, slot=slot)
        run = bench.scan(serial, slot=slot)
        assert run is not None and run.id is not None
        runs.append(run.id)
    with running_engine(bench.db, engine_config(bench.tmp, configure_wave_seconds=60)):
        done = [bench.wait(run_id, timeout=300) for run_id in runs]
    assert all(d.status == RunStatus.SUCCEEDED for d in done), [d.last_error for d in done]
    for run_id in runs:
        waves = [e for e in bench.run_events(run_id) if e.kind == "wave"]
        assert [w.details["laptops"] for w in waves] == [2]
    assert {bench.device(s).state for s in ("ACME0001", "ACME0002")} == {DeviceState.READY}


def test_windows_laptop_goes_to_ready_with_winrm_enabled_at_first_boot(
    db: Database, world: World, lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASTERLINE_IMAGE_STORE_DIR", str(tmp_path / "store"))
    get_settings.cache_clear()
    try:
        assert world.acme.id is not None
        publish_image(
            db,
            client_id=world.acme.id,
            image=make_image(tmp_path / "img", mib=4),
            os_family="windows",
        )
        msi = b"MSI lab installer of the Contoso agent"
        agent, _ = publish_installer(
            db, client_id=world.acme.id, data=msi, name="contoso-agent", os_family="windows"
        )
        set_config(
            db,
            {
                **LINUX_CONFIG,
                "apps": [store_app("Contoso Agent", agent)],
                "checks": ["image_hash", "hostname", "apps"],
            },
        )
        bench = Bench(db=db, world=world, lab=lab, tmp=tmp_path)
        lp = bench.plug("ACME0001", slot=1, os_family="windows")
        run = bench.scan("ACME0001", slot=1)
        assert run is not None and run.id is not None and run.os_family == "windows"
        with running_engine(db, engine_config(tmp_path)):
            done = bench.wait(run.id, timeout=300)
        assert done.status == RunStatus.SUCCEEDED, done.last_error
        assert bench.device("ACME0001").state == DeviceState.READY
        assert bench.lab.get(lp.name).boot == "os"
        # What the PE wrote into the mounted C: drive is on the booted Windows.
        files = bench.lab.windows_state(lp.name)["files"]
        firstboot = files["c:\\masterline\\firstboot-winrm-https.ps1"]
        assert b"WSMan" in base64.b64decode(firstboot["b64"])
        scripts = "c:\\windows\\setup\\scripts\\"
        setup_complete = base64.b64decode(files[scripts + "setupcomplete.cmd"]["b64"])
        assert b"firstboot-winrm-https.ps1" in setup_complete
        unattend = base64.b64decode(files["c:\\windows\\panther\\unattend.xml"]["b64"])
        assert b"<ComputerName>ACME-ACME0001</ComputerName>" in unattend
        placed = files["c:\\programdata\\masterline\\installers\\contoso-agent.msi"]
        assert base64.b64decode(placed["b64"]) == msi
        assert "Contoso-Agent" in bench.lab.windows_state(lp.name)["apps"]
        checks = {c["name"]: c["ok"] for c in done.context["checks"]}
        assert checks["app:Contoso Agent"] is True
    finally:
        get_settings.cache_clear()


def test_vpn_secrets_never_reach_the_run_log_events_or_api(
    bench: Bench, app_client: TestClient
) -> None:
    import json

    from images import configs
    from images.models import ClientConfig
    from images.schemas import ClientConfigBody
    from tests.conftest import auth

    psk = "PSK-never-log-7f3a9c"
    body = ClientConfigBody.model_validate(
        {
            "hostname_pattern": "ACME-{serial}",
            "vpn": {
                "kind": "wireguard",
                "server": "vpn.acme.example",
                "port": 51820,
                "settings": {"server_public_key": "x" * 43 + "=", "allowed_ips": "10.0.0.0/8"},
                "device_secret": "generate",
                "secrets": {"preshared_key": psk},
            },
            "checks": ["image_hash", "hostname", "vpn_profile"],
        }
    )
    with bench.db.session() as s:
        configs.set_config(s, "ACME", body, SYSTEM)
    bench.plug("ACME0001", slot=1)
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.id is not None
    with running_engine(bench.db, engine_config(bench.tmp)):
        done = bench.wait(run.id, timeout=300)
    assert done.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)
    with bench.db.session() as s:
        from sqlmodel import col, select

        config = s.exec(select(ClientConfig).where(col(ClientConfig.active))).one()
        secrets = configs.device_secrets(s, config, bench.device("ACME0001"))
    values = [v for v in secrets.values() if v]
    assert psk in values and len(values) >= 2  # the PSK and the generated private key
    texts = [json.dumps([e.message, e.details]) for e in bench.run_events(run.id)]
    texts += [json.dumps([e.reason, e.details]) for e in bench.device_events("ACME0001")]
    texts.append(str(done.last_error))
    token = bench.world.token(Role.TECHNICIAN)
    texts.append(app_client.get(f"/runs/{run.id}", headers=auth(token)).text)
    for value in values:
        assert not any(value in t for t in texts)
