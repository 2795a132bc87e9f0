"""Where a slow scan's time goes: the API server of ``bench.intake_scan --trace``,
instrumented in its own process (the product's code carries none of this).

    uvicorn bench.scan_trace:app    (MASTERLINE_BENCH_TRACE=<file.jsonl>)

Per ``POST /scan``, written as one JSON line when the server stops:

- ``total``: the request in the server (ASGI in to response sent);
- ``thread``: the database work's thread trip (``inventory.router.scan``'s ``work`` and
  its commit), and inside it ``lock_wait`` (the SQLite write lock, ``FairLock``: time
  queued behind other writers), ``sql`` (statements, commit excluded), ``commit``
  (the COMMIT itself: on SQLite a WAL auto-checkpoint runs inside it), ``cpu`` (this
  thread's CPU time) and ``runq`` (time this thread was runnable but not running: CPU
  starvation, from ``/proc/self/task/<tid>/schedstat``);
- ``gc``: garbage-collector pauses of the process that overlapped the request.

With ``MASTERLINE_BENCH_NO_FREEZE=1`` (``--no-freeze``), neither this server nor the
import's child freezes its long-lived objects (``core.heap``): the "before" of that fix.

Also, per write-lock hold (SQLite): who held it (a scan, the import's child through the
parent's pipe, anything else), when and for how long, and per GC pause its time and
generation. ``bench.intake_scan`` reads the file back and reports the slowest scans.
"""

from __future__ import annotations

import contextvars
import gc
import json
import os
import threading
import time
from collections.abc import MutableMapping
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core import db as core_db

_request: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "scan_trace", default=None
)
_records: list[dict[str, Any]] = []
_holds: list[tuple[str, float, float]] = []
_gcs: list[tuple[float, float, int, float]] = []
_local = threading.local()


def _schedstat() -> tuple[float, float]:
    """(cpu s, run-queue wait s) of the calling thread."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
            cpu, wait, _ = f.read().split()
        return int(cpu) / 1e9, int(wait) / 1e9
    except OSError:
        return 0.0, 0.0


# The write lock: wait and hold, by holder.
_acquire, _release = core_db.FairLock.acquire, core_db.FairLock.release


def _traced_acquire(self: core_db.FairLock, timeout: float) -> bool:
    t0 = time.time()
    ok = _acquire(self, timeout)
    waited = time.time() - t0
    rec = _request.get()
    if rec is not None:
        rec["lock_wait"] = rec.get("lock_wait", 0.0) + waited
        rec.setdefault("lock_t0", t0)
    name = threading.current_thread().name
    _local.holder = "scan" if rec is not None else ("child" if "child" in name else name)
    _local.since = time.time()
    return ok


def _traced_release(self: core_db.FairLock) -> None:
    since = getattr(_local, "since", None)
    if since is not None:
        _holds.append((getattr(_local, "holder", "?"), since, time.time() - since))
        _local.since = None
    _release(self)


core_db.FairLock.acquire = _traced_acquire  # type: ignore[method-assign]
core_db.FairLock.release = _traced_release  # type: ignore[method-assign]


# Statements and commits.
@event.listens_for(Engine, "before_cursor_execute")
def _before(*_: Any) -> None:
    _local.sql_t0 = time.perf_counter()


@event.listens_for(Engine, "after_cursor_execute")
def _after(*_: Any) -> None:
    rec = _request.get()
    if rec is not None:
        rec["sql"] = rec.get("sql", 0.0) + time.perf_counter() - _local.sql_t0


@event.listens_for(Engine, "commit")
def _commit_start(_conn: Any) -> None:
    _local.commit_t0 = time.perf_counter()


@event.listens_for(Session, "after_commit")
def _commit_end(_session: Any) -> None:
    rec = _request.get()
    t0 = getattr(_local, "commit_t0", None)
    if rec is not None and t0 is not None:
        rec["commit"] = rec.get("commit", 0.0) + time.perf_counter() - t0
    _local.commit_t0 = None


# The thread trip of the scan's work.
def _wrap_in_transaction() -> None:
    from api import deps
    from inventory import router

    original = deps.in_transaction

    async def traced(session: Any, work: Any) -> Any:
        rec = _request.get()

        def timed() -> Any:
            t0, (c0, q0) = time.time(), _schedstat()
            try:
                return work()
            finally:
                c1, q1 = _schedstat()
                if rec is not None:
                    rec["cpu"], rec["runq"] = c1 - c0, q1 - q0
                    rec["work_start"] = t0

        t0 = time.time()
        try:
            return await original(session, timed)
        finally:
            if rec is not None:
                rec["thread"] = time.time() - t0

    router.in_transaction = traced


# GC pauses.
def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _local.gc_t0, _local.gc_cpu = time.time(), time.thread_time()
    elif getattr(_local, "gc_t0", None) is not None:
        cpu = time.thread_time() - _local.gc_cpu
        _gcs.append((_local.gc_t0, time.time() - _local.gc_t0, int(info["generation"]), cpu))
        _local.gc_t0 = None


gc.callbacks.append(_on_gc)


def _dump() -> None:
    path = os.environ.get("MASTERLINE_BENCH_TRACE")
    if not path:
        return
    with open(path, "w") as f:
        for rec in _records:
            f.write(json.dumps({"kind": "scan", **rec}) + "\n")
        for holder, start, held in _holds:
            f.write(json.dumps({"kind": "hold", "holder": holder, "t": start, "held": held}) + "\n")
        child = path + ".child"
        if os.path.exists(child):
            with open(child) as c:
                f.write(c.read())
        for start, paused, gen, cpu in _gcs:
            gc_ = {"kind": "gc", "t": start, "paused": paused, "gen": gen, "cpu": cpu}
            f.write(json.dumps(gc_) + "\n")


def _build() -> Any:
    from api.app import create_app
    from bench import scan_trace_child
    from core import child

    child.CHILD_INITIALIZERS.append(scan_trace_child.install)
    if os.environ.get("MASTERLINE_BENCH_NO_FREEZE"):  # the "before" of core.heap
        import api.app

        api.app.freeze_long_lived = scan_trace_child.no_freeze
    _wrap_in_transaction()
    inner = create_app()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            # Written at shutdown (uvicorn re-raises SIGTERM after it: no atexit).
            async def at_shutdown(message: MutableMapping[str, Any]) -> None:
                if message["type"] == "lifespan.shutdown.complete":
                    _dump()
                await send(message)

            await inner(scope, receive, at_shutdown)
            return
        if scope["type"] != "http" or scope.get("path") != "/scan":
            await inner(scope, receive, send)
            return
        rec: dict[str, Any] = {"t": time.time()}
        token = _request.set(rec)
        status = 0

        async def sent(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await inner(scope, receive, sent)
        finally:
            _request.reset(token)
            rec["total"], rec["status"] = time.time() - rec["t"], status
            _records.append(rec)

    return app


app = _build()
