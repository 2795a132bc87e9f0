"""Relayed waves with real processes: a clean chain, a member killed at the head, in
the middle and at the tail, a corrupt relay, a lying disk, a late joiner. Every disk
is checked against the image here, not only through the members' own reports."""

from __future__ import annotations

import queue
import time
from pathlib import Path

import pytest

from images.manifest import Manifest
from provisioning.relay.plan import SOURCE
from provisioning.relay.source import FRAME
from provisioning.relay.wave import Wave
from tests.provisioning.relay.conftest import CHUNK, Gate, Running, relay_argv, sha
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


def one_copy(manifest: Manifest) -> int:
    """The bytes the source sends for one whole copy (zero chunks are a header)."""
    zero = {manifest.chunk_length(i) for i in range(len(manifest.chunks))}
    import hashlib

    zero_hashes = {hashlib.sha256(bytes(n)).hexdigest() for n in zero}
    return sum(
        FRAME.size + (0 if h in zero_hashes else manifest.chunk_length(i))
        for i, h in enumerate(manifest.chunks)
    )


def connections(wave: Wave, member: str) -> list[tuple[str, int]]:
    return [
        (str(e["upstream"]), int(e["offset"]))
        for e in wave.outcomes[member].events
        if e.get("event") == "connected"
    ]


def test_chain_of_six_sends_one_copy(image: tuple[Path, Manifest], disks: Path) -> None:
    path, manifest = image
    names = [f"m{i}" for i in range(6)]
    with Wave(image=path, manifest=manifest) as wave:
        for name in names:
            wave.add(name, relay_argv(), disks / name)
        outcomes = wave.wait(deadline=time.monotonic() + 240)
        assert {n: o.ok for n, o in outcomes.items()} == dict.fromkeys(names, True)
        for name in names:
            assert sha(disks / name) == manifest.sha256
        # Each member took the stream from the one before it; the server sent one copy.
        for i, name in enumerate(names):
            assert connections(wave, name) == [(names[i - 1] if i else SOURCE, 0)]
        assert wave.source.served == [("m0", 0)]
        assert wave.source.bytes_sent == one_copy(manifest)


@pytest.mark.parametrize("victim", [0, 2, 4], ids=["head", "middle", "tail"])
def test_member_killed_mid_wave(image: tuple[Path, Manifest], disks: Path, victim: int) -> None:
    path, manifest = image
    names = [f"m{i}" for i in range(5)]
    held = 8  # chunks everyone holds when the victim dies
    gate = Gate(held)
    with Wave(image=path, manifest=manifest, pace=gate) as wave:
        for name in names:
            wave.add(name, relay_argv(), disks / name)
        running = Running(wave).start()
        tail = disks / names[-1]
        eventually(lambda: tail.exists() and tail.stat().st_size >= held * CHUNK)
        wave.members[names[victim]].process.proc.kill()
        gate.opened.set()
        outcomes = running.join()

        for i, name in enumerate(names):
            if i == victim:
                assert outcomes[name].ok is False
                assert "stopped before the image was verified" in outcomes[name].reason
            else:
                assert outcomes[name].ok is True, (name, outcomes[name].reason)
                assert sha(disks / name) == manifest.sha256
        if victim < len(names) - 1:
            # The next member resumed from its own verified offset, one hop further up.
            after = names[victim + 1]
            further = names[victim - 1] if victim else SOURCE
            assert connections(wave, after)[-1] == (further, held * CHUNK)
        if victim == 0:
            # The head's successor resumed from the server where it stood, not from 0.
            assert wave.source.served == [("m0", 0), ("m1", held)]
        else:
            assert wave.source.served == [("m0", 0)]
            assert wave.source.bytes_sent == one_copy(manifest)


def test_corrupt_relay_is_bypassed(image: tuple[Path, Manifest], disks: Path) -> None:
    path, manifest = image
    names = ["m0", "m1", "m2", "m3"]
    with Wave(image=path, manifest=manifest) as wave:
        for name in names:
            wave.add(name, relay_argv("forward" if name == "m1" else None), disks / name)
        outcomes = wave.wait(deadline=time.monotonic() + 240)
        # Its own disk read back right: it keeps its success; only its link is blamed.
        assert outcomes["m1"].ok is True
        assert sha(disks / "m1") == manifest.sha256
        assert "m1" in wave.route.corrupt
        assert any(e.get("event") == "forwarded_corrupt" for e in outcomes["m1"].events)
        # The first data chunk m1 forwarded (zero chunks go as a header) was refused,
        # and m2 resumed from there at m0: nothing it had verified was fetched again.
        (corrupt,) = [e for e in outcomes["m2"].events if e.get("event") == "corrupt"]
        assert corrupt["upstream"] == "m1"
        assert connections(wave, "m2")[-1] == ("m0", corrupt["chunk"] * CHUNK)
        for name in ("m0", "m2", "m3"):
            assert outcomes[name].ok is True
            assert sha(disks / name) == manifest.sha256


def test_a_relay_that_verified_its_disk_keeps_its_success(
    image: tuple[Path, Manifest], disks: Path
) -> None:
    """A member whose own read back passed stays a success when a laptop that joins
    behind it later finds the chunks it forwards corrupt: its link is bypassed, its
    verified disk is not un-verified."""
    path, manifest = image
    with Wave(image=path, manifest=manifest) as wave:
        wave.add("m0", relay_argv(), disks / "m0")
        wave.add("m1", relay_argv("forward"), disks / "m1")
        deadline = time.monotonic() + 240
        while wave.outcomes["m1"].ok is None and time.monotonic() < deadline:
            try:
                name, event = wave.inbox.get(timeout=1.0)
            except queue.Empty:
                continue
            wave.handle(name, event)
        assert wave.outcomes["m1"].ok is True
        wave.add("m2", relay_argv(), disks / "m2")  # at the tail: behind m1
        outcomes = wave.wait(deadline=time.monotonic() + 240)
    corrupt = [e for e in outcomes["m2"].events if e.get("event") == "corrupt"]
    assert [e["upstream"] for e in corrupt] == ["m1"]
    assert connections(wave, "m2")[-1][0] == "m0"
    for name in ("m0", "m1", "m2"):
        assert outcomes[name].ok is True, outcomes[name].reason
        assert sha(disks / name) == manifest.sha256


def test_lying_disk_is_never_a_success(image: tuple[Path, Manifest], disks: Path) -> None:
    """A member whose disk does not keep what it was given fails its read back; the
    member after it finds the chunks it serves corrupt and goes around it."""
    path, manifest = image
    names = ["m0", "m1", "m2"]
    with Wave(image=path, manifest=manifest) as wave:
        for name in names:
            wave.add(name, relay_argv("disk" if name == "m1" else None), disks / name)
        outcomes = wave.wait(deadline=time.monotonic() + 240)
        assert outcomes["m1"].ok is False
        assert sha(disks / "m1") != manifest.sha256
        assert any(e.get("event") == "corrupt" for e in outcomes["m2"].events)
        for name in ("m0", "m2"):
            assert outcomes[name].ok is True
            assert sha(disks / name) == manifest.sha256


def test_full_disk_fails_that_member_only(image: tuple[Path, Manifest], disks: Path) -> None:
    path, manifest = image
    names = ["m0", "m1", "m2"]
    with Wave(image=path, manifest=manifest) as wave:
        for name in names:
            wave.add(name, relay_argv("full" if name == "m1" else None), disks / name)
        outcomes = wave.wait(deadline=time.monotonic() + 240)
        assert outcomes["m1"].ok is False
        assert outcomes["m1"].reason == "writing the target failed: No space left on device"
        for name in ("m0", "m2"):
            assert outcomes[name].ok is True, (name, outcomes[name].reason)
            assert sha(disks / name) == manifest.sha256


def test_late_joiner_gets_what_it_missed_from_the_tail(
    image: tuple[Path, Manifest], disks: Path
) -> None:
    path, manifest = image
    held = 10
    gate = Gate(held)
    with Wave(image=path, manifest=manifest, pace=gate) as wave:
        for name in ("m0", "m1", "m2", "m3"):
            wave.add(name, relay_argv(), disks / name)
        running = Running(wave).start()
        eventually(
            lambda: (disks / "m3").exists() and (disks / "m3").stat().st_size >= held * CHUNK
        )
        wave.add("late", relay_argv(), disks / "late")
        # While the source is still held, the tail gives the late joiner what it missed.
        late = disks / "late"
        eventually(lambda: late.exists() and late.stat().st_size >= held * CHUNK)
        gate.opened.set()
        outcomes = running.join()
        assert all(o.ok for o in outcomes.values()), {n: o.reason for n, o in outcomes.items()}
        assert sha(late) == manifest.sha256
        assert connections(wave, "late") == [("m3", 0)]
        assert wave.source.served == [("m0", 0)]
        assert wave.source.bytes_sent == one_copy(manifest)
