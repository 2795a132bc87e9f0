"""The import child's side of ``bench.scan_trace``: per write transaction, the time from
its BEGIN to its COMMIT (``work``: its wait for the lent write lock included; the
parent's trace has the holds themselves), and how long the COMMIT took (a WAL
auto-checkpoint runs inside it); its GC pauses; at its end, its CPU time and peak
resident memory (what keeping cyclic garbage to the end costs, ``core.heap``).
Installed through ``core.child.CHILD_INITIALIZERS``; lines appended to
``$MASTERLINE_BENCH_TRACE.child``.

``MASTERLINE_BENCH_NO_FREEZE=1``: the child freezes nothing (``--no-freeze``);
``MASTERLINE_BENCH_GC_DEFAULT=1``: the child keeps Python's automatic full collections
(``--gc-default``), the "before" of ``core.heap.no_automatic_full_collections``."""

from __future__ import annotations

import json
import os
import resource
import time
from typing import Any

_buffer: list[str] = []


def install() -> None:
    import gc

    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from core import db as core_db

    state: dict[str, float] = {}
    path = os.environ.get("MASTERLINE_BENCH_TRACE", "") + ".child"

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            state["gc"] = time.time()
        elif "gc" in state:
            t0 = state.pop("gc")
            _buffer.append(
                json.dumps(
                    {
                        "kind": "childgc",
                        "t": t0,
                        "paused": time.time() - t0,
                        "gen": info["generation"],
                    }
                )
            )

    gc.callbacks.append(on_gc)
    if os.environ.get("MASTERLINE_BENCH_NO_FREEZE"):
        from core import child

        child.freeze_long_lived = no_freeze
    if os.environ.get("MASTERLINE_BENCH_GC_DEFAULT"):
        from core import child

        child.no_automatic_full_collections = gc_default

    @event.listens_for(Engine, "begin")
    def _begin(_conn: Any) -> None:
        state["begin"] = time.time()

    @event.listens_for(Engine, "commit")
    def _commit(_conn: Any) -> None:
        state["commit"] = time.time()

    @event.listens_for(Session, "after_commit")
    def _done(_session: Any) -> None:
        now = time.time()
        if "commit" in state and "begin" in state:
            _buffer.append(
                json.dumps(
                    {
                        "kind": "child",
                        "t": state["begin"],
                        "work": state["commit"] - state["begin"],
                        "commit": now - state["commit"],
                    }
                )
            )
            if len(_buffer) >= 50:
                flush(path)
        state.pop("begin", None)
        state.pop("commit", None)

    # The end of the child: what is left.
    original = core_db.Database.dispose

    def dispose(self: core_db.Database) -> None:
        times = os.times()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        _buffer.append(
            json.dumps(
                {
                    "kind": "childend",
                    "t": time.time(),
                    "cpu": times.user + times.system,
                    "maxrss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
                }
            )
        )
        flush(path)
        original(self)

    core_db.Database.dispose = dispose  # type: ignore[method-assign]


def flush(path: str) -> None:
    if _buffer:
        with open(path, "a") as f:
            f.write("\n".join(_buffer) + "\n")
        _buffer.clear()


def no_freeze(**_: Any) -> None:
    """``core.heap.freeze_long_lived`` switched off (``--no-freeze``)."""


def gc_default() -> None:
    """``core.heap.no_automatic_full_collections`` switched off (``--gc-default``)."""
