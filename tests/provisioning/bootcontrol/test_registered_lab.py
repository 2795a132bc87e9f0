"""From power-on to READY with no slot wired: a lab laptop (its own real sshd on
127.0.0.1) whose PE is registered by the real agent (Debian's python3 running
``boot/agent`` on the laptop's fake root, with that sshd's host key) against the real API
(uvicorn); the worker finds the PE through its registration, logs in with the key the
agent installed from the go answer, images it, reboots it through the PE's ``reboot``,
configures it with real Ansible and passes the gate. ``PUT /runs/endpoints`` is never
called."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlmodel import col, select

from boot.registration.models import BootStatus, PeBoot
from inventory.states import DeviceState
from lab.lab import Lab
from provisioning.runs.models import ProvisioningRun, RunStatus, RunStepEvent, SlotEndpoint
from provisioning.runs.states import STEP_NAMES
from tests.boot.conftest import Boot
from tests.support.agent import AgentRun
from tests.support.harness import engine_config, running_engine
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


@pytest.mark.parametrize("powered_on_first", [False, True], ids=["scanned-first", "booted-first"])
def test_a_laptop_that_registers_its_pe_is_imaged_to_ready_with_no_slot_wiring(
    boot: Boot,
    lab: Lab,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    powered_on_first: bool,
) -> None:
    with registered_lab(boot, lab, tmp_path, monkeypatch, silence_seconds=120) as rl:
        image, laptop = rl.image, rl.laptop
        with running_server(boot.db) as api:
            # Scanned first: its run is queued and waits for its PE (nothing booted).
            # Backoff of seconds, not tenths: configure may reach the laptop while its
            # installed OS is still starting, as on a real bench.
            config = engine_config(
                tmp_path, pe_wait_seconds=3600, backoff_base=1.0, backoff_cap=4.0
            )
            agent: AgentRun | None = None

            def waiting_run() -> ProvisioningRun | None:
                run = only_run(boot)
                return run if run.last_error else None

            try:
                with running_engine(boot.db, config):
                    if powered_on_first:
                        # Booted before it was scanned: its PE is told to wait.
                        agent = start_agent(tmp_path, laptop, api, boot.credential)
                        agent.wait_for("MASTERLINE-AGENT waiting reason=booted,-not-scanned")
                    r = httpx.post(
                        f"{api}/scan",
                        json={"code": "ACME0001", "bench_id": boot.bench.id},
                        headers=boot.technician,
                    )
                    assert r.status_code == 200, r.text
                    if agent is None:
                        # Scanned, nothing booted: the run waits for its PE.
                        run = eventually(
                            waiting_run,
                            timeout=DEADLINE,
                            message="the run never waited for its PE",
                        )
                        assert run.status == RunStatus.QUEUED
                        assert "has registered yet" in (run.last_error or "")
                        # Power on: the agent registers; its go resumes the run at once
                        # (the worker would otherwise look again in an hour).
                        agent = start_agent(tmp_path, laptop, api, boot.credential)
                    agent.wait_for("MASTERLINE-AGENT registered")
                    done = finished_run(boot, timeout=DEADLINE)
            finally:
                if agent is not None:
                    agent.stop()
        assert done.status == RunStatus.SUCCEEDED, done.last_error
        with boot.db.session(write=False) as s:
            events = s.exec(
                select(RunStepEvent)
                .where(RunStepEvent.run_id == done.id)
                .order_by(col(RunStepEvent.seq))
            ).all()
        kinds = [e.kind for e in events]
        if not powered_on_first:
            # Waited once, resumed by the registration, then every step in order.
            assert kinds.index("waiting") < kinds.index("pe_registered")
        assert [e.step for e in events if e.kind == "step_done"] == list(STEP_NAMES)
        assert done.context["readback_sha256"] == image.raw_sha256
        with boot.db.session(write=False) as s:
            assert s.exec(select(SlotEndpoint)).all() == []  # nothing was wired
            (pe,) = s.exec(select(PeBoot)).all()
        assert pe.device_id == done.device_id
        assert pe.ssh_port == laptop.ssh_port
        # Its PE registration ended with the reboot: its agent token works no more.
        assert pe.status == BootStatus.ENDED and pe.token_hash is None
        assert pe.ended_reason == "rebooted into its installed OS"
        assert device_state(boot) == DeviceState.READY
        # Configured by Ansible in the installed system the PE rebooted into.
        assert lab.get(laptop.name).boot == "os"
        hostname = (laptop.os_root / "etc" / "hostname").read_text().strip()
        assert hostname == "ACME-ACME0001"
        assert agent is not None
        text = "\n".join(agent.lines)
        assert boot.credential not in text and "mla_" not in text
