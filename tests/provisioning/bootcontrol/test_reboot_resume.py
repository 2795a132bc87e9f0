"""A worker killed right after it rebooted a laptop whose PE registered itself: the
next worker's re-run of the reboot step finds the laptop already left its PE (the step
committed "reboot issued" with the PE kernel's boot id before rebooting) and goes on to
configure it, instead of waiting for a PE that will never come back (until the IMAGING
timeout). Real parts: a lab laptop (its own sshd), the real agent registering and
heartbeating against the real API, a real ``masterline worker`` process SIGKILLed at
that very point (``tests.support.blocking_worker``), then a worker finishing to READY."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from boot.registration import sites
from boot.registration.models import BootStatus, PeBoot
from boot.registration.schemas import SiteSettingsUpdate
from boot.registration.service import current_boot
from inventory.states import DeviceState
from lab.keys import generate_ed25519
from lab.lab import Lab
from provisioning.bootcontrol.base import REBOOT_ISSUED
from provisioning.runs.models import RunStatus, RunStepEvent
from tests.boot.conftest import Boot
from tests.provisioning.bootcontrol.test_registered_lab import _agent, _device_state, _run
from tests.support.harness import (
    LINUX_CONFIG,
    activate_config,
    engine_config,
    local_store,
    publish_image,
    running_engine,
    worker_process,
)
from tests.support.images import make_image
from tests.support.server import running_server
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

DEADLINE = 300.0  # bounds a hang only: every wait ends on a condition


def _events(boot: Boot, run_id: int) -> list[RunStepEvent]:
    with boot.db.session(write=False) as s:
        return list(
            s.exec(
                select(RunStepEvent).where(RunStepEvent.run_id == run_id).order_by(RunStepEvent.seq)  # type: ignore[arg-type]
            ).all()
        )


def test_a_worker_killed_right_after_the_reboot_is_followed_by_one_that_sees_it(
    boot: Boot, lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASTERLINE_BOOT_RATE_PER_ADDRESS", "1000/minute")
    with local_store(tmp_path, monkeypatch):
        acme = boot.world.acme.id
        assert acme is not None
        image = make_image(tmp_path / "img", mib=4)
        publish_image(boot.db, client_id=acme, image=image, os_family="linux")
        activate_config(boot.db, client_id=acme, body=LINUX_CONFIG)
        worker_key = tmp_path / "worker" / "id_ed25519"
        generate_ed25519(worker_key, "worker@par")
        with boot.db.session() as s:
            # Silent after 5 s: the PE a rebooted laptop left behind is soon not alive.
            sites.update_settings(
                s,
                "PAR",
                SiteSettingsUpdate(
                    worker_key_path=str(worker_key), heartbeat_seconds=2, silence_seconds=5
                ),
            )
        (laptop,) = lab.up_n(1, serial_prefix="ACME", disk_bytes=16 * 1024 * 1024)
        etc_ssh = laptop.pe_root / "etc" / "ssh"
        etc_ssh.mkdir(parents=True)
        shutil.copy(laptop.dir / "sshd" / "ssh_host_ed25519_key.pub", etc_ssh)
        marker = tmp_path / "rebooted"
        with running_server(boot.db) as api:
            agent = _agent(tmp_path, laptop, api, boot.credential)
            try:
                r = httpx.post(
                    f"{api}/scan",
                    json={"code": "ACME0001", "bench_id": boot.bench.id},
                    headers=boot.technician,
                )
                assert r.status_code == 200, r.text
                agent.wait_for("MASTERLINE-AGENT registered")
                command = [sys.executable, "-m", "tests.support.blocking_worker", str(marker)]
                with worker_process(boot.db, tmp_path, worker_id="w1", command=command) as w1:
                    eventually(
                        lambda: marker.exists() or w1.poll() is not None,
                        timeout=DEADLINE,
                        message=lambda: f"no reboot: run {_run(boot).step_name}",
                    )
                    assert w1.poll() is None, "the first worker died before the reboot"
                    os.kill(w1.pid, signal.SIGKILL)
                    w1.wait(timeout=30)
            finally:
                # The laptop left its PE: nothing heartbeats for it any more.
                agent.stop()
            killed = _run(boot)
            assert killed.status == RunStatus.RUNNING and killed.step_name == "reboot"
            issued = killed.context[REBOOT_ISSUED]
            assert issued["kernel_boot"] and issued["pe_boot"]
            assert lab.get(laptop.name).boot == "os"
            assert _device_state(boot) == DeviceState.IMAGING
            # Its PE registration is still current but has gone silent: before this fix,
            # the next worker waited here for a PE that would never boot again.
            with boot.db.session(write=False) as s:
                pe_row = s.exec(select(PeBoot)).one()
            eventually(
                lambda: _pe_silent(boot, pe_row.device_id),
                timeout=DEADLINE,
                message="the PE never went silent",
            )
            config = engine_config(
                tmp_path, worker_id="w2", pe_wait_seconds=3600, backoff_base=1.0, backoff_cap=4.0
            )
            with running_engine(boot.db, config):
                done = eventually(
                    lambda: (
                        (r := _run(boot)).status in (RunStatus.SUCCEEDED, RunStatus.FAILED) and r
                    ),
                    timeout=DEADLINE,
                    every=0.2,
                    message=lambda: (
                        f"run still {_run(boot).status} {_run(boot).step_name} "
                        f"{_run(boot).last_error}"
                    ),
                )
    assert done.status == RunStatus.SUCCEEDED, done.last_error
    assert _device_state(boot) == DeviceState.READY
    events = _events(boot, done.id or 0)
    kinds = [(e.step, e.kind) for e in events]
    # The re-run never waited for a PE; the reboot step ended once, by the second worker.
    assert not any(kind == "waiting" for _, kind in kinds), kinds
    assert kinds.count(("reboot", "step_done")) == 1
    with boot.db.session(write=False) as s:
        pe = s.exec(select(PeBoot)).one()
    assert pe.status == BootStatus.ENDED and pe.ended_reason == "rebooted into its installed OS"
    assert (laptop.os_root / "etc" / "hostname").read_text().strip() == "ACME-ACME0001"


def _pe_silent(boot: Boot, device_id: int) -> bool:
    with boot.db.session(write=False) as s:
        view = current_boot(s, device_id)
    return view is not None and not view.alive
