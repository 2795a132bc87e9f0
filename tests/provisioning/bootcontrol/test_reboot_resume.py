"""A worker killed right after it rebooted a laptop whose PE registered itself: the
next worker's re-run of the reboot step finds the laptop already left its PE (the step
committed "reboot issued" with the PE kernel's boot id before rebooting) and goes on to
configure it, instead of waiting for a PE that will never come back (until the IMAGING
timeout). Real parts: a lab laptop (its own sshd), the real agent registering and
heartbeating against the real API, a real ``masterline worker`` process SIGKILLed at
that very point (``tests.support.blocking_worker``), then a worker finishing to READY."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
from sqlmodel import col, select

from boot.registration.models import BootStatus, PeBoot
from boot.registration.service import current_boot
from inventory.states import DeviceState
from lab.lab import Lab
from provisioning.bootcontrol.base import REBOOT_ISSUED
from provisioning.runs.models import RunStatus, RunStepEvent
from tests.boot.conftest import Boot
from tests.support.harness import engine_config, running_engine, worker_process
from tests.support.registered_lab import (
    device_state,
    finished_run,
    only_run,
    registered_lab,
    start_agent,
)
from tests.support.server import running_server
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

DEADLINE = 300.0  # bounds a hang only: every wait ends on a condition


def _events(boot: Boot, run_id: int) -> list[RunStepEvent]:
    with boot.db.session(write=False) as s:
        return list(
            s.exec(
                select(RunStepEvent)
                .where(RunStepEvent.run_id == run_id)
                .order_by(col(RunStepEvent.seq))
            ).all()
        )


def test_a_worker_killed_right_after_the_reboot_is_followed_by_one_that_sees_it(
    boot: Boot, lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Silent after 5 s: the PE a rebooted laptop left behind is soon not alive.
    with registered_lab(boot, lab, tmp_path, monkeypatch, silence_seconds=5) as rl:
        laptop = rl.laptop
        marker = tmp_path / "rebooted"
        with running_server(boot.db) as api:
            agent = start_agent(tmp_path, laptop, api, boot.credential)
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
                        message=lambda: f"no reboot: run {only_run(boot).step_name}",
                    )
                    assert w1.poll() is None, "the first worker died before the reboot"
                    os.kill(w1.pid, signal.SIGKILL)
                    w1.wait(timeout=30)
            finally:
                # The laptop left its PE: nothing heartbeats for it any more.
                agent.stop()
            killed = only_run(boot)
            assert killed.status == RunStatus.RUNNING and killed.step_name == "reboot"
            issued = killed.context[REBOOT_ISSUED]
            assert issued["kernel_boot"] and issued["pe_boot"]
            assert lab.get(laptop.name).boot == "os"
            assert device_state(boot) == DeviceState.IMAGING
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
                done = finished_run(boot, timeout=DEADLINE)
    assert done.status == RunStatus.SUCCEEDED, done.last_error
    assert device_state(boot) == DeviceState.READY
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
