"""The site's bytes-per-second cap holds for the site as a whole: two real worker
processes stream to two lab laptops of one site, each granted its share from the ledger
in the database (both backends); store installers, copied in a step of their own, take
their share from the same ledger. Asserts on the recorded shares and bytes, never on
timing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from core.db import Database
from core.principal import SYSTEM
from inventory.models import Site
from lab.lab import Lab
from lab.offline import offline_root
from provisioning.pipeline.bandwidth import SENDING_STEPS
from provisioning.runs import service
from provisioning.runs.models import ProvisioningRun, RunStatus
from provisioning.runs.states import STEP_NAMES
from tests.support.factories import World
from tests.support.harness import (
    LINUX_CONFIG,
    TERMINAL,
    Bench,
    activate_config,
    engine_config,
    local_store,
    publish_image,
    publish_installer,
    running_engine,
    set_config,
    store_app,
    worker_process,
)
from tests.support.images import MiB, make_image
from tests.support.waiting import eventually

CAP = MiB  # bytes per second for the whole site
STREAM_INDEX = STEP_NAMES.index("stream")
INSTALLERS_INDEX = STEP_NAMES.index("installers")
DEB = b"!<arch>\ndebian-binary   " + bytes(range(256)) * 8192  # 2 MiB: seconds at CAP


def test_the_sending_steps_are_steps() -> None:
    assert set(SENDING_STEPS) <= set(STEP_NAMES)


def _with_installer(bench: Bench) -> int:
    """The client's configuration now installs a 2 MiB .deb from its store."""
    assert bench.world.acme.id is not None
    zoom, _ = publish_installer(
        bench.db, client_id=bench.world.acme.id, data=DEB, name="zoom-deb", os_family="linux"
    )
    set_config(bench.db, {**LINUX_CONFIG, "apps": [store_app("Zoom", zoom)]})
    return zoom


def _hold_site_rate(bench: Bench, serial: str, *, step: str, share: int) -> None:
    """Another worker, on another host, has a run at ``step`` holding ``share``."""
    from datetime import timedelta

    from core.timeutil import utcnow
    from provisioning.pipeline.bandwidth import SHARE_KEY
    from provisioning.runs.models import ProvisioningRun

    other = bench.device(serial)
    with bench.db.session() as s:
        s.add(
            ProvisioningRun(
                device_id=other.id or 0,
                client_id=other.client_id,
                site_id=bench.world.bench.site_id,
                status=RunStatus.RUNNING,
                step_index=STEP_NAMES.index(step),
                step_name=step,
                worker_id="other-host",
                lease_until=utcnow() + timedelta(hours=1),
                context={SHARE_KEY: share},
            )
        )


def _release_site_rate(bench: Bench) -> None:
    """The other host's run is gone (``_hold_site_rate``)."""
    from sqlmodel import select

    with bench.db.session() as s:
        for row in s.exec(
            select(ProvisioningRun).where(ProvisioningRun.worker_id == "other-host")
        ).all():
            s.delete(row)


@pytest.fixture
def bench(
    db: Database, world: World, lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Bench]:
    with local_store(tmp_path, monkeypatch):
        assert world.acme.id is not None
        # 4 MiB raw, about 2 MiB on the wire: seconds per stream at the capped rate.
        publish_image(
            db,
            client_id=world.acme.id,
            image=make_image(tmp_path / "img", mib=4),
            os_family="linux",
        )
        activate_config(db, client_id=world.acme.id, body=LINUX_CONFIG)
        with db.session() as s:
            site = s.get(Site, world.bench.site_id)
            assert site is not None
            site.max_bytes_per_second = CAP
            site.max_imaging_streams = 4
            s.add(site)
        yield Bench(db=db, world=world, lab=lab, tmp=tmp_path)


def test_two_workers_split_the_site_rate_between_their_streams(bench: Bench) -> None:
    serials = ["ACME0001", "ACME0002"]
    for slot, serial in enumerate(serials, start=1):
        bench.plug(serial, slot=slot)
    runs = [bench.scan(serial, slot=slot) for slot, serial in enumerate(serials, start=1)]
    ids = [r.id for r in runs if r is not None and r.id is not None]
    assert len(ids) == 2
    # Another host holds the whole rate until both streams are ready to send: without
    # it, on a busy machine one worker can send its whole image before the other has
    # started, and the two streams never share the rate.
    _hold_site_rate(bench, "GLBX0001", step="stream", share=CAP)
    # One run per worker process: each may hold a single run at a time.
    env = {"MASTERLINE_WORKER_MAX_PARALLEL": "1", "MASTERLINE_WORKER_SHARE_SECONDS": "0.2"}
    with ExitStack() as stack:
        for name in ("w1", "w2"):
            stack.enter_context(worker_process(bench.db, bench.tmp, worker_id=name, extra_env=env))

        def both_ready_to_send() -> bool:
            return all(
                (c := bench.run(run_id)).step_name == "stream" and c.progress_total > 0
                for run_id in ids
            )

        eventually(both_ready_to_send, timeout=180, message="the streams never got ready")
        _release_site_rate(bench)
        # The streams are what this test is about: each run is stopped once past them.
        pending = set(ids)

        def past_their_streams() -> bool:
            for run_id in sorted(pending):
                run = bench.run(run_id)
                if run.status in TERMINAL:
                    pending.discard(run_id)
                elif run.step_index > STREAM_INDEX:
                    with bench.db.session() as s:
                        service.abort(s, run_id, SYSTEM)
                    pending.discard(run_id)
            return not pending

        eventually(past_their_streams, timeout=120, message=lambda: f"runs {pending} stuck")
        for run_id in ids:
            bench.wait(run_id, timeout=60)

    claimed_by = set()
    for run_id in ids:
        events = bench.run_events(run_id)
        claimed_by |= {e.message for e in events if e.kind == "claimed"}
        done = [e for e in events if e.step == "stream" and e.kind == "step_done"]
        assert len(done) == 1  # the whole image went through, once
        written = done[0].details["written"]
        assert written["bytes_sent"] == bench.run(run_id).progress_total > 0
    assert claimed_by == {"claimed by worker w1", "claimed by worker w2"}

    shares = {
        run_id: [e.details for e in bench.run_events(run_id) if e.kind == "bandwidth"]
        for run_id in ids
    }
    for run_id, granted in shares.items():
        assert granted, f"run {run_id} streamed without a share"
        # While both streamed, each was given half of the site's rate...
        assert {"share_bps": CAP // 2, "site_bps": CAP, "streams": 2} in [
            {k: g[k] for k in ("share_bps", "site_bps", "streams")} for g in granted
        ]
        for g in granted:
            # ...no stream was ever given more than its fair share, and the shares
            # recorded for the site never added up to more than the site's rate.
            assert g["share_bps"] <= g["site_bps"] // g["streams"]
            assert g["site_granted_bps"] <= CAP


def test_a_stream_waits_for_bandwidth_held_elsewhere_and_can_be_aborted(bench: Bench) -> None:
    """Another worker (on another host) holds the whole site rate: this worker's stream
    is granted nothing, so not one byte is written, and an abort still stops it."""
    _hold_site_rate(bench, "ACME0002", step="stream", share=CAP)
    lp = bench.plug("ACME0001", slot=1)
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.id is not None
    run_id = run.id
    config = engine_config(bench.tmp, share_seconds=0.1)
    with running_engine(bench.db, config):
        # The stream is ready to send: it only waits for a share.
        eventually(
            lambda: (c := bench.run(run_id)).step_name == "stream" and c.progress_total > 0,
            message="the stream never got ready",
        )
        with bench.db.session() as s:
            service.abort(s, run.id, SYSTEM)
        done = bench.wait(run.id, timeout=60)
    assert done.status == RunStatus.ABORTED and done.progress_bytes == 0
    assert [e for e in bench.run_events(run.id) if e.kind == "bandwidth"] == []
    assert lp.disk_path.read_bytes().count(0) == lp.disk_path.stat().st_size


def test_store_installers_take_their_share_of_the_site_rate(bench: Bench) -> None:
    """Another host copies installers with half the site's rate: this laptop's stream is
    granted the other half (the ledger counts both sending steps), then its own installer
    copy is granted a share in turn, and the .deb arrives whole."""
    _with_installer(bench)
    _hold_site_rate(bench, "ACME0002", step="installers", share=CAP // 2)
    lp = bench.plug("ACME0001", slot=1)
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.id is not None
    run_id = run.id
    with running_engine(bench.db, engine_config(bench.tmp, share_seconds=0.1)):
        eventually(
            lambda: (c := bench.run(run_id)).status in TERMINAL or c.step_index > INSTALLERS_INDEX,
            timeout=120,
            message="the installers step never ended",
        )
        with bench.db.session() as s:
            service.abort(s, run.id, SYSTEM)  # configure is not what this test is about
        bench.wait(run.id, timeout=60)
    events = bench.run_events(run.id)
    # Every step up to the installers' is done; the reboot after it may or may not be
    # when the abort lands (a loaded machine: it was still rebooting, CI, 2026-12-03).
    done = [e.step for e in events if e.kind == "step_done"]
    assert done[: INSTALLERS_INDEX + 1] == list(STEP_NAMES[: INSTALLERS_INDEX + 1])
    granted = {
        (e.step, e.details["share_bps"], e.details["streams"])
        for e in events
        if e.kind == "bandwidth"
    }
    assert ("stream", CAP // 2, 2) in granted
    assert ("installers", CAP // 2, 2) in granted
    assert all(share <= CAP // 2 for _, share, _ in granted)
    copied = offline_root(lp) / "var/cache/masterline/installers/Zoom.deb"
    if not copied.exists():  # the laptop already rebooted into its OS
        copied = lp.os_root / "var/cache/masterline/installers/Zoom.deb"
    assert copied.read_bytes() == DEB


def test_an_installer_copy_waits_for_bandwidth_held_elsewhere_and_can_be_aborted(
    bench: Bench,
) -> None:
    """The whole site rate is held by another host's stream: a run that reaches its
    installer copy is granted nothing, sends not one byte of it, and an abort stops it."""
    _with_installer(bench)
    _hold_site_rate(bench, "ACME0002", step="stream", share=CAP)
    lp = bench.plug("ACME0001", slot=1)
    run = bench.scan("ACME0001", slot=1)
    assert run is not None and run.id is not None
    with bench.db.session() as s:  # imaged already: the run starts at its installers
        queued = s.get(ProvisioningRun, run.id)
        assert queued is not None
        queued.step_index = INSTALLERS_INDEX
        s.add(queued)
    with running_engine(bench.db, engine_config(bench.tmp, share_seconds=0.1)) as engine:
        # The copy reached its first chunk and is held there at rate 0 (not before it
        # started, when nothing would be sent anyway): the abort comes while it waits.
        eventually(
            lambda: (b := engine.shares.bucket_of(run.id or 0)) is not None and b.held,
            message="the installer copy never waited for a share",
        )
        with bench.db.session() as s:
            service.abort(s, run.id, SYSTEM)
        done = bench.wait(run.id, timeout=60)
    assert done.status == RunStatus.ABORTED and done.step_name == "installers"
    events = bench.run_events(run.id)
    assert [e for e in events if e.kind == "bandwidth"] == []
    assert not [e for e in events if e.kind == "step_done"]
    for root in (offline_root(lp), lp.os_root):
        assert not (root / "var/cache/masterline/installers/Zoom.deb").exists()
