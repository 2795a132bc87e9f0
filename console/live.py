"""Live updates: one change-detection loop per server process, fanned out to every open
Server-Sent Events connection.

The loop (``Hub``) looks at three indexed "marks" every ``interval`` (the last device
event, the last run event, the last run update): a single cheap read however many
browsers are watching. When they move it asks which benches changed, loads each watched
bench's board once, and hands that snapshot to every connection watching it; each
connection renders only the tiles that changed since it last sent them (renders are
shared between connections of the same language). Every ``resync`` seconds the watched
boards are reloaded anyway, so a change whose marks were hidden (a transaction that
committed late with an older timestamp) shows within that bound. Wave dashboards get a
"stale" signal, at most every ``dashboard_every`` seconds, and reload their figures.

Sessions are re-checked in one query every ``session_check`` seconds: a signed-out
session or a revoked token ends its connections.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from console import service
from core.db import Database
from core.principal import SYSTEM
from provisioning.runs import overview
from provisioning.runs.overview import BoardView

log = logging.getLogger("masterline.console.live")

CLOSE = object()
"""Put in a subscriber's queue when its session ended."""


@dataclass(frozen=True)
class Stale:
    """The subscriber's page should reload its figures."""

    at: float


class Subscriber:
    """One open SSE connection: a small queue where the newest item wins."""

    def __init__(self, topic: str, session_id: int) -> None:
        self.topic = topic
        self.session_id = session_id
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=4)

    def offer(self, item: Any) -> None:
        while self.queue.full():
            self.queue.get_nowait()  # a slow browser gets the newest state, not a backlog
        self.queue.put_nowait(item)


@dataclass
class _Topic:
    subscribers: set[Subscriber] = field(default_factory=set)
    snapshot: BoardView | None = None


def bench_topic(bench_id: int) -> str:
    return f"bench:{bench_id}"


WAVES_TOPIC = "waves"


class Hub:
    def __init__(
        self,
        db: Database,
        *,
        interval: float = 0.2,
        resync: float = 5.0,
        dashboard_every: float = 3.0,
        session_check: float = 10.0,
    ) -> None:
        self.db = db
        self.interval = interval
        self.resync = resync
        self.dashboard_every = dashboard_every
        self.session_check = session_check
        self._topics: dict[str, _Topic] = {}
        self._task: asyncio.Task[None] | None = None
        self._marks: tuple[int, int, Any] | None = None
        self._last_resync = 0.0
        self._last_stale = 0.0
        self._stale_hooks: list[Callable[[], None]] = []
        self._last_session_check = 0.0
        self.ticks = 0
        """Change-detection rounds so far (tests and the benchmark read it)."""

    # Subscriptions.
    def subscribe(self, topic: str, session_id: int) -> Subscriber:
        sub = Subscriber(topic, session_id)
        self._topics.setdefault(topic, _Topic()).subscribers.add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        topic = self._topics.get(sub.topic)
        if topic is not None:
            topic.subscribers.discard(sub)
            if not topic.subscribers:
                self._topics.pop(sub.topic, None)

    def on_stale(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` each time dashboards are told their figures changed (the
        figures cache forgets what it kept)."""
        self._stale_hooks.append(hook)

    @property
    def subscriber_count(self) -> int:
        return sum(len(t.subscribers) for t in self._topics.values())

    def snapshot(self, topic: str) -> BoardView | None:
        found = self._topics.get(topic)
        return found.snapshot if found else None

    # The loop.
    async def _run(self) -> None:
        # Runs while anyone watches; the next subscriber starts it again.
        while self._topics:
            started = time.monotonic()
            try:
                await self._tick()
            except Exception as e:  # a busy or restarting database: try again next round
                log.warning("live update round failed: %s", type(e).__name__)
            self.ticks += 1
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        self._marks = None

    async def _tick(self) -> None:
        marks = await anyio.to_thread.run_sync(self._read_marks)
        now = time.monotonic()
        previous, self._marks = self._marks, marks
        changed = previous is not None and marks != previous
        benches: set[int] = set()
        if changed and previous is not None:
            benches = await anyio.to_thread.run_sync(self._changed_benches, previous)
        resync = now - self._last_resync >= self.resync
        if resync:
            self._last_resync = now
        for name, topic in list(self._topics.items()):
            if not name.startswith("bench:"):
                continue
            bench_id = int(name.split(":", 1)[1])
            if topic.snapshot is None or resync or bench_id in benches:
                board = await anyio.to_thread.run_sync(self.load_board, bench_id)
                topic.snapshot = board
                for sub in list(topic.subscribers):
                    sub.offer(board)
        if changed and now - self._last_stale >= self.dashboard_every:
            self._last_stale = now
            for hook in self._stale_hooks:
                hook()
            waves = self._topics.get(WAVES_TOPIC)
            for sub in list(waves.subscribers if waves is not None else ()):
                sub.offer(Stale(now))
        if now - self._last_session_check >= self.session_check:
            self._last_session_check = now
            await self._end_dead_sessions()

    def _read_marks(self) -> tuple[int, int, Any]:
        with self.db.session(write=False) as session:
            return overview.change_marks(session)

    def _changed_benches(self, previous: tuple[int, int, Any]) -> set[int]:
        with self.db.session(write=False) as session:
            return overview.benches_changed_since(session, previous)

    def load_board(self, bench_id: int) -> BoardView:
        with self.db.session(write=False) as session:
            return overview.bench_board(session, bench_id, SYSTEM)

    async def _end_dead_sessions(self) -> None:
        subs = [s for t in self._topics.values() for s in t.subscribers]
        if not subs:
            return
        ids = sorted({s.session_id for s in subs})

        def check() -> set[int]:
            with self.db.session(write=False) as session:
                return service.live_sessions(session, ids)

        live = await anyio.to_thread.run_sync(check)
        for sub in subs:
            if sub.session_id not in live:
                sub.offer(CLOSE)


def sse(event: str, data: str) -> str:
    """One Server-Sent Events message (each line of ``data`` on its own ``data:``)."""
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\n{lines}\n"


async def stream(
    hub: Hub,
    sub: Subscriber,
    first: Any,
    render: Callable[[Any], str | None],
    *,
    keepalive: float = 15.0,
    lifetime: float = 600.0,
) -> AsyncIterator[str]:
    """The messages of one connection: ``first``, then every item the hub offers,
    each turned into text by ``render`` (None: nothing to send). Ends after
    ``lifetime`` seconds (the browser reconnects at once), so no connection outlives a
    server shutdown for long."""
    ends = time.monotonic() + lifetime
    try:
        yield "retry: 1000\n\n"
        text = render(first)
        if text:
            yield text
        while time.monotonic() < ends:
            try:
                item = await asyncio.wait_for(sub.queue.get(), timeout=keepalive)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if item is CLOSE:
                yield sse("signed-out", "")
                return
            text = render(item)
            if text:
                yield text
    finally:
        hub.unsubscribe(sub)
