"""Relay imaging through the engine: lab laptops (real sshd processes on 127.0.0.1)
whose runs reach the stream step together are imaged from one copy relayed PE to PE,
each run's own verify step reading its disk back. A member killed mid-wave (head,
middle, tail) costs the others a reconnection and its own run a retry that rejoins the
wave and resumes from its rechecked offset; a corrupt relay is bypassed; a capped
site's ledger counts the wave as one stream. Runs are stopped once past verify: the
later steps are the pipeline's other tests'."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from core.db import Database
from core.principal import SYSTEM
from images.manifest import Manifest
from inventory.models import Site
from lab.faults import Fault
from lab.lab import Lab
from provisioning.pipeline.bandwidth import RELAY_KEY
from provisioning.pipeline.config import EngineConfig
from provisioning.relay.plan import SOURCE
from provisioning.relay.source import FRAME
from provisioning.runs import service
from provisioning.runs.cli import runs_table
from provisioning.runs.models import RunStatus
from provisioning.runs.schemas import RunRead
from provisioning.runs.states import STEP_NAMES
from tests.provisioning.relay.conftest import Gate
from tests.support.factories import World, create_devices
from tests.support.harness import (
    LINUX_CONFIG,
    TERMINAL,
    Bench,
    activate_config,
    engine_config,
    local_store,
    publish_image,
    running_engine,
)
from tests.support.images import GeneratedImage, MiB, make_image
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

CHUNK = 128 * 1024
VERIFY_INDEX = STEP_NAMES.index("verify")
SERIALS = ["ACME0001", "ACME0002", "ACME0003"]


@pytest.fixture
def bench(
    db: Database, world: World, lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Bench]:
    with local_store(tmp_path, monkeypatch):
        assert world.acme.id is not None
        image = make_image(tmp_path / "img", mib=4)  # 32 chunks of 128 KiB
        publish_image(db, client_id=world.acme.id, image=image, os_family="linux")
        activate_config(db, client_id=world.acme.id, body=LINUX_CONFIG)
        with db.session() as s:
            create_devices(s, delivery=world.acme_delivery, serials=["ACME0003"])
        b = Bench(db=db, world=world, lab=lab, tmp=tmp_path)
        b.image = image  # type: ignore[attr-defined]
        yield b


def _config(bench: Bench, **kw: object) -> EngineConfig:
    kw.setdefault("relay_window_seconds", 60)
    return engine_config(
        bench.tmp,
        relay=True,
        relay_chunk_bytes=CHUNK,
        share_seconds=0.2,
        # Page-cache writes of lab disks vary with the machine's load: no reordering
        # here (tests/provisioning/relay/test_resume_slow.py tests it with a slow disk).
        relay_slow_ratio=0,
        **kw,
    )


def _start(bench: Bench, serials: list[str]) -> list[int]:
    for slot, serial in enumerate(serials, start=1):
        bench.plug(serial, slot=slot)
    ids = []
    for slot, serial in enumerate(serials, start=1):
        run = bench.scan(serial, slot=slot)
        assert run is not None and run.id is not None
        ids.append(run.id)
    return ids


def _past_verify(bench: Bench, ids: list[int], *, timeout: float = 240) -> None:
    """Wait until every run is past its verify step (then stop it) or finished."""
    pending = set(ids)

    def done() -> bool:
        for run_id in sorted(pending):
            run = bench.run(run_id)
            if run.status in TERMINAL:
                pending.discard(run_id)
            elif run.step_index > VERIFY_INDEX:
                with bench.db.session() as s:
                    service.abort(s, run_id, SYSTEM)
                pending.discard(run_id)
        return not pending

    eventually(done, timeout=timeout, every=0.2, message=lambda: f"runs {pending} stuck")
    for run_id in ids:
        bench.wait(run_id, timeout=60)


def _verified(bench: Bench, run_id: int) -> bool:
    """Its own verify step read the image back from its disk."""
    return any(e.step == "verify" and e.kind == "step_done" for e in bench.run_events(run_id))


def _written(bench: Bench, run_id: int) -> list[dict[str, Any]]:
    return [
        e.details["written"]
        for e in bench.run_events(run_id)
        if e.step == "stream" and e.kind == "step_done"
    ]


def _disk_holds_image(bench: Bench, serial: str) -> bool:
    image: GeneratedImage = bench.image  # type: ignore[attr-defined]
    import hashlib

    with open(bench.laptops[serial].disk_path, "rb") as f:
        return hashlib.sha256(f.read(image.raw_size)).hexdigest() == image.raw_sha256


def _one_copy(manifest: Manifest) -> int:
    import hashlib

    zero = hashlib.sha256(bytes(manifest.chunk_size)).hexdigest()
    return sum(
        FRAME.size + (0 if h == zero else manifest.chunk_length(i))
        for i, h in enumerate(manifest.chunks)
    )


def _relay_pids(pe_root: Path) -> list[int]:
    """The relay processes of one lab laptop's PE (its relay.py path is its own)."""
    script = str(pe_root / "opt/masterline/agent/relay.py").encode()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if script in cmdline.split(b"\0"):
                pids.append(int(entry))
    return pids


def _state_verified(bench: Bench, serial: str) -> int:
    import json

    folder = bench.laptops[serial].pe_root / "var/lib/masterline/relay"
    try:
        (path,) = list(folder.glob("*.json"))
        return int(json.loads(path.read_text())["verified"])
    except (OSError, ValueError):
        return 0


def test_runs_ready_together_are_one_wave_from_one_copy(bench: Bench) -> None:
    cap = MiB  # the wave's data (2 MiB) takes seconds: the ledger re-rates meanwhile
    with bench.db.session() as s:
        site = s.get(Site, bench.world.bench.site_id)
        assert site is not None
        site.max_bytes_per_second = cap
        s.add(site)
    ids = _start(bench, SERIALS)
    with running_engine(bench.db, _config(bench)) as engine:
        _past_verify(bench, ids)
        assert engine.relays is not None
        (wave,) = engine.relays.waves
    image: GeneratedImage = bench.image  # type: ignore[attr-defined]
    members = []
    for run_id, serial in zip(ids, SERIALS, strict=True):
        assert _verified(bench, run_id), bench.run(run_id).last_error
        assert _disk_holds_image(bench, serial)
        (written,) = _written(bench, run_id)
        relay = written["relay"]
        assert isinstance(relay, dict)
        assert relay["wave"] == wave.id and relay["members"] == 3
        members.append(relay)
        # The bench view's progress is the member's: its whole image, verified.
        run = bench.run(run_id)
        assert run.progress_bytes == run.progress_total == image.raw_size
        assert run.context.get(RELAY_KEY) is None  # left the wave with its step
    # A chain, in the order they joined: each took the stream from the one before it;
    # the server sent one copy.
    members.sort(key=lambda m: wave.route.order.index(str(m["member"])))
    assert [m["upstreams"] for m in members] == [
        [SOURCE],
        [members[0]["member"]],
        [members[1]["member"]],
    ]
    assert wave.source.served == [(str(members[0]["member"]), 0)]
    assert wave.source.bytes_sent == _one_copy(wave.manifest)
    # No address was configured: the source listens at the local address of the
    # worker's SSH session to the laptops (their lab sshd answers on 127.0.0.1), and
    # each run's log says where it was served from and how that was learned.
    assert wave.source.address[0] == "127.0.0.1"
    for run_id in ids:
        learned = [e for e in bench.run_events(run_id) if e.kind == "relay_address"]
        assert learned and all(e.details["host"] == "127.0.0.1" for e in learned)
        assert learned[0].message == "relay: the worker serves it from 127.0.0.1 (its SSH session)"
    # The ledger counted the wave as one stream: its carrier was given the whole rate.
    shares = [e.details for r in ids for e in bench.run_events(r) if e.kind == "bandwidth"]
    assert {"share_bps": cap, "streams": 1} in [
        {k: g[k] for k in ("share_bps", "streams")} for g in shares
    ]
    assert all(g["site_granted_bps"] <= cap for g in shares)


def test_a_busy_worker_does_not_wait_for_runs_it_cannot_take(bench: Bench) -> None:
    """Three laptops, a worker of two threads, a window of an hour: the two it runs form
    their wave at once; the third, queued behind them, is not waited for (it cannot
    reach the stream step before a thread frees), so nothing waits for the window."""
    ids = _start(bench, SERIALS)
    config = _config(bench, max_parallel=2, relay_window_seconds=3600)
    with running_engine(bench.db, config) as engine:
        _past_verify(bench, ids, timeout=600)  # the old rule would wait the hour
        assert engine.relays is not None
        first = engine.relays.waves[0]
    relayed = [w["relay"] for r in ids for w in _written(bench, r) if "relay" in w]
    assert len([r for r in relayed if r["wave"] == first.id]) >= 2
    for run_id, serial in zip(ids, SERIALS, strict=True):
        assert _verified(bench, run_id), bench.run(run_id).last_error
        assert _disk_holds_image(bench, serial)


def test_a_laptop_alone_streams_plainly(bench: Bench) -> None:
    (run_id,) = _start(bench, SERIALS[:1])
    with running_engine(bench.db, _config(bench)) as engine:
        _past_verify(bench, [run_id])
        assert engine.relays is not None and engine.relays.waves == []
    assert _verified(bench, run_id)
    (written,) = _written(bench, run_id)
    assert "relay" not in written and int(str(written["bytes_sent"])) > 0


@pytest.mark.parametrize("victim", [0, 1, 2], ids=["head", "middle", "tail"])
def test_member_killed_mid_wave_rejoins_and_resumes(bench: Bench, victim: int) -> None:
    held = 8  # chunks every member holds when the victim's relay dies
    ids = _start(bench, SERIALS)
    gate = Gate(held)
    with running_engine(bench.db, _config(bench)) as engine:
        assert engine.relays is not None
        engine.relays.hold = gate
        eventually(
            lambda: all(_state_verified(bench, s) >= held for s in SERIALS),
            timeout=180,
            message="the wave never reached the gate",
        )
        (wave,) = engine.relays.waves
        order = list(wave.route.order)  # the chain, in the order the laptops joined
        victim_run = int(order[victim][1:].split("-")[0])  # members are r<run id>-<n>
        serial = SERIALS[ids.index(victim_run)]
        (pid,) = _relay_pids(bench.laptops[serial].pe_root)
        os.kill(pid, signal.SIGKILL)  # its PE went away mid-wave
        # Its run retries the stream and joins the wave again, at the tail, while the
        # source is still held; the others wait at the gate meanwhile.
        eventually(
            lambda: any(e.kind == "relay_resumed" for e in bench.run_events(victim_run)),
            timeout=120,
            message="the killed laptop never rejoined",
        )
        gate.opened.set()
        _past_verify(bench, ids)
        assert engine.relays.waves == [wave]
    for run_id, s in zip(ids, SERIALS, strict=True):
        assert _verified(bench, run_id), (s, bench.run(run_id).last_error)
        assert _disk_holds_image(bench, s)
    events = bench.run_events(victim_run)
    assert [e.kind for e in events if e.kind == "retry"] == ["retry"]
    (resumed,) = [e for e in events if e.kind == "relay_resumed"]
    # From its own offset, rechecked (not from 0): what it had verified before.
    assert int(resumed.details["offset"]) >= held * CHUNK
    (written,) = _written(bench, victim_run)
    relay = written["relay"]
    assert isinstance(relay, dict) and relay["wave"] == wave.id
    # It rejoined at the tail.
    assert wave.route.order[:3] == order and wave.route.order[3] == relay["member"]
    if victim == 0:
        # The next member resumed from the server where it stood, not from 0.
        assert wave.source.served == [(order[0], 0), (order[1], held)]
    else:
        assert wave.source.served == [(order[0], 0)]
        assert wave.source.bytes_sent == _one_copy(wave.manifest)


def test_corrupt_relay_is_bypassed_and_its_verified_run_goes_on(bench: Bench) -> None:
    faulty = Path(__file__).parents[1] / "relay" / "faulty_relay.py"
    middle = bench.plug(SERIALS[1], slot=2)
    agent = middle.pe_root / "opt/masterline/agent"
    os.replace(agent / "relay.py", agent / "relay_real.py")
    (agent / "relay.py").write_text(
        "import runpy, sys\n"
        f"sys.argv = [{str(faulty)!r}, {str(agent / 'relay_real.py')!r}, 'forward']\n"
        f"runpy.run_path({str(faulty)!r}, run_name='__main__')\n"
    )
    for slot in (1, 3):
        bench.plug(SERIALS[slot - 1], slot=slot)
    ids = []
    for slot, serial in enumerate(SERIALS, start=1):
        run = bench.scan(serial, slot=slot)
        assert run is not None and run.id is not None
        ids.append(run.id)
    gate = Gate(4)  # the source held: the corrupt relay cannot finish before it is found
    with running_engine(bench.db, _config(bench)) as engine:
        assert engine.relays is not None
        engine.relays.hold = gate
        eventually(
            lambda: any(e.kind == "relay_bypassed" for e in bench.run_events(ids[1])),
            timeout=120,
            message="the laptop behind the corrupt relay never found it",
        )
        gate.opened.set()
        _past_verify(bench, ids)
    # Its own disk read back right: its run goes on (its verify step passes); only
    # the link was blamed, bypassed and recorded in its log.
    bad_events = [e.details for e in bench.run_events(ids[1]) if e.kind == "relay_bypassed"]
    assert bad_events and bad_events[0]["downstream"]
    for run_id, serial in ((ids[0], SERIALS[0]), (ids[1], SERIALS[1]), (ids[2], SERIALS[2])):
        assert _verified(bench, run_id)
        assert _disk_holds_image(bench, serial)
    # The laptop behind it went around it, to the head.
    (written,) = _written(bench, ids[2])
    relay = written["relay"]
    assert isinstance(relay, dict)
    assert relay["upstreams"][-1] == _written(bench, ids[0])[0]["relay"]["member"]


@pytest.mark.parametrize(
    ("fault", "params", "error"),
    [
        (
            Fault.FLIPPED_BYTE,
            {"offset": 4096},
            "verify: readback of nvme0n1 does not match the image sha256",
        ),
        (Fault.FLUSH_ERROR, {}, "verify: flush of nvme0n1 failed: "),
    ],
)
def test_a_relayed_disk_that_lies_fails_at_verify_as_a_streamed_one(
    bench: Bench, fault: Fault, params: dict[str, int], error: str
) -> None:
    """The lab's disk fault holds for the relay's writes (lab/pe_disk_hook.py): the
    run fails where and why a plainly streamed laptop's does (test_failures.py), and
    the laptops around it are imaged."""
    middle = bench.plug(SERIALS[1], slot=2)
    bench.lab.set_fault(middle.name, fault, **params)
    for slot in (1, 3):
        bench.plug(SERIALS[slot - 1], slot=slot)
    ids = []
    for slot, serial in enumerate(SERIALS, start=1):
        run = bench.scan(serial, slot=slot)
        assert run is not None and run.id is not None
        ids.append(run.id)
    with running_engine(bench.db, _config(bench)) as engine:
        _past_verify(bench, ids)
        assert engine.relays is not None and len(engine.relays.waves) == 1
    bad = bench.run(ids[1])
    assert bad.status == RunStatus.FAILED and bad.failed_step == "verify"
    assert bad.last_error is not None and bad.last_error.startswith(error)
    assert any(e.kind == "relay_readback_bad" for e in bench.run_events(ids[1]))
    assert not _disk_holds_image(bench, SERIALS[1]) or fault == Fault.FLUSH_ERROR
    for run_id, serial in ((ids[0], SERIALS[0]), (ids[2], SERIALS[2])):
        assert _verified(bench, run_id)
        assert _disk_holds_image(bench, serial)


def test_an_aborted_member_leaves_and_the_wave_finishes(bench: Bench) -> None:
    held = 8
    ids = _start(bench, SERIALS)
    gate = Gate(held)
    with running_engine(bench.db, _config(bench)) as engine:
        assert engine.relays is not None
        engine.relays.hold = gate
        eventually(
            lambda: all(_state_verified(bench, s) >= held for s in SERIALS),
            timeout=180,
            message="the wave never reached the gate",
        )
        (wave,) = engine.relays.waves

        # The bench view shows each member's own progress, and its wave.
        def rows() -> list[RunRead]:
            return [
                RunRead.of(bench.run(r), serial=s, bench_id=1, slot=i, device_state="imaging")
                for i, (r, s) in enumerate(zip(ids, SERIALS, strict=True), start=1)
            ]

        # Each member's progress is what its own disk verified (held at the gate).
        eventually(
            lambda: all(r.progress_bytes == held * CHUNK for r in rows()),
            timeout=60,
            message=lambda: str([r.progress_bytes for r in rows()]),
        )
        assert {r.relay_wave for r in rows()} == {wave.id}
        console = Console(width=200, record=True)
        console.print(runs_table([r.model_dump(mode="json") for r in rows()]))
        assert console.export_text().count(f"stream (relay {wave.id})") == 3
        middle = int(wave.route.order[1][1:].split("-")[0])
        with bench.db.session() as s:
            service.abort(s, middle, SYSTEM)
        # Its run leaves the wave (its relay stopped) while the source is still held.
        bench.wait(middle, timeout=60)
        gate.opened.set()
        _past_verify(bench, ids)
    assert bench.run(middle).status == RunStatus.ABORTED
    assert wave.route.dead == {wave.route.order[1]}
    for run_id, serial in zip(ids, SERIALS, strict=True):
        if run_id != middle:
            assert _verified(bench, run_id), bench.run(run_id).last_error
            assert _disk_holds_image(bench, serial)
    # The tail went around it, to the head.
    written = [_written(bench, r)[0]["relay"] for r in ids if r != middle]
    (tail,) = [w for w in written if w["member"] == wave.route.order[2]]
    assert tail["upstreams"][-1] == wave.route.order[0]


def test_a_laptop_ready_later_joins_the_running_wave_at_the_tail(bench: Bench) -> None:
    held = 8
    ids = _start(bench, SERIALS[:2])
    gate = Gate(held)
    with running_engine(bench.db, _config(bench)) as engine:
        assert engine.relays is not None
        engine.relays.hold = gate
        eventually(
            lambda: all(_state_verified(bench, s) >= held for s in SERIALS[:2]),
            timeout=180,
            message="the wave never reached the gate",
        )
        bench.plug(SERIALS[2], slot=3)
        late = bench.scan(SERIALS[2], slot=3)
        assert late is not None and late.id is not None
        # While the source is held, the tail gives the late laptop what it missed.
        eventually(lambda: _state_verified(bench, SERIALS[2]) >= held, timeout=120)
        gate.opened.set()
        _past_verify(bench, [*ids, late.id])
        (wave,) = engine.relays.waves
    for run_id, serial in zip([*ids, late.id], SERIALS, strict=True):
        assert _verified(bench, run_id), bench.run(run_id).last_error
        assert _disk_holds_image(bench, serial)
    relay = _written(bench, late.id)[0]["relay"]
    assert isinstance(relay, dict)
    assert relay["member"] == wave.route.order[2] and relay["upstreams"] == [wave.route.order[1]]
    assert wave.source.served == [(wave.route.order[0], 0)]
    assert wave.source.bytes_sent == _one_copy(wave.manifest)
