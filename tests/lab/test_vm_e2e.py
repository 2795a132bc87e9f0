"""Two VM laptops from power-on to READY, with nothing wired and nothing faked: QEMU
machines (``lab.vms``: own SMBIOS serial, MAC and blank disk; TCG unless KVM really
runs) on a bench network in a namespace the test creates (bridge, TAP devices, the
site's own DHCP server and Masterline's dnsmasq as proxy-DHCP), the API and a real
``masterline worker`` inside that namespace.

Each VM: BIOS → iPXE → the bench's script → the PE → the agent registers → identity
check → the demo OS image (``lab.demo_os``) streamed and read back → the PE mounts it,
writes the hostname, generates its SSH host key and hands the public half back over the
pinned session → reboot from its own disk → Ansible configures it over SSH with that
key pinned → the gate → READY. Both boot before they are scanned, wait visibly
("booted, not scanned"), and go on once they are scanned in (a laptop scanned before
it boots: tests/lab/test_vm_faults.py). Relay imaging is on (the default): the two
laptops, same image, same site, form one wave served from the worker's bench address,
learned from its SSH sessions; the worker sends one copy, the second PE takes it from
the first. Both are scanned before either can reach its stream step, so the wave
forms whatever the machine's load (with one scanned before the other booted, the
first could reach its stream step alone on a loaded machine and stream plainly).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from sqlmodel import col, select

from boot.registration.models import PeBoot
from inventory.states import DeviceState
from provisioning.bootcontrol import seal
from provisioning.bootcontrol.base import SEALED_OS
from provisioning.runs.models import RunStatus, RunStepEvent
from provisioning.runs.states import STEP_NAMES
from tests.boot.conftest import Boot, boot, boot_settings
from tests.support.harness import local_store
from tests.support.netns import serial_log, vm_skip
from tests.support.vm_laptops import prepare_site, scan, vm_bench
from tests.support.waiting import eventually

__all__ = ["boot", "boot_settings"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vm,
    pytest.mark.lab,
    pytest.mark.xdist_group("vm"),  # one VM test at a time on a 2-core machine
    vm_skip(),
]

DEADLINE = 1200.0  # bounds a hang only (two TCG guests on a loaded 2-core machine)
SERIALS = ("ACME0001", "ACME0002")


@pytest.mark.parametrize("backend", ["sqlite"])  # the API runs in the namespace: a file DB
def test_two_vm_laptops_go_from_power_on_to_ready(
    boot: Boot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASTERLINE_BOOT_RATE_PER_ADDRESS", "1000/minute")
    with local_store(tmp_path, monkeypatch):
        image = prepare_site(boot, tmp_path)
        # A window long enough for the slower PE's next registration on a loaded
        # machine (the wave forms as soon as both are in: this bounds a hang only).
        worker_env = {"MASTERLINE_WORKER_RELAY_WINDOW_SECONDS": "600"}
        with vm_bench(boot, tmp_path, subnet="10.79.0", worker_env=worker_env) as bench:
            t0 = time.monotonic()
            for i, serial in enumerate(SERIALS, start=1):
                bench.power_on(i, serial)
            consoles, what_happened = bench.consoles, bench.what_happened

            # Booted before they were scanned: their PEs wait, and say so on the console.
            def waiting() -> bool:
                bench.alive()
                return all(
                    "reason=booted,-not-scanned" in serial_log(consoles[serial])
                    for serial in SERIALS
                )

            eventually(waiting, timeout=DEADLINE, every=1.0, message=what_happened)
            timings = {"both waiting (booted, not scanned)": time.monotonic() - t0}
            for serial in SERIALS:
                assert bench.run_of(serial) is None  # nothing runs for it yet
            for serial in SERIALS:
                scan(boot, serial)

            registered: dict[str, float] = {}
            ready: dict[str, float] = {}

            def all_done() -> bool:
                bench.alive()
                for serial in SERIALS:
                    if serial not in registered and "MASTERLINE-AGENT registered" in serial_log(
                        consoles[serial]
                    ):
                        registered[serial] = time.monotonic() - t0
                    run = bench.run_of(serial)
                    if run is not None and run.status == RunStatus.FAILED:
                        raise AssertionError(f"{serial} failed\n{what_happened()}")
                    if serial not in ready and bench.device(serial).state == DeviceState.READY:
                        ready[serial] = time.monotonic() - t0
                return len(ready) == len(SERIALS)

            eventually(all_done, timeout=DEADLINE, every=1.0, message=what_happened)
            for serial in SERIALS:
                timings[f"{serial} power-on -> registered"] = registered[serial]
                timings[f"{serial} power-on -> READY"] = ready[serial]
            print(f"\nVM e2e timings (s, accel={bench.accel}): {timings}")
            (tmp_path / "timings.txt").write_text(repr(timings))

            relayed: dict[str, dict[str, object]] = {}
            for serial in SERIALS:
                run = bench.run_of(serial)
                assert run is not None and run.status == RunStatus.SUCCEEDED
                assert run.context["readback_sha256"] == image.raw_sha256
                with boot.db.session(write=False) as s:
                    events = s.exec(
                        select(RunStepEvent)
                        .where(RunStepEvent.run_id == run.id)
                        .order_by(col(RunStepEvent.seq))
                    ).all()
                    (pe,) = s.exec(select(PeBoot).where(PeBoot.device_id == run.device_id)).all()
                assert [e.step for e in events if e.kind == "step_done"] == list(STEP_NAMES)
                # Imaged through the relay, from the worker's address on the bench
                # network (not 127.0.0.1, which no PE reaches), never falling back.
                (streamed,) = [e for e in events if e.step == "stream" and e.kind == "step_done"]
                relayed[serial] = streamed.details["written"]["relay"]
                learned = [e.details["host"] for e in events if e.kind == "relay_address"]
                assert learned and set(learned) == {bench.net.address}
                assert not [e for e in events if e.kind == "relay_fell_back"]
                # Each step's duration, for docs/benchmarks.md (printed, never asserted).
                started = {e.step: e.at for e in events if e.kind == "step_started"}
                phases = {
                    e.step: round((e.at - started[e.step]).total_seconds(), 1)
                    for e in events
                    if e.kind == "step_done" and e.step in started
                }
                print(f"{serial} steps (s): {phases}")
                # The installed OS came up from its own disk with the hostname the PE wrote
                # and the host key the PE generated in it: the one the worker pinned.
                assert pe.id is not None
                # Recorded in the run, in the database (no worker's file).
                sealed = seal.from_record(run.context.get(SEALED_OS), pe.id)
                assert sealed is not None and not sealed.package_manager
                console = serial_log(consoles[serial])
                up = re.search(r"MASTERLINE-OS up (\S+) ssh (ssh-ed25519 \S+)", console)
                assert up is not None, console[-2000:]
                assert up.group(1) == f"ACME-{serial}"
                assert up.group(2) == sealed.host_key
                assert sealed.host_key.split()[1] != pe.host_key.split()[1]
                assert boot.credential not in console
            # One wave of both; the worker sent one copy: the head took it from the
            # source, the other laptop from the head.
            waves = {str(r["wave"]) for r in relayed.values()}
            assert len(waves) == 1 and all(r["members"] == 2 for r in relayed.values())
            head, tail = sorted(relayed.values(), key=lambda r: r["upstreams"] != ["source"])
            assert head["upstreams"] == ["source"] and tail["upstreams"] == [head["member"]]
        assert all(p.poll() is not None for p in bench.net.procs)
