"""Relay imaging: one copy from the server to N laptops through a chain, against one
stream per laptop, as ratios measured in one run.

    python -m bench.relay [--mib 32] [--members 8] [--rate-mb 2.5] [--runs 1] [--chunk-kib 256]

Every laptop is a real ``relay.py`` process (Debian's ``python3 -S``, as in the PE)
writing a file as its disk, on 127.0.0.1; every hop is TLS 1.3 with the wave's
certificates; every chunk is checked before it is written and forwarded, and every
laptop reads its whole disk back against the image's sha256 at the end. The
topologies differ only in who a laptop takes the stream from:

- ``single``: one laptop alone (what the wave is compared with);
- ``star``: every laptop takes its own stream from the server (today's path: one
  stream per laptop), with the same program, TLS and checks, so only the topology
  differs;
- ``chain``: laptop i takes from laptop i-1 (the relay);
- ``chain-kill``: the chain, its middle laptop killed once the tail holds half the image
  (the others reconnect around it and resume; it is the one laptop not verified);
- ``tree``: a binary tree (laptop i from (i-1)//2).

Two benches, same image, same run:

1. **Unshaped loopback**: everything shares the machine's 2 cores, so this measures CPU
   (each hop decrypts, hashes, writes, reads back, encrypts), not a network.
2. **Shaped**: the server's uplink (the site cap, paced by the same token bucket as a
   capped stream, ``imaging.pacing.TokenBucket``) and every laptop's sending port are
   held to ``--rate-mb`` MB/s: a scaled model of a bench whose links all run at the same
   rate, low enough that the cores are not the limit (the share of the 2 cores that
   the run's own processes used is shown: the rest was idle or other work's).

Printed for each: wall time (from the first process start to the last laptop verified)
and bytes the server sent (frames of non-zero chunks; a zero chunk is a 9-byte header),
with ratios: wall time vs one laptop alone and vs the chain, server bytes vs one copy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.host import steal_seconds

MiB = 1024 * 1024
PYTHON = "/usr/bin/python3"
TOPOLOGIES = ("single", "chain", "chain-kill", "star", "tree")


def _make_image(path: Path, mib: int) -> None:
    """A disk-like image: 3/4 incompressible data, 1/4 zero runs of 4 MiB (free space:
    whole chunks of zeros, which travel as headers)."""
    with open(path, "wb") as f:
        for _ in range(mib // 16):
            f.write(os.urandom(12 * MiB))
            f.write(bytes(4 * MiB))


def _cpu_seconds() -> float:
    """CPU of this process (the source, the driver) and of its reaped children (the
    laptops' relays): ours only, whatever else the machine runs."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def _kill_middle_at_half(wave: object, disks: Path, members: int, size: int) -> None:
    """Kill the middle laptop once the tail holds half the image (the others must
    reconnect around it and resume)."""
    from provisioning.relay.wave import Wave

    assert isinstance(wave, Wave)
    tail = disks / f"m{members - 1}"
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        if tail.exists() and tail.stat().st_size >= size // 2:
            wave.members[f"m{members // 2}"].process.proc.kill()
            return
        time.sleep(0.05)


def _run(
    topology: str, members: int, image: Path, work: Path, rate: float, chunk: int
) -> tuple[float, int, float]:
    """One wave; returns (wall seconds, server bytes, our share of the cores)."""
    from images.manifest import compute
    from provisioning.imaging.pacing import TokenBucket
    from provisioning.relay.plan import Topology
    from provisioning.relay.wave import RELAY_SCRIPT, Wave

    manifest = compute(image, chunk_size=chunk)
    disks = work / "disks"
    shutil.rmtree(disks, ignore_errors=True)
    disks.mkdir()
    pace = TokenBucket(rate=rate) if rate else None
    kind = Topology(topology.split("-")[0]) if topology != "single" else Topology.CHAIN
    killed = f"m{members // 2}" if topology == "chain-kill" else None
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    with Wave(image=image, manifest=manifest, topology=kind, pace=pace) as wave:
        for i in range(1 if topology == "single" else members):
            argv = [PYTHON, "-S", str(RELAY_SCRIPT)]
            wave.add(f"m{i}", argv, disks / f"m{i}", uplink_bps=rate)
        if killed:
            threading.Thread(
                target=_kill_middle_at_half,
                args=(wave, disks, members, manifest.size),
                daemon=True,
            ).start()
        outcomes = wave.wait(deadline=time.monotonic() + 1800)
        wall = time.perf_counter() - t0
        failed = {n: o.reason or "unfinished" for n, o in outcomes.items() if not o.ok}
        if set(failed) != ({killed} if killed else set()):
            raise SystemExit(f"{topology}: laptops not verified: {failed}")
        sent = wave.source.bytes_sent
    cpu = (_cpu_seconds() - cpu0) / (wall * (os.cpu_count() or 1))
    return wall, sent, cpu


def _bench(
    title: str, members: int, image: Path, work: Path, rate: float, runs: int, chunk: int
) -> None:
    one_copy = image.stat().st_size
    results: dict[str, list[tuple[float, int, float]]] = {}
    for _ in range(runs):
        # The sides alternate within a round so that load from other work spreads evenly.
        for topology in TOPOLOGIES:
            run = _run(topology, members, image, work, rate, chunk)
            results.setdefault(topology, []).append(run)
    wall = {t: statistics.median(r[0] for r in rs) for t, rs in results.items()}
    sent = {t: statistics.median(r[1] for r in rs) for t, rs in results.items()}
    cpu = {t: statistics.median(r[2] for r in rs) for t, rs in results.items()}
    print(f"\n{title}")
    print(
        f"{'topology':<10} {'wall s':>8} {'vs alone':>9} {'vs chain':>9} "
        f"{'server MB':>10} {'vs image':>9} {'our CPU':>8}"
    )
    for t in TOPOLOGIES:
        alone, chain = wall[t] / wall["single"], wall[t] / wall["chain"]
        print(
            f"{t:<10} {wall[t]:>8.2f} {alone:>8.2f}x {chain:>8.2f}x "
            f"{sent[t] / 1e6:>10.1f} {sent[t] / one_copy:>8.2f}x {cpu[t]:>8.0%}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay")
    parser.add_argument("--mib", type=int, default=32, help="image size (MiB)")
    parser.add_argument("--members", type=int, default=8, help="laptops in the wave")
    parser.add_argument("--rate-mb", type=float, default=2.5, help="shaped link rate (MB/s)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--chunk-kib",
        type=int,
        default=256,
        help="manifest chunk size (4096 in production; the default scales a chunk's "
        "per-hop delay down with the image and the rates)",
    )
    args = parser.parse_args(argv)
    if not Path(PYTHON).exists():
        print(f"bench.relay: {PYTHON} is missing (the PE's interpreter)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="ml-bench-relay-"))
    try:
        image = work / "image.raw"
        _make_image(image, args.mib)
        steal0 = steal_seconds()
        print(
            f"image {args.mib} MiB (1/4 zero runs), chunks of {args.chunk_kib} KiB, "
            f"{args.members} laptops, "
            f"median of {args.runs} run(s); all verified by read back"
        )
        chunk = args.chunk_kib * 1024
        title = "1. unshaped loopback (CPU-bound)"
        _bench(title, args.members, image, work, 0.0, args.runs, chunk)
        rate = args.rate_mb * 1e6
        title = f"2. shaped: server and every laptop's port at {args.rate_mb:g} MB/s"
        _bench(title, args.members, image, work, rate, args.runs, chunk)
        print(f"\nsteal during the run: {steal_seconds() - steal0:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
