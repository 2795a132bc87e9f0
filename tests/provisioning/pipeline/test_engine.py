"""The engine's claim and the device side of a run, on a real database and no lab:
what the end-to-end pipeline tests reach only through lab laptops."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import select

from core.db import Database
from core.timeutil import utcnow
from inventory import lifecycle
from inventory.models import Device, Site
from inventory.states import DeviceState, Event
from provisioning.errors import CommandFailed, GateFailed
from provisioning.pipeline import stages
from provisioning.pipeline.config import EngineConfig
from provisioning.pipeline.engine import JobEngine
from provisioning.runs.models import ProvisioningRun, RunStatus, RunStepEvent
from tests.support.factories import World, create_devices


def _queued_runs(db: Database, world: World, n: int, *, limit: int) -> list[int]:
    """``n`` laptops of the world's site queued, the site allowing ``limit`` streams."""
    serials = [f"Q{i:04d}" for i in range(n)]
    with db.session() as s:
        site = s.get(Site, world.bench.site_id)
        assert site is not None
        site.max_imaging_streams = limit
        s.add(site)
        devices = create_devices(s, delivery=world.acme_delivery, serials=serials)
        runs = []
        for d in devices:
            for event in (Event.RECEIVE, Event.QUEUE):
                lifecycle.apply(s, d, event, actor="test")
            run = ProvisioningRun(
                device_id=d.id or 0, client_id=d.client_id, site_id=world.bench.site_id
            )
            s.add(run)
            runs.append(run)
        s.flush()
        return [r.id or 0 for r in runs]


def _engine(db: Database, tmp_path: Path, worker_id: str, **kw: Any) -> JobEngine:
    return JobEngine(db, EngineConfig(worker_id=worker_id, cache_dir=tmp_path / "cache", **kw))


def _run(db: Database, run_id: int) -> ProvisioningRun:
    with db.session(write=False) as s:
        run = s.get(ProvisioningRun, run_id)
        assert run is not None
        return run


def _kinds(db: Database, run_id: int) -> list[str]:
    with db.session(write=False) as s:
        stmt = select(RunStepEvent).where(RunStepEvent.run_id == run_id)
        return [e.kind for e in s.exec(stmt).all()]


def test_workers_together_keep_a_site_under_its_stream_limit(
    db: Database, world: World, tmp_path: Path
) -> None:
    ids = _queued_runs(db, world, 5, limit=3)
    first = _engine(db, tmp_path, "w1", max_parallel=2)
    second = _engine(db, tmp_path, "w2", max_parallel=8)
    assert first.claim() == ids[:2]  # its own two threads
    assert second.claim() == ids[2:3]  # the site's third stream; w1 holds two
    assert second.claim() == []
    for run_id in ids[:3]:
        run = _run(db, run_id)
        assert run.status == RunStatus.RUNNING and run.lease_until is not None
        assert _kinds(db, run_id)[-1] == "claimed"
    assert {_run(db, i).status for i in ids[3:]} == {RunStatus.QUEUED}


def test_a_restarted_worker_takes_its_own_runs_back_and_others_wait_for_the_lease(
    db: Database, world: World, tmp_path: Path
) -> None:
    (run_id,) = _queued_runs(db, world, 1, limit=1)
    assert _engine(db, tmp_path, "w1").claim() == [run_id]
    # Another worker leaves a live lease alone; w1 restarted (same id) takes it back.
    assert _engine(db, tmp_path, "w2").claim() == []
    assert _engine(db, tmp_path, "w1").claim() == [run_id]
    assert _kinds(db, run_id)[-2:] == ["claimed", "resumed"]
    with db.session() as s:
        run = s.get(ProvisioningRun, run_id)
        assert run is not None
        run.lease_until = utcnow() - timedelta(seconds=1)  # w1 died
        s.add(run)
    assert _engine(db, tmp_path, "w2").claim() == [run_id]
    assert _run(db, run_id).worker_id == "w2"


def _running(db: Database, world: World, tmp_path: Path) -> ProvisioningRun:
    (run_id,) = _queued_runs(db, world, 1, limit=1)
    _engine(db, tmp_path, "w1").claim()
    return _run(db, run_id)


def _device(db: Database, device_id: int) -> Device:
    with db.session(write=False) as s:
        device = s.get(Device, device_id)
        assert device is not None
        return device


def test_a_step_that_fails_for_good_fails_device_and_run_with_one_reason(
    db: Database, world: World, tmp_path: Path
) -> None:
    run = _running(db, world, tmp_path)
    with db.session() as s:
        locked = s.get(ProvisioningRun, run.id)
        assert locked is not None
        stages.fail(s, locked, step="identify", error=CommandFailed("no answer"), actor="w")
    done = _run(db, run.id or 0)
    assert done.status == RunStatus.FAILED and done.failed_step == "identify"
    assert done.last_error == "identify: no answer"
    assert done.worker_id is None and done.lease_until is None and done.finished_at
    device = _device(db, done.device_id)
    assert device.state == DeviceState.FAILED_IMAGING  # through IMAGING from QUEUED


def test_a_failed_gate_keeps_its_checks_in_the_device_history(
    db: Database, world: World, tmp_path: Path
) -> None:
    run = _running(db, world, tmp_path)
    failed = [{"name": "hostname", "ok": False, "detail": "is HOST1"}]
    with db.session() as s:
        device = s.get(Device, run.device_id)
        assert device is not None
        for stage in (DeviceState.IMAGING, DeviceState.CONFIGURING, DeviceState.VERIFYING):
            stages.enter(s, device, stage, run, actor="w")
        locked = s.get(ProvisioningRun, run.id)
        assert locked is not None
        stages.fail(s, locked, step="gate", error=GateFailed(failed), actor="w")
    assert _device(db, run.device_id).state == DeviceState.FAILED_VERIFYING
    with db.session(write=False) as s:
        stmt = select(RunStepEvent).where(RunStepEvent.run_id == run.id)
        last = s.exec(stmt).all()[-1]
    assert last.kind == "failed" and last.details["failed_checks"] == failed


def test_the_last_step_done_makes_the_laptop_ready(
    db: Database, world: World, tmp_path: Path
) -> None:
    run = _running(db, world, tmp_path)
    with db.session() as s:
        device = s.get(Device, run.device_id)
        assert device is not None
        assert stages.enter(s, device, DeviceState.VERIFYING, run, actor="w")
        locked = s.get(ProvisioningRun, run.id)
        assert locked is not None
        stages.complete(s, locked, step="gate", checks=[], actor="w")
    done = _run(db, run.id or 0)
    assert done.status == RunStatus.SUCCEEDED and done.step_name is None
    assert done.worker_id is None and done.finished_at is not None
    assert _device(db, run.device_id).state == DeviceState.READY


def test_a_working_state_held_past_its_timeout_fails_device_and_run(
    db: Database, world: World, tmp_path: Path
) -> None:
    run = _running(db, world, tmp_path)
    with db.session() as s:
        device = s.get(Device, run.device_id)
        assert device is not None
        stages.enter(s, device, DeviceState.IMAGING, run, actor="w")
    assert stages.sweep_timeouts(db, {DeviceState.IMAGING: timedelta(0)}) == 1
    done = _run(db, run.id or 0)
    assert done.status == RunStatus.FAILED and "timed out" in (done.last_error or "")
    assert _device(db, run.device_id).state == DeviceState.FAILED_IMAGING


def test_a_device_moved_elsewhere_cannot_be_entered_into_a_stage(
    db: Database, world: World, tmp_path: Path
) -> None:
    run = _running(db, world, tmp_path)
    with db.session() as s:
        device = s.get(Device, run.device_id)
        assert device is not None
        stages.enter(s, device, DeviceState.CONFIGURING, run, actor="w")
        assert not stages.enter(s, device, DeviceState.IMAGING, run, actor="w")
