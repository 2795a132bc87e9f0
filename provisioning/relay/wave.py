"""A wave in progress, driven by the worker: it starts each member's relay through a
control channel (a process whose standard input and output reach the PE's
``relay.py``: ``ssh … python3 /opt/masterline/agent/relay.py`` on a bench, a local
``python3 relay.py`` in the tests and the benchmark), serves the stream from the source,
and turns the members' events into orders: a new route for the members behind a dead
or corrupt one, a stop for everyone once every member has an outcome.

Outcomes are the members' own: ``verified`` only when the member read its whole target
back and it matched the image's sha256 (never on the worker's word); ``failed`` with a
reason when its channel closed first, when its disk failed, or when its read back did
not match. A member found to forward a corrupt chunk is bypassed (no one
takes the stream from it again) but keeps its own outcome: its read back decides it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import secrets
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from images.manifest import Manifest
from provisioning.relay.credentials import WaveAuthority
from provisioning.relay.plan import SOURCE, Route, SlowRule, Topology, slow_members
from provisioning.relay.source import Pace, Source

log = logging.getLogger("masterline.relay")

STOP_GRACE = 10.0
READBACK_MISMATCH = "read back does not match the image sha256"
"""A member's outcome when its relay wrote every chunk but its disk does not read the
image back (a disk that lies)."""
RELAY_SCRIPT = Path(__file__).resolve().parents[2] / "boot" / "agent" / "relay.py"
"""The PE's relay program in this checkout (the PE has it as
``/opt/masterline/agent/relay.py``)."""


@dataclass
class Outcome:
    member: str
    ok: bool | None = None
    reason: str = ""
    sha256: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)


class MemberProcess:
    """One member's control channel: a child process speaking JSON lines."""

    def __init__(self, name: str, argv: Sequence[str], inbox: queue.Queue[Any]) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._inbox = inbox
        self._reader = threading.Thread(target=self._read, name=f"relay-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout: IO[str] = self.proc.stdout  # type: ignore[assignment]
        for line in stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._inbox.put((self.name, event))
        self.proc.wait()
        self._inbox.put((self.name, {"event": "closed", "code": self.proc.returncode}))

    def send(self, order: dict[str, Any]) -> None:
        self.send_line(json.dumps(order, separators=(",", ":")))

    def send_line(self, line: str) -> None:
        stdin = self.proc.stdin
        if stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):
            stdin.write(line + "\n")
            stdin.flush()

    def stop(self) -> None:
        self.send({"op": "stop"})
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class _Member:
    process: MemberProcess
    host: str
    port: int | None = None


class Wave:
    """One image relayed to the members added to it (see the module docstring).

    Use as a context manager; ``add`` members (also after ``start``: late joiners go to
    the tail), then ``wait``. Everything it started is stopped on the way out.
    """

    def __init__(
        self,
        *,
        image: Path,
        manifest: Manifest,
        topology: Topology = Topology.CHAIN,
        fanout: int = 2,
        source_host: str = "127.0.0.1",
        pace: Pace | None = None,
        idle_timeout: float = 30.0,
        slow: SlowRule | None = None,
    ) -> None:
        self.id = "w" + secrets.token_hex(6)
        self.slow = slow
        self.write_rates: dict[str, float] = {}
        """Each member's disk write rate (bytes/s), once it wrote ``slow.min_chunks``."""
        self.moved: list[str] = []
        """Members moved to the tail for a slow disk, in order."""
        self.manifest = manifest
        self.route = Route(topology=topology, fanout=fanout)
        self.authority = WaveAuthority(self.id)
        self.refused: list[str] = []
        self.source = Source(
            wave=self.id,
            path=image,
            manifest=manifest,
            creds=self.authority.issue(SOURCE),
            host=source_host,
            pace=pace,
            on_refused=self.refused.append,
        )
        self.idle_timeout = idle_timeout
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.members: dict[str, _Member] = {}
        self.outcomes: dict[str, Outcome] = {}
        self._lock = threading.RLock()

    def __enter__(self) -> Wave:
        self.source.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def config(
        self,
        name: str,
        target: Path | str,
        *,
        listen: str,
        uplink_bps: float,
        state: str | None = None,
    ) -> str:
        """The first input line of a member's relay (it holds the member's TLS key)."""
        creds = self.authority.issue(name)
        return json.dumps(
            {
                "wave": self.id,
                "member": name,
                "target": str(target),
                "listen": [listen, 0],
                "manifest": {
                    "chunk_size": self.manifest.chunk_size,
                    "size": self.manifest.size,
                    "sha256": self.manifest.sha256,
                    "chunks": list(self.manifest.chunks),
                },
                "tls": creds.as_config(),
                "upstreams": [],
                "idle_timeout": self.idle_timeout,
                "uplink_bps": uplink_bps,
                **({"state": state} if state else {}),
            }
        )

    def add(
        self,
        name: str,
        argv: Sequence[str],
        target: Path | str,
        *,
        host: str = "127.0.0.1",
        uplink_bps: float = 0,
        state: str | None = None,
    ) -> None:
        """Start member ``name`` (its relay at ``argv``, writing ``target``) at the tail.
        ``host`` is where the other members reach it; ``state`` where its relay keeps
        its verified offset (see ``boot/agent/relay.py``)."""
        with self._lock:
            self.route.join(name)
            first = self.config(name, target, listen=host, uplink_bps=uplink_bps, state=state)
            self.outcomes[name] = Outcome(name)
            proc = MemberProcess(name, argv, self.inbox)
            self.members[name] = _Member(proc, host)
            proc.send_line(first)

    def _route_of(self, name: str) -> list[dict[str, Any]] | None:
        """The member's upstreams with their addresses; None while a healthy member
        ahead of it has not said where it listens yet (its route is sent when it
        does: otherwise a member would start from the source and the server would
        send a second copy)."""
        out: list[dict[str, Any]] = []
        for up in self.route.upstreams(name):
            if up == SOURCE:
                host, port = self.source.address
                out.append({"member": SOURCE, "host": host, "port": port})
                continue
            m = self.members[up]
            if m.port is None:
                return None
            out.append({"member": up, "host": m.host, "port": m.port})
        return out

    def _send_route(self, name: str) -> None:
        member = self.members[name]
        if self.outcomes[name].ok is not None or member.port is None:
            return
        route = self._route_of(name)
        if route is not None:
            member.process.send({"op": "upstreams", "upstreams": route})

    def _reroute(self, changed: str) -> None:
        for name in self.route.affected_by(changed):
            self._send_route(name)

    def _settle(self, name: str, ok: bool, reason: str = "") -> None:
        outcome = self.outcomes[name]
        if outcome.ok is None or (outcome.ok and not ok):
            outcome.ok, outcome.reason = ok, reason

    def handle(self, name: str, event: dict[str, Any]) -> None:
        with self._lock:
            outcome = self.outcomes[name]
            outcome.events.append(event)
            kind = event.get("event")
            if kind == "listening":
                self.members[name].port = int(event["port"])
                self._send_route(name)
                # Members behind it that said where they listen first get their route.
                self._reroute(name)
            elif kind in ("progress", "complete"):
                self._rated(name, event)
            elif kind == "corrupt":
                # The link is blamed and bypassed, not the laptop: what it forwarded
                # was damaged somewhere between its disk and the next laptop's check.
                # Its own outcome stays its own read back's (a disk that lies fails
                # it there; a relay that verified its own disk keeps its success).
                bad = str(event.get("upstream"))
                if bad in self.outcomes:
                    self.route.corrupt.add(bad)
                    outcome.events.append({"event": "bypassed", "upstream": bad})
                    self.outcomes[bad].events.append(
                        {
                            "event": "forwarded_corrupt",
                            "downstream": name,
                            "chunk": event.get("chunk"),
                        }
                    )
                    self._reroute(bad)
            elif kind == "verified":
                outcome.sha256 = str(event.get("sha256", ""))
                if event.get("ok") is True:
                    self._settle(name, True)
                else:
                    self.route.corrupt.add(name)
                    self._settle(name, False, READBACK_MISMATCH)
                    self._reroute(name)
            elif kind == "closed":
                if outcome.ok is None:
                    self.route.dead.add(name)
                    self._settle(name, False, "its relay stopped before the image was verified")
                    self._reroute(name)
            elif kind == "error":
                # Its disk failed, or its relay did: out of the wave, like a dead member.
                self._settle(name, False, str(event.get("reason", "relay error"))[:200])
                self.route.dead.add(name)
                self.members[name].process.send({"op": "stop"})
                self._reroute(name)

    def _rated(self, name: str, event: dict[str, Any]) -> None:
        """Record a member's disk rate; move the members it shows slow to the tail."""
        if self.slow is None or not isinstance(event.get("write_bps"), int | float):
            return
        chunks = event.get("chunks", len(self.manifest.chunks))
        if not isinstance(chunks, int) or chunks < self.slow.min_chunks:
            return
        self.write_rates[name] = float(event["write_bps"])
        healthy = {m: r for m, r in self.write_rates.items() if self.route.healthy(m)}
        for member in slow_members(healthy, self.slow):
            receiving = not any(e.get("event") == "complete" for e in self.outcomes[member].events)
            if member in self.moved or not receiving or self.outcomes[member].ok is not None:
                continue
            if not self.route.move_to_tail(member):
                continue
            self.moved.append(member)
            log.info("relay wave %s: %s's disk is slow, moved to the tail", self.id, member)
            self.outcomes[member].events.append({"event": "moved_to_tail"})
            # Everyone's nearest upstream may have changed: each gets its list again (a
            # member whose first entry changed leaves its upstream for it).
            for other in self.route.order:
                self._send_route(other)

    def wait(self, *, deadline: float) -> dict[str, Outcome]:
        """Handle events until every member has an outcome or ``deadline`` (monotonic)
        passes; then stop every member. Returns the outcomes (``ok`` None = unfinished)."""
        while time.monotonic() < deadline:
            with self._lock:
                if self.outcomes and all(o.ok is not None for o in self.outcomes.values()):
                    break
            try:
                name, event = self.inbox.get(
                    timeout=min(1.0, max(0.01, deadline - time.monotonic()))
                )
            except queue.Empty:
                continue
            self.handle(name, event)
        self.stop_members()
        return self.outcomes

    def stop_members(self) -> None:
        for m in list(self.members.values()):
            m.process.stop()

    def close(self) -> None:
        self.stop_members()
        self.source.stop()
