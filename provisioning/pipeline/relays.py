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

The source listens where the members reach the worker: learned per laptop from the
worker's own SSH session to its PE (``relay/address.py``), unless ``source_host``
overrides it; a laptop the worker reaches at another address than its wave's streams
plainly. A member whose relay has not verified a first chunk within
``first_chunk_seconds`` of its start (an unreachable source, a firewall between the
laptops) leaves the wave and streams plainly, saying why in its run's log: a wave never
hangs a run, and a fallback is judged by the verify step like any plain stream.
"""

from __future__ import annotations

import itertools
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

from provisioning.errors import CommandFailed, CommandTimedOut, ProvisioningError
from provisioning.imaging.identity import disk_path
from provisioning.pipeline.relay_members import (
    Group,
    Member,
    MemberRequest,
    WavePace,
    describe,
    error_of,
)
from provisioning.relay.address import NoRelayAddress, relay_address
from provisioning.relay.plan import Candidate, SlowRule, WaveRule, form_waves, joins
from provisioning.relay.rawcache import raw_copy
from provisioning.relay.source import Pace
from provisioning.relay.wave import Outcome, Wave

__all__ = ["MemberRequest", "RelayWaves"]

log = logging.getLogger("masterline.worker")

RELAY_COMMAND = 'exec python3 -S "${MASTERLINE_PE_ROOT:-}/opt/masterline/agent/relay.py"'
"""How the PE runs its relay (the PE ships ``boot/agent/*.py`` there)."""
STATE_DIR = "/var/lib/masterline/relay"
"""Where a PE's relay keeps its verified offset (under the PE's root in the lab)."""
_SETPRIV = shutil.which("setpriv")
_LOGGED = ("connected", "upstream_lost", "corrupt", "resumed", "moved_to_tail", "stalled")
_names = itertools.count(1)
FELL_BACK = "relay: fell back to a plain stream"
"""How a run's log says its laptop left (or never joined) a wave for a plain stream."""


class RelayWaves:
    """This worker's relay waves (see the module docstring)."""

    def __init__(
        self,
        *,
        rule: WaveRule,
        chunk_bytes: int,
        source_host: str = "",
        first_chunk_seconds: float = 60.0,
        command: str = RELAY_COMMAND,
        slow: SlowRule | None = None,
        pending: Callable[[tuple[int, int]], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rule = rule
        self.chunk_bytes = chunk_bytes
        self.source_host = source_host
        """Where every wave's source listens; empty: learned per laptop."""
        self.first_chunk_seconds = first_chunk_seconds
        """A member with no verified chunk this long after its relay started streams
        plainly instead (``_await``)."""
        self.command = command
        self.slow = slow
        self.pending = pending
        """How many of this worker's runs writing a wave's key (site id, image id) are in
        the stream step or a step before it: those its first laptop may wait for."""
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[tuple[int, int], tuple[Group, float]] = {}
        self._running: dict[tuple[int, int], Group] = {}
        self._inside: dict[tuple[int, int], int] = {}
        """Runs inside ``stream`` per wave key (site id, image id)."""
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
        try:
            learned = relay_address(
                override=self.source_host, pe_host=req.endpoint.host, session=req.session
            )
        except NoRelayAddress as e:
            _fell_back(req, f"no address this laptop reaches the worker at ({e})")
            return None
        me = Member(req, f"r{req.run_id}-{next(_names)}", host=learned.host)
        req.on_event(
            {
                "event": "relay_address",
                "host": learned.host,
                "message": f"relay: the worker serves it from {learned.host} ({learned.how})",
            }
        )
        key = (req.site_id, req.image_id)
        with self._lock:
            self._inside[key] = self._inside.get(key, 0) + 1
        try:
            group = self._join(me, key)
            if group is None:
                return None
            return self._await(me, group)
        finally:
            with self._lock:
                self._inside[key] -= 1
                if not self._inside[key]:
                    del self._inside[key]

    def _join(self, me: Member, key: tuple[int, int]) -> Group | None:
        elsewhere = ""
        with self._lock:
            running = self._running.get(key)
            if (
                running is not None
                and not running.closing
                and running.wave is not None
                and running.host == me.host
            ):
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
                    opened = self._open[key] = (Group(key, host=me.host), self._clock())
                group, _ = opened
                if group.host == me.host:
                    group.members.append(me)
                else:
                    elsewhere = group.host
        if elsewhere:
            # One source address per wave: a laptop on another of the worker's
            # networks would be given an address it may not reach.
            _fell_back(
                me.req,
                f"the worker reaches it at {me.host}, its wave is served from {elsewhere}",
            )
            return None
        if late is not None:
            self._add(late, me)  # at the tail, while the wave runs
            return late
        if not lead:
            return self._follow(group, me)
        return self._lead(group, me)

    def _check(self, me: Member) -> None:
        """Raises when ``me``'s run was aborted or is not this worker's any more (its
        progress reporter's check): noticed while a group waits for its window."""
        me.req.progress(0, me.req.cached.raw_size)

    def _follow(self, group: Group, me: Member) -> Group | None:
        """Wait for the group's leader to start its wave (None: it became a plain stream)."""
        # The window bounds the wait while the group is open; once its leader started
        # it (making the site's raw copy first can take minutes), the step's timeout.
        limit = time.monotonic() + self.rule.window_seconds + 120
        deadline = time.monotonic() + me.req.timeout
        while not group.started.wait(1.0):
            with self._lock:
                still_open = self._open.get(group.key, (None, 0.0))[0] is group
            if time.monotonic() > (limit if still_open else deadline):
                if not self._withdraw(group, me):
                    self._leave(group, me)
                raise CommandTimedOut("its relay wave never started")
            try:
                self._check(me)
            except BaseException:
                if not self._withdraw(group, me):  # already in the starting wave
                    group.started.wait(60)
                    self._leave(group, me)
                raise
        return None if group.plain else group

    def _withdraw(self, group: Group, me: Member) -> bool:
        """Take ``me`` out of a group whose wave has not taken its members yet."""
        with self._lock:
            if group.wave is None and me in group.members:
                group.members.remove(me)
                return True
            return False

    def _lead(self, group: Group, me: Member) -> Group | None:
        aborted: BaseException | None = None
        checked = time.monotonic()
        while self._keep_waiting(group):
            if time.monotonic() - checked >= 1.0:
                checked = time.monotonic()
                try:
                    self._check(me)
                except BaseException as e:  # its run leaves; the others go on without it
                    aborted = e
                    break
            time.sleep(0.05)
        with self._lock:
            self._open.pop(group.key, None)
            if aborted is not None:
                group.members.remove(me)
            if len(group.members) <= 1:
                group.plain = True  # a group of one: a plain stream
                group.started.set()
            else:
                self._running[group.key] = group
        if aborted is not None:
            if not group.plain:  # the others start now, without it
                threading.Thread(target=self._run, args=(group,), daemon=True).start()
            raise aborted
        if group.plain:
            return None
        threading.Thread(target=self._run, args=(group,), name="relay-wave", daemon=True).start()
        group.started.wait(me.req.timeout)
        return group

    def _keep_waiting(self, group: Group) -> bool:
        with self._lock:
            _, opened_at = self._open[group.key]
            now = self._clock()
            cands = [
                Candidate(m.req.run_id, group.key[1], group.key[0], opened_at)
                for m in group.members
            ]
            if form_waves(cands, rule=self.rule, now=now):
                return False  # full, or its window passed
            # Only runs that would join this group count: a laptop of another image or
            # site, or one queued at another site that never boots, is not waited for.
            inside = self._inside.get(group.key, 0)
            return self.pending is None or self.pending(group.key) > inside

    def _await(self, me: Member, group: Group) -> dict[str, Any] | None:
        """The member's outcome as its step's result; None when it left the wave for a
        plain stream (no first chunk in time)."""
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
            if kind == "tick" and self._starved(me):
                self._fall_back(group, me)
                return None
            try:
                if kind == "progress":
                    offset = int(value)
                    me.received = True
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

    def _starved(self, me: Member) -> bool:
        """Whether ``me``'s relay has gone ``first_chunk_seconds`` without a chunk; if
        so it is settled here (under the lock), so no outcome is handed to it after."""
        with self._lock:
            if me.done or me.received or me.added_at is None:
                return False
            if time.monotonic() - me.added_at < self.first_chunk_seconds:
                return False
            me.done = True
            return True

    def _fall_back(self, group: Group, me: Member) -> None:
        """``me`` leaves its wave (its relay stopped: those behind it are rerouted, as
        around a dead member) and its run streams plainly."""
        why = f"no chunk within {self.first_chunk_seconds:g} s of its relay's start"
        if me.lost:
            why += f" (last: {me.lost})"
        self._leave(group, me)
        try:
            me.req.mark(None)  # its own stream again in the site's ledger
        except Exception:
            log.exception("could not record run %s leaving its wave", me.req.run_id)
        self._recarry(group)
        _fell_back(me.req, why)

    def _leave(self, group: Group, me: Member) -> None:
        wave = group.wave
        member = wave.members.get(me.name) if wave is not None else None
        if member is not None:
            member.process.stop()

    def _result(self, me: Member, group: Group, outcome: Outcome) -> dict[str, Any]:
        wave = group.wave
        written = any(e.get("event") == "complete" for e in outcome.events)
        if not outcome.ok and not (written and wave is not None):
            raise error_of(outcome.reason)
        assert wave is not None
        if not outcome.ok:
            # Every chunk was checked and written, but the disk did not flush or does
            # not read the image back: the verify step that follows flushes and reads
            # it back and fails it as after a plain stream, so a disk that lies reads
            # the same (failed at verify, same reason, same retry) relayed or not.
            me.req.on_event(
                {
                    "event": "relay_readback_bad",
                    "message": f"relay: {outcome.reason[:200]} (left to the verify step)",
                }
            )
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
    def _add(self, group: Group, m: Member) -> None:
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
        m.added_at = time.monotonic()
        self._recarry(group)
        m.req.on_event(
            {
                "event": "relay",
                "message": f"in relay wave {wave.id} as {m.name} (member {len(group.members)})",
            }
        )

    def _run(self, group: Group) -> None:
        try:
            self._run_wave(group)
        except Exception:  # every member still gets an outcome (below), never a hang
            log.exception("relay wave of %s laptops stopped", len(group.members))
        finally:
            with self._lock:
                group.closing = True
                self._running.pop(group.key, None)
                for m in group.members:
                    if not m.done:
                        m.done = True
                        reason = group.failed or "its wave ended first"
                        m.inbox.put(("done", Outcome(m.name, ok=False, reason=reason)))
            group.started.set()

    def _run_wave(self, group: Group) -> None:
        first = group.members[0].req
        try:
            raw, manifest = raw_copy(first.cached, first.cache_dir, chunk_size=self.chunk_bytes)
        except (ProvisioningError, OSError) as e:
            group.failed = f"relay copy of the image failed: {e}"
            return
        wave = Wave(
            image=raw,
            manifest=manifest,
            source_host=group.host,
            pace=WavePace(self, group),
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

    def _loop(self, group: Group, wave: Wave, deadline: float) -> None:
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

    def _dispatch(self, group: Group, wave: Wave, name: str, event: dict[str, Any]) -> None:
        by_name = {m.name: m for m in group.members}
        me = by_name.get(name)
        kind = event.get("event")
        if me is not None and kind in ("progress", "complete") and "offset" in event:
            me.inbox.put(("progress", int(event["offset"])))
        if me is not None and kind in _LOGGED:
            me.req.on_event({**event, "event": f"relay_{kind}", "message": describe(event)})
        if me is not None and kind == "upstream_lost":
            me.lost = f"{event.get('upstream')}: {str(event.get('reason', ''))[:120]}"
        bad = by_name.get(str(event.get("upstream"))) if kind == "corrupt" else None
        if bad is not None:  # its run's log says why no one takes the stream from it
            told = {"event": "forwarded_corrupt", "downstream": name, "chunk": event.get("chunk")}
            bad.req.on_event({**told, "event": "relay_bypassed", "message": describe(told)})
        settled = False
        with self._lock:  # a member that fell back (``_starved``) takes no outcome
            for m in group.members:
                outcome = wave.outcomes.get(m.name)
                if not m.done and outcome is not None and outcome.ok is not None:
                    m.done = settled = True
                    m.inbox.put(("done", outcome))
        if settled:
            self._recarry(group)

    def _recarry(self, group: Group) -> None:
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


def _fell_back(req: MemberRequest, reason: str) -> None:
    req.on_event({"event": "relay_fell_back", "message": f"{FELL_BACK}: {reason}"[:300]})
