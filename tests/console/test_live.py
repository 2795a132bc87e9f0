"""Live updates: one change-detection loop per process, fanned out to every open board;
the bench board's stream over a real server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from console.live import Hub, bench_topic
from core.db import Database
from core.principal import SYSTEM, Role
from provisioning.runs import service as runs
from provisioning.runs.overview import BoardView
from tests.console.support import failed_device
from tests.support.factories import World
from tests.support.server import running_server


class StatementCounter:
    def __init__(self, db: Database) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self.engine = db.engine
        event.listen(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: Any) -> None:
        with self._lock:
            self.count += 1

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


def _slot_state(board: BoardView, slot: int) -> str | None:
    laptop = board.slots[slot - 1].laptop
    return laptop.state.value if laptop else None


def test_one_loop_serves_fifty_boards_with_the_same_queries_as_one(
    db: Database, world: World
) -> None:
    with db.session() as s:
        device, run = failed_device(s, world, client="ACME")
    assert device.slot is not None and run.id is not None and world.bench.id is not None
    slot, run_id, topic = device.slot, run.id, bench_topic(world.bench.id)

    async def scenario() -> tuple[int, int, int]:
        hub = Hub(db, interval=0.05, resync=3600)
        subs = [hub.subscribe(topic, session_id=i) for i in range(50)]
        while hub.snapshot(topic) is None:  # the first load (bounded by the test timeout)
            await asyncio.sleep(0.01)
        for sub in subs:
            while not sub.queue.empty():
                sub.queue.get_nowait()
        counter = StatementCounter(db)
        ticks_before = hub.ticks
        try:
            # Another engine (another process, as a real bench): its own statements
            # are not the hub's.
            writer = Database(db.url)
            try:
                await asyncio.to_thread(_retry, writer, run_id)
            finally:
                writer.dispose()
            got = await asyncio.wait_for(
                asyncio.gather(*(_until_state(sub, slot, "queued") for sub in subs)), timeout=60
            )
        finally:
            counter.close()
        rounds = max(1, hub.ticks - ticks_before + 1)
        for sub in subs:
            hub.unsubscribe(sub)
        return len(got), counter.count, rounds

    received, statements, rounds = asyncio.run(scenario())
    assert received == 50
    # Per round: three marks; on a change, the benches that changed and one board load
    # (its failures) -- never one query per open board.
    assert statements <= 4 * rounds + 8, (statements, rounds)


def _retry(db: Database, run_id: int) -> None:
    with db.session() as s:
        runs.retry(s, run_id, SYSTEM)


async def _until_state(sub: Any, slot: int, state: str) -> BoardView:
    while True:
        item = await sub.queue.get()
        if isinstance(item, BoardView) and _slot_state(item, slot) == state:
            return item


def _sign_in(client: httpx.Client, token: str) -> None:
    import re

    form = client.get("/console/sign-in")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce
    answer = client.post("/console/sign-in", data={"token": token, "nonce": nonce.group(1)})
    assert answer.status_code in (200, 303)


def _events(response: httpx.Response) -> Iterator[tuple[str, str]]:
    name, data = "", []
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and name:
            yield name, "\n".join(data)
            name, data = "", []


@pytest.mark.slow  # a live event stream
def test_the_board_stream_sends_the_tile_that_changed(db: Database, world: World) -> None:
    with db.session() as s:
        device, run = failed_device(s, world, client="ACME")
    with running_server(db) as base, httpx.Client(base_url=base, timeout=30) as client:
        _sign_in(client, world.token(Role.TECHNICIAN))
        url = f"/console/live/benches/{world.bench.id}"
        with client.stream("GET", url) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = _events(response)
            name, first = next(stream)
            assert name == "tiles" and f'id="slot-{device.slot}"' in first
            assert "mastérisation en échec" in first  # the failure, in French
            assert "Le disque relu ne correspond pas" in first  # why, in plain words
            threading.Thread(target=_retry, args=(db, run.id), daemon=True).start()
            deadline = time.monotonic() + 60
            for name, data in stream:
                assert time.monotonic() < deadline, "no update within 60 s"
                if name == "tiles" and f'id="slot-{device.slot}"' in data and "en file" in data:
                    # Only what changed: this tile and the summary, not all 64.
                    assert data.count('class="tile') == 1
                    break
