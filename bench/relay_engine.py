"""The engine's relay path on lab laptops against one stream per laptop, in one run.

    python -m bench.relay_engine [--members 8] [--mib 32] [--cap-mb 8] [--chunk-kib 1024]

Lab laptops (a real sshd each, on 127.0.0.1). The server's uplink is the site's
bytes-per-second cap (``--cap-mb``, the same token bucket a capped stream uses), low
enough that the 2 cores are not what limits the run. Three ways, same image, same
laptops, each ending when every laptop's verify step (flush, read back, sha256 against
the image) has passed:

- ``one laptop alone``: today's stream (``imaging.stream_image``: ``ssh`` into
  ``zstd -dc 1<>disk``) holding the whole cap;
- ``N streams``: today's path for N laptops, each holding 1/N of the cap (what the
  bandwidth ledger grants N streams at a site);
- ``relay wave``: the engine's wave code (``pipeline/relays.RelayWaves``: raw copy and
  manifest at the site, ``ssh … python3 relay.py`` on each PE, TLS hops, reroutes),
  the wave holding the whole cap as one stream; the hops between laptops unshaped.

Printed: wall time, bytes that left the server, and ratios (wave vs one laptop alone,
wave vs N streams; server bytes vs one copy of the image's compressed stream).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.host import steal_seconds
from bench.imaging import _endpoint, _make_image

MiB = 1024 * 1024


def _threads(fn: Any, items: list[Any]) -> list[Any]:
    out: list[Any] = [None] * len(items)
    errors: list[BaseException] = []

    def run(i: int, item: Any) -> None:
        try:
            out[i] = fn(item)
        except BaseException as e:  # reported after the join
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, it)) for i, it in enumerate(items)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=3600)
    if errors:
        raise errors[0]
    return out


def _plain(laptops: list[Any], cached: Any, rate: float) -> tuple[float, int]:
    from provisioning.imaging.identity import Disk
    from provisioning.imaging.pacing import TokenBucket
    from provisioning.imaging.stream import stream_image, verify
    from provisioning.transports.ssh import SSHTransport

    def one(lp: Any) -> int:
        transport = SSHTransport(_endpoint(lp))  # type: ignore[arg-type]
        try:
            disk = Disk("nvme0n1", lp.disk_bytes, False)
            bucket = TokenBucket(rate=rate / len(laptops))
            written = stream_image(transport, cached, disk, timeout=3600, bucket=bucket)
            verify(transport, cached, "nvme0n1", timeout=3600)
            return written.bytes_sent
        finally:
            transport.close()

    t0 = time.perf_counter()
    sent = _threads(one, laptops)
    return time.perf_counter() - t0, sum(sent)


def _wave(
    laptops: list[Any], cached: Any, rate: float, cache_dir: Path, chunk: int
) -> tuple[float, int]:
    from provisioning.imaging.pacing import TokenBucket
    from provisioning.imaging.stream import verify
    from provisioning.pipeline.relays import MemberRequest, RelayWaves
    from provisioning.relay.plan import SlowRule, WaveRule
    from provisioning.transports.ssh import SSHTransport

    n = len(laptops)
    waves = RelayWaves(
        rule=WaveRule(window_seconds=60, max_members=n),
        chunk_bytes=chunk,
        source_host="127.0.0.1",
        slow=SlowRule(),
        pending=lambda key: n,
    )
    # The raw copy and its manifest are made once per site and image, like the site
    # cache: made before the clock starts, as the cache is.
    from provisioning.relay.rawcache import raw_copy

    raw_copy(cached, cache_dir, chunk_size=chunk)

    def one(item: tuple[int, Any]) -> None:
        i, lp = item
        req = MemberRequest(
            run_id=i + 1,
            image_id=1,
            site_id=1,
            endpoint=_endpoint(lp),  # type: ignore[arg-type]
            disk="nvme0n1",
            cached=cached,
            cache_dir=cache_dir,
            timeout=3600,
            progress=lambda sent, total: None,
            on_event=lambda event: None,
            mark=lambda info: None,
            bucket=TokenBucket(rate=rate),  # the carrier's holds the site's whole rate
        )
        if waves.stream(req) is None:
            raise RuntimeError("no wave formed")
        transport = SSHTransport(_endpoint(lp))  # type: ignore[arg-type]
        try:
            verify(transport, cached, "nvme0n1", timeout=3600)
        finally:
            transport.close()

    t0 = time.perf_counter()
    _threads(one, list(enumerate(laptops)))
    elapsed = time.perf_counter() - t0
    (wave,) = waves.waves
    return elapsed, wave.source.bytes_sent


def main(argv: list[str] | None = None) -> int:
    from lab.lab import Lab
    from provisioning.imaging.cache import ImageSource, ensure_cached

    p = argparse.ArgumentParser(prog="python -m bench.relay_engine")
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--mib", type=int, default=32)
    p.add_argument("--cap-mb", type=float, default=8.0)
    p.add_argument("--chunk-kib", type=int, default=1024)
    args = p.parse_args(argv)
    rate = args.cap_mb * 1e6
    work = Path(tempfile.mkdtemp(prefix="bench-relay-engine-"))
    try:
        raw = work / "image.raw"
        _make_image(raw, args.mib)
        data = raw.read_bytes()
        source = ImageSource(
            image_id=1,
            path=raw,
            format="raw",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            raw_size=len(data),
            raw_sha256=hashlib.sha256(data).hexdigest(),
        )
        del data
        cache_dir = work / "cache"
        cached = ensure_cached(source, cache_dir)
        lab = Lab(work / "lab", keep_running=True)
        try:
            laptops = lab.up_n(args.members, disk_bytes=(args.mib + 16) * MiB)
            steal0, cpu0, t0 = steal_seconds(), _cpu(), time.perf_counter()
            os.sync()
            alone, alone_bytes = _plain(laptops[:1], cached, rate)
            os.sync()
            plain, plain_bytes = _plain(laptops, cached, rate)
            os.sync()
            chunk = args.chunk_kib * 1024
            wave, wave_bytes = _wave(laptops, cached, rate, cache_dir, chunk)
            ok = all(
                hashlib.sha256(lp.disk_path.read_bytes()[: source.raw_size]).hexdigest()
                == source.raw_sha256
                for lp in laptops
            )
            wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
            steal = steal_seconds() - steal0
        finally:
            lab.down()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = args.members
    rows = [
        ("image raw / zstd", f"{source.raw_size / 1e6:.0f} / {cached.size / 1e6:.0f} MB"),
        ("server uplink (site cap)", f"{args.cap_mb:g} MB/s"),
        ("one laptop alone", f"{alone:.1f} s, server sent {alone_bytes / 1e6:.1f} MB"),
        (f"{n} streams (today)", f"{plain:.1f} s, server sent {plain_bytes / 1e6:.1f} MB"),
        (f"relay wave of {n}", f"{wave:.1f} s, server sent {wave_bytes / 1e6:.1f} MB"),
        ("wave / one alone (target <= 1.3)", f"{wave / alone:.2f}x"),
        (f"wave / {n} streams", f"{wave / plain:.2f}x"),
        ("wave server bytes / one stream's", f"{wave_bytes / alone_bytes:.2f}x"),
        ("every disk holds the image", "yes" if ok else "NO"),
        (
            f"{os.cpu_count()} cores idle over the run (floor)",
            f"{max(0.0, 1 - cpu / ((os.cpu_count() or 1) * wall)):.0%}",
        ),
        ("CPU stolen by the host", f"{steal:.1f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return 0 if ok else 1


def _cpu() -> float:
    """Busy CPU seconds of the whole machine (/proc/stat: every process, the lab's
    sshds and relays and anyone else's work), so the idle share shown is a floor."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
