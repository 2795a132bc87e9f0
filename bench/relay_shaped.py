"""Relay imaging on a shaped bench network, against one unicast stream per laptop and
against udpcast multicast, same image, same bench, same run.

    sudo .venv/bin/python -m bench.relay_shaped [--members 8 32] [--mib 24] [--rate-mbit 16]
        [--chunk-kib 64]

The bench: a server and N laptops, each in a network namespace of its own, joined by a
Linux bridge (in a namespace too: nothing touches the host's network), every port's
rate shaped with ``tc`` (``tbf``) in both directions (the laptop's or server's egress
and the bridge's egress towards it): a scaled model of a bench whose every port runs
at 1 Gbit/s, the rate (``--rate-mbit``) low enough that the 2 cores are not the limit
(the CPU left idle during each run is printed). Laptops are PE relays (Debian's
``python3 -S relay.py``, as in the PE: TLS 1.3 hops, every chunk checked against the
manifest before it is written and forwarded, the whole disk read back against the
image's sha256 at the end) writing a file as their disk; the server is the worker's
relay source (``relay.source.Source``) in the server's namespace.

Ways, each timed from its first process start to the last laptop done:

- ``alone``: one laptop, from the server (what a wave is compared with);
- ``wave``: the relay chain (``plan.Topology.CHAIN``);
- ``wave, one killed``: the chain with its middle laptop killed once the tail holds
  half the image (the others reconnect around it and resume from their own offset);
- ``unicast``: one stream per laptop from the server (``Topology.STAR``: the same
  program, TLS and checks: only the topology differs);
- ``udpcast``: ``udp-sender`` (``--max-bitrate`` at 95 % of the port rate, as FOG sets
  one) to N ``udp-receiver``; each received file is hashed afterwards, outside the
  timing (the relays' time includes their read back), and counted as verified only if
  it matches.

Server bytes are the server port's transmitted bytes (``tx_bytes``: every header,
TLS record and retransmission included), against one image's raw size. Needs root,
``ip netns``, ``tc`` and ``udpcast`` (scripts/system-deps.sh). Every namespace and
process it made is removed on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.host import steal_seconds

MiB = 1024 * 1024
PYTHON = "/usr/bin/python3"
SERVER_IP = "10.77.0.1"
CLONE_NEWNET = 0x40000000


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=60)


def _in(ns: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True, timeout=60)


@dataclass
class Net:
    """The bench's namespaces: ``server``, ``laptops[i]``, and ``switch`` (the bridge)."""

    prefix: str
    members: int
    rate_bit: int

    @property
    def server(self) -> str:
        return f"{self.prefix}s"

    @property
    def switch(self) -> str:
        return f"{self.prefix}sw"

    def laptop(self, i: int) -> str:
        return f"{self.prefix}l{i}"

    @staticmethod
    def laptop_ip(i: int) -> str:
        return f"10.77.0.{10 + i}"

    def names(self) -> list[str]:
        return [self.switch, self.server, *(self.laptop(i) for i in range(self.members))]

    def up(self) -> None:
        for ns in self.names():
            _ip("netns", "add", ns)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        # No IGMP snooping: multicast floods every port, as on a plain switch.
        _ip("-n", self.switch, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        _ip("-n", self.switch, "link", "set", "lo", "up")
        nodes = [(self.server, SERVER_IP)] + [
            (self.laptop(i), self.laptop_ip(i)) for i in range(self.members)
        ]
        for port, (ns, addr) in enumerate(nodes):
            p = f"p{port}"
            _ip("link", "add", p, "netns", self.switch, "type", "veth", "peer", "eth0", "netns", ns)
            _ip("-n", self.switch, "link", "set", p, "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "brd", "+", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
            # The port's rate, both ways: what the node sends, what the switch sends it.
            self._shape(ns, "eth0")
            self._shape(self.switch, p)

    def _shape(self, ns: str, dev: str) -> None:
        burst = max(32 * 1024, self.rate_bit // 8 // 100)  # 10 ms at the rate
        _in(
            ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
            "rate", f"{self.rate_bit}bit", "burst", str(burst), "latency", "200ms",
        )  # fmt: skip

    def down(self) -> None:
        for ns in self.names():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=60)

    def server_tx(self) -> int:
        """Bytes the server's port has sent (read from the server's namespace)."""
        out = subprocess.run(
            ["ip", "netns", "exec", self.server, "cat", "/sys/class/net/eth0/statistics/tx_bytes"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return int(out.stdout.strip())


@contextlib.contextmanager
def _inside(ns: str) -> Iterator[None]:
    """This thread in namespace ``ns`` (and threads and sockets it creates), then back."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        try:
            yield
        finally:
            libc.setns(home, CLONE_NEWNET)
    finally:
        os.close(home)
        os.close(target)


class _Stamped(queue.Queue[Any]):
    """The wave's inbox, noting when each member's relay said it listens (as it is
    read from the relay, not when the wave's loop gets to it)."""

    def __init__(self) -> None:
        super().__init__()
        self.listening: dict[str, float] = {}

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        name, event = item
        if isinstance(event, dict) and event.get("event") == "listening":
            self.listening.setdefault(str(name), time.perf_counter())
        super().put(item, block, timeout)


class Idle:
    """The share of the machine's cores left idle between two reads of /proc/stat, and
    the share this process and its reaped children used meanwhile."""

    def __init__(self) -> None:
        self.start = self._read()
        self.cpu0, self.t0 = _cpu_seconds(), time.perf_counter()

    def ours(self) -> float:
        wall = time.perf_counter() - self.t0
        return (_cpu_seconds() - self.cpu0) / (wall * (os.cpu_count() or 1))

    @staticmethod
    def _read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])  # idle + iowait, total

    def share(self) -> float:
        idle, total = self._read()
        return (idle - self.start[0]) / max(1, total - self.start[1])


@dataclass
class Result:
    way: str
    wall: float
    server_bytes: int
    verified: int
    laptops: int
    idle: float
    ours: float
    """The share of the cores the run's own processes used (this one, the relays, the
    udpcast ends): what the run needed, whatever else the machine ran."""
    started: float = 0.0
    """Seconds until the last laptop's relay was up and listening (0: not measured):
    the wave's fixed cost, starting N PE programs (on 2 shared cores here)."""


def _cpu_seconds() -> float:
    import resource

    return sum(
        r.ru_utime + r.ru_stime
        for r in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )


def _make_image(path: Path, mib: int) -> None:
    """A disk-like image: 3/4 incompressible data, 1/4 zero runs (free space)."""
    with open(path, "wb") as f:
        for _ in range(mib // 4):
            f.write(os.urandom(3 * MiB))
            f.write(bytes(MiB))


def _relay(net: Net, way: str, n: int, image: Path, work: Path, chunk: int) -> Result:
    from bench.relay import _kill_middle_at_half
    from images.manifest import compute
    from provisioning.relay.plan import Topology
    from provisioning.relay.wave import RELAY_SCRIPT, Wave

    manifest = compute(image, chunk_size=chunk)
    disks = work / "disks"
    shutil.rmtree(disks, ignore_errors=True)
    disks.mkdir()
    topology = Topology.STAR if way == "unicast" else Topology.CHAIN
    killed = f"m{n // 2}" if way == "wave, one killed" else None
    tx0, idle = net.server_tx(), Idle()
    t0 = time.perf_counter()
    with (
        _inside(net.server),
        Wave(image=image, manifest=manifest, topology=topology, source_host=SERVER_IP) as wave,
    ):
        inbox = wave.inbox = _Stamped()
        for i in range(n):
            argv = ["ip", "netns", "exec", net.laptop(i), PYTHON, "-S", str(RELAY_SCRIPT)]
            wave.add(f"m{i}", argv, disks / f"m{i}", host=net.laptop_ip(i))
        if killed:
            threading.Thread(
                target=_kill_middle_at_half,
                args=(wave, disks, n, manifest.size),
                daemon=True,
            ).start()
        outcomes = wave.wait(deadline=time.monotonic() + 3600)
        wall = time.perf_counter() - t0
    share, ours = idle.share(), idle.ours()
    verified = 0
    for name, outcome in outcomes.items():
        # The relay's own read back said so; the bench checks the disk itself too.
        if outcome.ok and _sha(disks / name) == manifest.sha256:
            verified += 1
    started = max(inbox.listening.values(), default=t0) - t0
    return Result(way, wall, net.server_tx() - tx0, verified, n, share, ours, started)


def _udpcast(net: Net, n: int, image: Path, work: Path, rate_bit: int) -> Result:
    disks = work / "udp"
    shutil.rmtree(disks, ignore_errors=True)
    disks.mkdir()
    receivers = [
        subprocess.Popen(
            ["ip", "netns", "exec", net.laptop(i), "udp-receiver", "--nokbd",
             "--interface", "eth0", "--file", str(disks / f"u{i}")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(n)
    ]  # fmt: skip
    tx0, idle = net.server_tx(), Idle()
    t0 = time.perf_counter()
    sender = subprocess.Popen(
        ["ip", "netns", "exec", net.server, "udp-sender", "--nokbd", "--interface", "eth0",
         "--file", str(image), "--min-receivers", str(n), "--max-wait", "120", "--full-duplex",
         "--max-bitrate", f"{int(rate_bit * 0.95 / 1e6)}m"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    codes: list[int | None] = []
    try:
        sender.wait(timeout=3600)
        for r in receivers:
            codes.append(r.wait(timeout=120))
        wall = time.perf_counter() - t0
    finally:
        for p in [sender, *receivers]:
            if p.poll() is None:
                p.kill()
                p.wait()
    share, ours = idle.share(), idle.ours()
    want = _sha(image)
    verified = sum(
        1
        for i in range(n)
        if codes[i] == 0 and (disks / f"u{i}").exists() and _sha(disks / f"u{i}") == want
    )
    return Result("udpcast", wall, net.server_tx() - tx0, verified, n, share, ours)


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(MiB):
            h.update(block)
    return h.hexdigest()


def _table(n: int, results: list[Result], image_bytes: int) -> None:
    by = {r.way: r for r in results}
    alone, wave = by["alone"].wall, by["wave"].wall
    print(f"\n{n} laptops")
    print(
        f"{'way':<18} {'wall s':>8} {'vs alone':>9} {'vs wave':>8} {'server MB':>10} "
        f"{'vs image':>9} {'verified':>9} {'idle CPU':>9} {'our CPU':>8} {'start s':>8}"
    )
    for r in results:
        print(
            f"{r.way:<18} {r.wall:>8.2f} {r.wall / alone:>8.2f}x {r.wall / wave:>7.2f}x "
            f"{r.server_bytes / 1e6:>10.1f} {r.server_bytes / image_bytes:>8.2f}x "
            f"{r.verified:>5}/{r.laptops:<3} {r.idle:>8.0%} {r.ours:>8.0%} {r.started:>8.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_shaped")
    parser.add_argument("--members", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--mib", type=int, default=24, help="image size (MiB, a multiple of 4)")
    parser.add_argument("--rate-mbit", type=float, default=16.0, help="every port's rate")
    parser.add_argument("--chunk-kib", type=int, default=64, help="manifest chunk size")
    parser.add_argument("--skip", nargs="*", default=[], help="ways to leave out")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.relay_shaped: needs root (ip netns, tc)", file=sys.stderr)
        return 1
    for tool in ("ip", "tc", "udp-sender", "udp-receiver", PYTHON):
        if not shutil.which(tool):
            print(f"bench.relay_shaped: {tool} is missing (make system-deps)", file=sys.stderr)
            return 1
    rate_bit = int(args.rate_mbit * 1e6)
    work = Path(tempfile.mkdtemp(prefix="ml-bench-relay-shaped-"))
    net = Net(prefix=f"mlr{os.getpid() % 100000}", members=max(args.members), rate_bit=rate_bit)
    try:
        image = work / "image.raw"
        _make_image(image, args.mib)
        net.up()
        steal0 = steal_seconds()
        print(
            f"image {args.mib} MiB (1/4 zero runs), chunks of {args.chunk_kib} KiB; every port "
            f"at {args.rate_mbit:g} Mbit/s ({rate_bit / 8e6:g} MB/s, 1 Gbit/s scaled by "
            f"{1e9 / rate_bit:g}); os.cpu_count()={os.cpu_count()}"
        )
        chunk = args.chunk_kib * 1024
        for n in args.members:
            results = [_relay(net, "alone", 1, image, work, chunk)]
            for way in ("wave", "wave, one killed", "unicast"):
                if way not in args.skip:
                    results.append(_relay(net, way, n, image, work, chunk))
            if "udpcast" not in args.skip:
                results.append(_udpcast(net, n, image, work, rate_bit))
            _table(n, results, image.stat().st_size)
            sys.stdout.flush()
        print(f"\nsteal during the run: {steal_seconds() - steal0:.1f} s")
    finally:
        net.down()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
