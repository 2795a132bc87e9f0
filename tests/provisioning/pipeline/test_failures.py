"""How a run fails: before a byte is written when it must, with its reason, retried only
when a retry can help."""

from __future__ import annotations

from pathlib import Path

from inventory.states import DeviceState
from lab.faults import Fault
from provisioning.runs.models import RunStatus
from tests.support.harness import (
    Bench,
    disk_untouched,
    engine_config,
    run_with_fault,
    running_engine,
    transitions,
)


def test_identity_mismatch_fails_before_a_byte_is_written(bench: Bench) -> None:
    lp = bench.plug("ACME0001", slot=1, answering_serial="LAB9999")
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.id is not None
    with running_engine(bench.db, engine_config(bench.tmp)):
        done = bench.wait(run.id)
    assert done.status == RunStatus.FAILED
    assert done.failed_step == "identify"
    assert done.last_error is not None and "identity mismatch" in done.last_error
    device = bench.device("ACME0001")
    assert device.state == DeviceState.FAILED_IMAGING
    last = bench.device_events("ACME0001")[-1]
    assert last.reason is not None and last.reason.startswith("identify: identity mismatch")
    assert disk_untouched(lp.disk_path)


def test_flipped_byte_fails_verify_and_never_reaches_ready(bench: Bench) -> None:
    done = run_with_fault(bench, Fault.FLIPPED_BYTE, offset=4096)
    assert done.status == RunStatus.FAILED and done.failed_step == "verify"
    assert done.last_error == "verify: readback of nvme0n1 does not match the image sha256"
    assert bench.device("ACME0001").state == DeviceState.FAILED_IMAGING
    assert all(t[1] != DeviceState.READY for t in transitions(bench, "ACME0001"))


def test_a_failed_flush_fails_verify_at_once(bench: Bench) -> None:
    done = run_with_fault(bench, Fault.FLUSH_ERROR)
    assert done.status == RunStatus.FAILED and done.failed_step == "verify"
    assert done.last_error is not None
    assert done.last_error.startswith("verify: flush of nvme0n1 failed: ")
    assert "Input/output error" in done.last_error
    assert done.last_error.endswith("the disk did not take the image")
    assert done.step_attempt == 1  # fatal: not retried
    assert bench.device("ACME0001").state == DeviceState.FAILED_IMAGING


def test_refused_ssh_is_retried_then_fails_with_its_reason(bench: Bench) -> None:
    done = run_with_fault(bench, Fault.SSH_REFUSED)
    assert done.status == RunStatus.FAILED and done.failed_step == "identify"
    retries = [e for e in bench.run_events(done.id or 0) if e.kind == "retry"]
    assert len(retries) == 3  # 4 attempts in all, then the failure
    assert done.last_error is not None
    assert done.last_error.startswith("identify: ") and "connect" in done.last_error
    assert bench.device("ACME0001").state == DeviceState.FAILED_IMAGING


def test_disk_full_is_fatal_at_once(bench: Bench) -> None:
    done = run_with_fault(bench, Fault.DISK_FULL, after_bytes=1024 * 1024)
    assert done.status == RunStatus.FAILED and done.failed_step == "stream"
    assert done.last_error == "stream: disk nvme0n1 ran out of space while writing"
    assert not [e for e in bench.run_events(done.id or 0) if e.kind == "retry"]


def test_host_key_mismatch_is_fatal(bench: Bench, tmp_path: Path) -> None:
    lp = bench.plug("ACME0001", slot=1)
    other = bench.plug("ACME0002", slot=2)
    key = other.known_hosts_path.read_text().split(" ", 1)[1]
    lp.known_hosts_path.write_text(f"[{lp.host}]:{lp.ssh_port} {key}")
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.id is not None
    with running_engine(bench.db, engine_config(bench.tmp)):
        done = bench.wait(run.id)
    assert done.status == RunStatus.FAILED and done.failed_step == "identify"
    assert done.last_error is not None and "differs from the pinned one" in done.last_error
    assert not [e for e in bench.run_events(run.id) if e.kind == "retry"]
    assert disk_untouched(lp.disk_path)
