"""A wave whose members cannot reach its source falls back to plain streams, bounded:
lab laptops (real sshd on 127.0.0.1) whose relays run in a network namespace of their
own (the test's, with only its loopback up), so the source's address, reachable from
the worker, refuses them, as the worker's 127.0.0.1 refused the VM laptops' PEs. Each
member's relay gets no chunk, leaves the wave after ``relay_first_chunk_seconds`` and
its run streams plainly, saying so in its log; its own verify step reads the image
back. No clock is asserted: the bound only decides when the fallback happens."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from provisioning.pipeline.engine import JobEngine
from provisioning.pipeline.relays import FELL_BACK
from tests.provisioning.pipeline.test_relay_engine import (
    SERIALS,
    _config,
    _disk_holds_image,
    _past_verify,
    _relay_pids,
    _start,
    _verified,
    _written,
    bench,
)
from tests.support.harness import Bench, running_engine
from tests.support.waiting import eventually

__all__ = ["bench"]

pytestmark = pytest.mark.slow


@pytest.fixture
def cut_off() -> Iterator[str]:
    """A network namespace with nothing but its loopback: a PE there reaches no one."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a network namespace")
    name = f"mlrelayfb-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def _engine_with_cut_off_relays(
    bench: Bench, ns: str, **kw: object
) -> AbstractContextManager[JobEngine]:
    def cut_off(engine: JobEngine) -> None:
        assert engine.relays is not None
        script = '"${MASTERLINE_PE_ROOT:-}/opt/masterline/agent/relay.py"'
        engine.relays.command = f"exec ip netns exec {ns} python3 -S {script}"

    return running_engine(bench.db, _config(bench, **kw), prepare=cut_off)


def test_members_that_cannot_reach_the_source_stream_plainly(bench: Bench, cut_off: str) -> None:
    ids = _start(bench, SERIALS[:2])
    with _engine_with_cut_off_relays(bench, cut_off, relay_first_chunk_seconds=3) as engine:
        _past_verify(bench, ids)
        assert engine.relays is not None
        (wave,) = engine.relays.waves  # they did form a wave, and left it
    # Nothing ever left the source: no member took a byte from it.
    assert wave.source.bytes_sent == 0 and wave.source.served == []
    for run_id, serial in zip(ids, SERIALS, strict=False):
        events = bench.run_events(run_id)
        fell = [e.message for e in events if e.kind == "relay_fell_back"]
        assert len(fell) == 1, [e.message for e in events]
        assert fell[0].startswith(f"{FELL_BACK}: no chunk within 3 s of its relay's start")
        # Its stream was a plain one, read back by its own verify step.
        (written,) = _written(bench, run_id)
        assert "relay" not in written and int(str(written["bytes_sent"])) > 0
        assert _verified(bench, run_id), bench.run(run_id).last_error
        assert _disk_holds_image(bench, serial)
        # Its relay was stopped when it left the wave.
        root = bench.laptops[serial].pe_root

        def relay_stopped(root: Path = root) -> bool:
            return not _relay_pids(root)

        eventually(relay_stopped, timeout=30, message="a relay still runs")
