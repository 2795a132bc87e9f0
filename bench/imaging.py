"""Imaging throughput against lab laptops, as ratios measured in one run.

    python -m bench.imaging [--mib 256] [--parallel 8] [--runs 3]

1. One stream: Masterline's ``stream_image`` (the OpenSSH client with the site-cached
   file as its stdin, unpaced as on a site without a bandwidth cap; the file hashed
   once per image in a low-priority thread; laptop side ``zstd -dc 1<>disk``) vs bare
   ``ssh -c aes128-gcm@openssh.com host 'cat > disk' < file`` with the same file (the
   site-cached ``.zst``). Ratio = OpenSSH time / Masterline time (target >= 0.95).
2. N laptops at once vs N parallel OpenSSH streams (target >= 0.9).
3. Bytes on the wire vs the zstd size (same level) of the image's non-zero 64 KiB
   blocks (target <= 1.05).

Each time shown is the median of ``--runs``; the sides alternate within each round so
that page cache and CPU frequency treat them alike, and each ratio is the median of the
rounds' own ratios. Everything runs on 127.0.0.1: the laptops'
sshd, zstd and dd share the machine's cores with the client.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import zstandard

from bench.host import steal_seconds

MiB = 1024 * 1024
BLOCK = 64 * 1024


def _make_image(path: Path, mib: int) -> None:
    """A disk-like image: 3/4 incompressible data, 1/4 zero runs (free space)."""
    with open(path, "wb") as f:
        for i in range(mib * MiB // (4 * MiB)):
            f.write(os.urandom(3 * MiB))
            f.write(b"\0" * MiB)
            del i


def _nonzero_zstd_size(raw: Path) -> int:
    cctx = zstandard.ZstdCompressor(level=3, threads=-1)
    with tempfile.TemporaryFile() as out:
        with open(raw, "rb") as f, cctx.stream_writer(out, closefd=False) as w:
            zero = b"\0" * BLOCK
            while block := f.read(BLOCK):
                if block != zero[: len(block)]:
                    w.write(block)
        return out.tell()


def _openssh(laptop: object, src: Path, *, same_sink: bool = False) -> float:
    """Bare ``ssh … 'cat > disk'``; with ``same_sink``, the laptop-side pipeline
    Masterline uses (``zstd -dc --no-sparse --no-check --no-asyncio 1<>disk``), which
    isolates our own overhead."""
    from provisioning.transports.ssh import openssh_argv

    ep = _endpoint(laptop)
    disk = laptop.disk_path  # type: ignore[attr-defined]
    zstd = "zstd -dcq --no-sparse --no-check --no-asyncio"
    cmd = f"{zstd} 1<>{disk}" if same_sink else f"cat > {disk}"
    argv = openssh_argv(ep, cmd)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    with open(src, "rb") as f:
        subprocess.run(argv, stdin=f, check=True)
    return time.perf_counter() - t0


def _endpoint(laptop: object) -> object:
    """The laptop's own sshd port, not the lab's fault-injecting TCP proxy (a Python
    relay that would cap both sides alike), with the same host key pinned for it."""
    from provisioning.transports.base import SshEndpoint

    lp: Any = laptop
    pinned = Path(lp.dir) / "bench_known_hosts"
    if not pinned.exists():
        key = Path(lp.known_hosts_path).read_text().split(" ", 1)[1]
        pinned.write_text(f"[{lp.host}]:{lp.sshd_port} {key}")
    return SshEndpoint(lp.host, lp.sshd_port, lp.ssh_user, lp.client_key_path, pinned)


def _masterline(laptop: object, cached: object, result: dict[str, int] | None = None) -> float:
    from provisioning.imaging.identity import Disk
    from provisioning.imaging.stream import stream_image
    from provisioning.transports.ssh import SSHTransport

    transport = SSHTransport(_endpoint(laptop))  # type: ignore[arg-type]
    disk = Disk("nvme0n1", laptop.disk_bytes, False)  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    written = stream_image(transport, cached, disk, timeout=3600)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - t0
    transport.close()
    if result is not None:
        result["bytes_sent"] = written.bytes_sent
    return elapsed


def _verify(laptop: object, cached: object) -> float:
    from provisioning.imaging.stream import verify
    from provisioning.transports.ssh import SSHTransport

    transport = SSHTransport(_endpoint(laptop))  # type: ignore[arg-type]
    t0 = time.perf_counter()
    verify(transport, cached, "nvme0n1", timeout=3600)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - t0
    transport.close()
    return elapsed


def _parallel(fn: object, items: list[object]) -> float:
    errors: list[BaseException] = []

    def one(item: object) -> None:
        try:
            fn(item)  # type: ignore[operator]
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in items]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


def _ratio(baseline: list[float], ours: list[float]) -> tuple[str, str]:
    """Median of the per-round ratios, and their range. Each round's two sides ran back
    to back, so a ratio within a round is immune to the machine's drift between rounds
    (a shared VM's neighbours), which a ratio of medians is not."""
    ratios = sorted(b / m for b, m in zip(baseline, ours, strict=True))
    return f"{statistics.median(ratios):.2f}x", f"rounds {ratios[0]:.2f}-{ratios[-1]:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.imaging")
    parser.add_argument("--mib", type=int, default=256, help="raw image size (MiB)")
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    from lab.lab import Lab
    from provisioning.imaging.cache import SENT_HASHES, ImageSource, ensure_cached

    work = Path(tempfile.mkdtemp(prefix="ml-bench-imaging-"))
    raw = work / "image.raw"
    _make_image(raw, args.mib)
    data_sha = hashlib.sha256(raw.read_bytes()).hexdigest()
    source = ImageSource(
        image_id=1,
        path=raw,
        format="raw",
        size=raw.stat().st_size,
        sha256=data_sha,
        raw_size=raw.stat().st_size,
        raw_sha256=data_sha,
    )
    cached = ensure_cached(source, work / "cache")
    lab = Lab(work / "lab", keep_running=True)
    try:
        laptops = lab.up_n(args.parallel, disk_bytes=(args.mib + 16) * MiB)
        steal0, t_start = steal_seconds(), time.perf_counter()
        one = laptops[0]
        single_o, single_s, single_m = [], [], []
        sent: dict[str, int] = {}
        # os.sync() before every timed run: the page cache's write-back of one run's
        # bytes must not land in the next run's time (neither side flushes its write).
        for _ in range(args.runs):
            os.sync()
            single_o.append(_openssh(one, cached.path))
            os.sync()
            single_s.append(_openssh(one, cached.path, same_sink=True))
            os.sync()
            # Each timed run is a worker's first stream of this image, which hashes it
            # while sending (provisioning.imaging.stream.SentHashes): the costlier case.
            SENT_HASHES.forget()
            single_m.append(_masterline(one, cached, sent))
        # What the verify step adds after a stream: flush the disk, read it back, hash.
        verify_s = _verify(one, cached)
        par_o, par_s, par_m = [], [], []
        for _ in range(args.runs):
            os.sync()
            par_o.append(_parallel(lambda lp: _openssh(lp, cached.path), list(laptops)))
            os.sync()
            par_s.append(
                _parallel(lambda lp: _openssh(lp, cached.path, same_sink=True), list(laptops))
            )
            os.sync()
            SENT_HASHES.forget()
            par_m.append(_parallel(lambda lp: _masterline(lp, cached), list(laptops)))
        # The last Masterline run wrote every disk: check one really holds the image.
        transport_ok = (
            hashlib.sha256(one.disk_path.read_bytes()[: source.raw_size]).hexdigest()
            == source.raw_sha256
        )
        steal, t_all = steal_seconds() - steal0, time.perf_counter() - t_start
        nonzero = _nonzero_zstd_size(raw)
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
    file_mb = cached.size / 1e6
    o1, m1 = statistics.median(single_o), statistics.median(single_m)
    s1 = statistics.median(single_s)
    on, mn = statistics.median(par_o), statistics.median(par_m)
    sn = statistics.median(par_s)
    n = args.parallel
    rows = [
        ("image raw / zstd", f"{source.raw_size / 1e6:.0f} / {file_mb:.0f} MB", ""),
        ("1 stream: OpenSSH cat > disk", f"{file_mb / o1:.0f} MB/s", f"{o1:.2f} s"),
        ("1 stream: Masterline", f"{file_mb / m1:.0f} MB/s", f"{m1:.2f} s"),
        ("1 stream ratio (target >= 0.95)", *_ratio(single_o, single_m)),
        ("1 stream: OpenSSH into zstd -dc 1<>disk", f"{file_mb / s1:.0f} MB/s", f"{s1:.2f} s"),
        ("1 stream ratio, same laptop-side sink", *_ratio(single_s, single_m)),
        ("then verify: flush + readback sha256", "", f"{verify_s:.2f} s"),
        (f"{n} streams: OpenSSH", f"{n * file_mb / on:.0f} MB/s", f"{on:.2f} s"),
        (f"{n} streams: Masterline", f"{n * file_mb / mn:.0f} MB/s", f"{mn:.2f} s"),
        (f"{n} streams ratio (target >= 0.9)", *_ratio(par_o, par_m)),
        (
            f"{n} streams: OpenSSH into zstd -dc 1<>disk",
            f"{n * file_mb / sn:.0f} MB/s",
            f"{sn:.2f} s",
        ),
        (f"{n} streams ratio, same laptop-side sink", *_ratio(par_s, par_m)),
        (
            "wire / zstd(non-zero blocks) (target <= 1.05)",
            f"{sent['bytes_sent'] / nonzero:.3f}x",
            f"{sent['bytes_sent']} / {nonzero} B",
        ),
        ("disk holds the image after the run", str(transport_ok), ""),
        (
            "CPU taken by the VM's neighbours (steal)",
            f"{steal:.1f} s",
            f"of {t_all:.0f} s x {os.cpu_count()} cores",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, extra in rows:
        print(f"{name:<{width}}  {value:>14}  {extra}")
    return 0 if transport_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
