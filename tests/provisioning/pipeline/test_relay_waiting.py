"""A relay group waiting for its window: a run aborted meanwhile leaves at once (its
progress check raises), without waiting for the window; what is left of the group goes
on, or streams plainly when one laptop is left. Real threads, no laptop: no wave
starts in these cases (a wave's own tests are test_relay_engine.py's)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from provisioning.errors import Aborted
from provisioning.imaging.cache import CachedImage
from provisioning.pipeline.relays import MemberRequest, RelayWaves
from provisioning.relay.plan import WaveRule
from provisioning.transports.base import SshEndpoint
from tests.support.waiting import eventually


class Laptop:
    """One run's side: its stream call in a thread, and an abort switch."""

    def __init__(self, waves: RelayWaves, run_id: int, tmp: Path) -> None:
        self.aborted = threading.Event()
        self.result: Any = "unset"
        self.error: BaseException | None = None
        path = tmp / "image.zst"
        req = MemberRequest(
            run_id=run_id,
            image_id=7,
            site_id=1,
            endpoint=SshEndpoint("127.0.0.1", 22, "pe", path, path),
            disk="nvme0n1",
            cached=CachedImage(path, 10, "0" * 64, 20, "1" * 64),
            cache_dir=tmp,
            timeout=60,
            progress=self._progress,
            on_event=lambda event: None,
            mark=lambda info: None,
        )
        self.thread = threading.Thread(target=self._run, args=(waves, req), daemon=True)
        self.thread.start()

    def _progress(self, sent: int, total: int) -> None:
        if self.aborted.is_set():
            raise Aborted("aborted by a technician")

    def _run(self, waves: RelayWaves, req: MemberRequest) -> None:
        try:
            self.result = waves.stream(req)
        except BaseException as e:
            self.error = e

    def join(self) -> None:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()


@pytest.fixture
def waves() -> RelayWaves:
    # A long window and a third laptop always "on its way": only the aborts end a wait.
    coming = {"n": 3}
    w = RelayWaves(
        rule=WaveRule(window_seconds=600, max_members=32),
        chunk_bytes=1024,
        source_host="127.0.0.1",
        pending=lambda key: coming["n"],
    )
    w.coming = coming  # type: ignore[attr-defined]
    return w


def _members(waves: RelayWaves) -> list[int]:
    return [m.req.run_id for g, _ in waves._open.values() for m in g.members]


def test_an_aborted_follower_leaves_its_group_at_once(waves: RelayWaves, tmp_path: Path) -> None:
    a = Laptop(waves, 1, tmp_path)
    eventually(lambda: _members(waves) == [1])
    b = Laptop(waves, 2, tmp_path)
    eventually(lambda: _members(waves) == [1, 2])
    b.aborted.set()
    b.join()
    assert isinstance(b.error, Aborted)
    assert _members(waves) == [1]  # still waiting, without it
    # Nobody else is coming: the one left streams plainly.
    waves.coming["n"] = 1  # type: ignore[attr-defined]
    a.join()
    assert a.error is None and a.result is None
    assert waves.waves == []


def test_an_aborted_leader_leaves_and_the_last_one_streams_plainly(
    waves: RelayWaves, tmp_path: Path
) -> None:
    a = Laptop(waves, 1, tmp_path)
    eventually(lambda: _members(waves) == [1])
    b = Laptop(waves, 2, tmp_path)
    eventually(lambda: _members(waves) == [1, 2])
    a.aborted.set()
    a.join()
    b.join()
    assert isinstance(a.error, Aborted)
    assert b.error is None and b.result is None  # alone now: a plain stream
    assert waves.waves == [] and _members(waves) == []


def test_runs_of_another_image_or_site_are_not_waited_for(tmp_path: Path) -> None:
    """A laptop (site 1, image 7) alone on its way to the stream step, while this worker
    has runs of image 8 at site 1 and of image 7 at site 2 coming: none of those would
    join its wave, so it does not wait its hour-long window for them and streams
    plainly. It waited the whole window when every queued run counted."""
    coming = {(1, 7): 1, (1, 8): 5, (2, 7): 5}
    asked: list[tuple[int, int]] = []

    def pending(key: tuple[int, int]) -> int:
        asked.append(key)
        return coming.get(key, 0)

    waves = RelayWaves(
        rule=WaveRule(window_seconds=3600, max_members=32),
        chunk_bytes=1024,
        source_host="127.0.0.1",
        pending=pending,
    )
    alone = Laptop(waves, 1, tmp_path)
    alone.join()  # bounded: 60 s, not the window
    assert alone.error is None and alone.result is None  # a plain stream
    assert waves.waves == [] and set(asked) == {(1, 7)}
