"""Relay waves in the engine: the runs of one worker that reach their stream step
together, with the same image at the same site, are imaged from one copy relayed
laptop to laptop (``provisioning/relay/``, docs/relay.md).

Each run's thread calls ``RelayWaves.stream`` from its stream step. The first laptop
of a (site, image) leads a group: it waits until the group is full, or its window
passed (``plan.form_waves``), or every run of this worker on its way to the stream
step has joined; a group of one is a plain stream (``None``: the caller streams as
before). A wave runs in a thread of its own (events in, orders out); each member's
thread waits for its own laptop's progress and outcome, reports the progress as its
run's, and turns the outcome into the step's result or error. A laptop ready while a
wave of its image and site runs joins it at the tail (``plan.joins``).

The site's bandwidth ledger counts a wave as one stream: one member, the carrier
(the lowest run id still receiving), is marked so on its run row and holds the
share; the others are marked relayed and hold none (``bandwidth.counts_as_stream``).
What leaves the server is paced by the carrier's bucket.
"""

from __future__ import annotations

import itertools
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioning.errors import (
    Aborted,
    ChecksumMismatch,
    CommandFailed,
    CommandTimedOut,
    ConnectFailed,
    DiskFull,
    ProvisioningError,
)
from provisioning.imaging.cache import CachedImage
from provisioning.imaging.identity import disk_path
from provisioning.imaging.pacing import TokenBucket
from provisioning.relay.plan import Candidate, SlowRule, WaveRule, form_waves, joins
from provisioning.relay.rawcache import raw_copy
from provisioning.relay.source import Pace
from provisioning.relay.wave import Outcome, Wave
from provisioning.transports.base import SshEndpoint

log = logging.getLogger("masterline.worker")

RELAY_COMMAND = 'exec python3 -S "${MASTERLINE_PE_ROOT:-}/opt/masterline/agent/relay.py"'
"""How the PE runs its relay (the PE ships ``boot/agent/*.py`` there)."""
STATE_DIR = "/var/lib/masterline/relay"
"""Where a PE's relay keeps its verified offset (under the PE's root in the lab)."""
_SETPRIV = shutil.which("setpriv")
_LOGGED = ("connected", "upstream_lost", "corrupt", "resumed", "moved_to_tail", "stalled")
_names = itertools.count(1)


@dataclass
class MemberRequest:
    """One run's laptop, as its stream step hands it to the waves."""

    run_id: int
    image_id: int
    site_id: int
    endpoint: SshEndpoint
    disk: str
    cached: CachedImage
    cache_dir: Path
    timeout: float
    progress: Callable[[int, int], None]
    """(bytes verified, raw size): the run's progress; raises when it was aborted."""
    on_event: Callable[[dict[str, Any]], None]
    mark: Callable[[dict[str, Any] | None], None]
    """Records the run's place in its wave on its row (the bandwidth ledger reads it)."""
    bucket: TokenBucket | None = None
    """The run's share of its site's rate (None: uncapped)."""


@dataclass
class _Member:
    req: MemberRequest
    name: str
    inbox: queue.Queue[tuple[str, Any]] = field(default_factory=queue.Queue)
    done: bool = False
    carrier: bool | None = None


@dataclass
class _Group:
    key: tuple[int, int]
    members: list[_Member] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    wave: Wave | None = None
    closing: bool = False
    failed: str = ""

    def carrier(self) -> _Member | None:
        live = [m for m in self.members if not m.done]
        return min(live, key=lambda m: m.req.run_id) if live else None


class _WavePace:
    """What leaves the server: the test's or bench's hold first, then the carrier's
    share of the site's rate (uncapped: nothing)."""

    def __init__(self, waves: RelayWaves, group: _Group) -> None:
        self.waves, self.group = waves, group

    def take(self, n: int) -> None:
        if self.waves.hold is not None:
            self.waves.hold.take(n)
        while not self.group.closing:
            carrier = self.group.carrier()
            bucket = carrier.req.bucket if carrier is not None else None
            if bucket is None:
                return
            try:
                bucket.take(n)
                return
            except Aborted:  # the carrier was aborted: the next one carries the wave
                time.sleep(0.25)
        raise OSError("the wave is over")


class RelayWaves:
    """This worker's relay waves (see the module docstring)."""

    def __init__(
        self,
        *,
        rule: WaveRule,
        chunk_bytes: int,
        source_host: str,
        command: str = RELAY_COMMAND,
        slow: SlowRule | None = None,
        pending: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rule = rule
        self.chunk_bytes = chunk_bytes
        self.source_host = source_host
        self.command = command
        self.slow = slow
        self.pending = pending
        """How many of this worker's runs are in the stream step or a step before it."""
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[tuple[int, int], tuple[_Group, float]] = {}
        self._running: dict[tuple[int, int], _Group] = {}
        self._inside = 0
        self.hold: Pace | None = None
        """Held before every byte the source sends: the tests' and the bench's gate."""
        self.waves: list[Wave] = []
        """Every wave this worker ran (the tests and the bench read them)."""

    # A run's side.
    def stream(self, req: MemberRequest) -> dict[str, Any] | None:
        """Image ``req``'s laptop in a wave; None when it is alone (stream it plainly).

        :raises ProvisioningError: its laptop's outcome (see ``_error``).
        """
        disk_path(req.disk)  # an odd disk name fails here, before any wave
        me = _Member(req, f"r{req.run_id}-{next(_names)}")
        key = (req.site_id, req.image_id)
        with self._lock:
            self._inside += 1
        try:
            group = self._join(me, key)
            if group is None:
                return None
            return self._await(me, group)
        finally:
            with self._lock:
                self._inside -= 1

    def _join(self, me: _Member, key: tuple[int, int]) -> _Group | None:
        with self._lock:
            running = self._running.get(key)
            if running is not None and not running.closing and running.wave is not None:
                cand = Candidate(me.req.run_id, key[1], key[0], self._clock())
                if joins(key[1], key[0], len(running.members), cand, self.rule):
                    running.members.append(me)
                    late = running
                else:
                    late = None
            else:
                late = None
            if late is None:
                opened = self._open.get(key)
                lead = opened is None
                if opened is None:
                    opened = self._open[key] = (_Group(key), self._clock())
                group, _ = opened
                group.members.append(me)
        if late is not None:
            self._add(late, me)  # at the tail, while the wave runs
            return late
        if not lead:
            if not group.started.wait(self.rule.window_seconds + 120):
                raise CommandTimedOut("its relay wave never started")
            return group
        return self._lead(group)

    def _lead(self, group: _Group) -> _Group | None:
        while self._keep_waiting(group):
            time.sleep(0.05)
        with self._lock:
            self._open.pop(group.key, None)
            if len(group.members) == 1:
                return None  # a group of one: a plain stream
            self._running[group.key] = group
        threading.Thread(target=self._run, args=(group,), name="relay-wave", daemon=True).start()
        group.started.wait(600)
        return group

    def _keep_waiting(self, group: _Group) -> bool:
        with self._lock:
            _, opened_at = self._open[group.key]
            now = self._clock()
            cands = [
                Candidate(m.req.run_id, group.key[1], group.key[0], opened_at)
                for m in group.members
            ]
            if form_waves(cands, rule=self.rule, now=now):
                return False  # full, or its window passed
            return self.pending is None or self.pending() > self._inside

    def _await(self, me: _Member, group: _Group) -> dict[str, Any]:
        req = me.req
        deadline = time.monotonic() + req.timeout
        offset = 0
        while True:
            if group.failed and not me.done:
                raise CommandFailed(group.failed)
            try:
                kind, value = me.inbox.get(timeout=1.0)
            except queue.Empty:
                kind, value = "tick", None
            try:
                if kind == "progress":
                    offset = int(value)
                if kind in ("progress", "tick") and group.wave is not None:
                    req.progress(offset, group.wave.manifest.size)
            except BaseException:
                self._leave(group, me)  # aborted, or no longer this worker's run
                raise
            if kind == "done":
                return self._result(me, group, value)
            if time.monotonic() > deadline:
                self._leave(group, me)
                raise CommandTimedOut("relay stream timed out")

    def _leave(self, group: _Group, me: _Member) -> None:
        wave = group.wave
        member = wave.members.get(me.name) if wave is not None else None
        if member is not None:
            member.process.stop()

    def _result(self, me: _Member, group: _Group, outcome: Outcome) -> dict[str, Any]:
        if not outcome.ok:
            raise _error(outcome.reason)
        wave = group.wave
        assert wave is not None
        upstreams = [str(e["upstream"]) for e in outcome.events if e.get("event") == "connected"]
        me.req.progress(wave.manifest.size, wave.manifest.size)
        return {
            "written": {
                "bytes_sent": 0,
                "sha256": outcome.sha256,
                "raw_size": wave.manifest.size,
                "relay": {
                    "wave": wave.id,
                    "member": me.name,
                    "members": len(group.members),
                    "upstreams": upstreams,
                    "moved_to_tail": me.name in wave.moved,
                },
            },
            "relay": None,
        }

    # The wave's side.
    def _add(self, group: _Group, m: _Member) -> None:
        wave = group.wave
        assert wave is not None
        from provisioning.transports.ssh import openssh_argv  # paramiko: in workers only

        argv = openssh_argv(m.req.endpoint, self.command)
        if _SETPRIV is not None:  # the relay's session dies with this worker
            argv = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]
        state = f"{STATE_DIR}/{m.req.cached.raw_sha256[:16]}-{m.req.disk}.json"
        try:
            wave.add(m.name, argv, f"/dev/{m.req.disk}", host=m.req.endpoint.host, state=state)
        except OSError as e:
            m.done = True
            m.inbox.put(("done", Outcome(m.name, ok=False, reason=f"relay not started: {e}")))
            return
        self._recarry(group)
        m.req.on_event(
            {
                "event": "relay",
                "message": f"in relay wave {wave.id} as {m.name} (member {len(group.members)})",
            }
        )

    def _run(self, group: _Group) -> None:
        try:
            self._run_wave(group)
        except Exception:  # every member still gets an outcome (below), never a hang
            log.exception("relay wave of %s laptops stopped", len(group.members))
        finally:
            with self._lock:
                group.closing = True
                self._running.pop(group.key, None)
            group.started.set()
            for m in group.members:
                if not m.done:
                    m.done = True
                    reason = group.failed or "its wave ended first"
                    m.inbox.put(("done", Outcome(m.name, ok=False, reason=reason)))

    def _run_wave(self, group: _Group) -> None:
        first = group.members[0].req
        try:
            raw, manifest = raw_copy(first.cached, first.cache_dir, chunk_size=self.chunk_bytes)
        except (ProvisioningError, OSError) as e:
            group.failed = f"relay copy of the image failed: {e}"
            return
        wave = Wave(
            image=raw,
            manifest=manifest,
            source_host=self.source_host,
            pace=_WavePace(self, group),
            slow=self.slow,
        )
        self.waves.append(wave)
        with wave:
            with self._lock:
                group.wave = wave
                # Chained in the order the runs were queued (scanned), not the order
                # their threads got here: the same bench gives the same chain.
                initial = sorted(group.members, key=lambda m: m.req.run_id)
            for m in initial:
                self._add(group, m)
            group.started.set()
            deadline = time.monotonic() + max(m.req.timeout for m in initial) + 60
            self._loop(group, wave, deadline)

    def _loop(self, group: _Group, wave: Wave, deadline: float) -> None:
        while time.monotonic() < deadline:
            with self._lock:
                if all(
                    (o := wave.outcomes.get(m.name)) is not None and o.ok is not None
                    for m in group.members
                ):
                    group.closing = True
                    return
            try:
                name, event = wave.inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            wave.handle(name, event)
            self._dispatch(group, wave, name, event)

    def _dispatch(self, group: _Group, wave: Wave, name: str, event: dict[str, Any]) -> None:
        by_name = {m.name: m for m in group.members}
        me = by_name.get(name)
        kind = event.get("event")
        if me is not None and kind in ("progress", "complete") and "offset" in event:
            me.inbox.put(("progress", int(event["offset"])))
        if me is not None and kind in _LOGGED:
            me.req.on_event({**event, "event": f"relay_{kind}", "message": _describe(event)})
        settled = False
        for m in group.members:
            outcome = wave.outcomes.get(m.name)
            if not m.done and outcome is not None and outcome.ok is not None:
                m.done = settled = True
                m.inbox.put(("done", outcome))
        if settled:
            self._recarry(group)

    def _recarry(self, group: _Group) -> None:
        """Mark which member's run counts as the wave's one stream in the ledger."""
        wave = group.wave
        carrier = group.carrier()
        for m in group.members:
            want = m is carrier
            if m.carrier is want or (m.done and not want):
                continue
            m.carrier = want
            try:
                m.req.mark({"wave": wave.id if wave else "", "member": m.name, "carrier": want})
            except Exception:  # the ledger is best effort; the stream goes on
                log.exception("could not record relay membership of run %s", m.req.run_id)


def _describe(event: dict[str, Any]) -> str:
    fields = ", ".join(f"{k} {v}" for k, v in event.items() if k != "event")
    return f"relay {event.get('event')}: {fields}"[:300]


def _error(reason: str) -> ProvisioningError:
    """A member's failure as the step's error: a laptop that went away may come back
    (retried, it resumes from its verified offset); a disk that lies or fills is fatal."""
    if "No space left" in reason:
        return DiskFull(reason)
    if "corrupt" in reason or "does not match" in reason:
        return ChecksumMismatch(f"relay: {reason}")
    if "stopped before" in reason or "ended first" in reason:
        return ConnectFailed(f"relay: {reason}")
    return CommandFailed(f"relay: {reason}")
