"""Long CPU work on the database in a child process, so that the API's requests keep
their interpreter.

A 100,000-line ship notice is seconds of pure Python (parsing, planning, building
batches). Run in the API process, it shares the interpreter lock with every scan: a
scan hands the lock back at each database call and waits up to a switch interval to
get it again, a few hundred times per request, and its p99 went from 22 ms to 290 ms
(docs/benchmarks.md). In a child process it competes for a core, not for the lock.

The child gets a ``Database`` on the same URL. On SQLite its writers still queue on
the parent's ``FairLock``, reached through a pipe (``_RemoteLock``): SQLite's own
busy handler between processes polls with sleeps growing to 100 ms and is not fair, so
a scan could wait for many of the child's batches instead of one.

The child is set up like the parent (``CHILD_INITIALIZERS``, filled by the composition
root: the same hooks wired), dies with the parent (``PR_SET_PDEATHSIG``: an API killed
mid-import leaves what a killed in-process import leaves, which the import's own crash
recovery handles), and its expected errors (``MasterlineError``) come back as
themselves; anything else is logged by the child and raised here as a plain error.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError

from core.db import Database, FairLock, WriteLock, database_error
from core.errors import MasterlineError, Unavailable
from core.heap import freeze_long_lived, no_automatic_full_collections

log = logging.getLogger("masterline.child")

T = TypeVar("T")

CHILD_INITIALIZERS: list[Callable[[], None]] = []
"""Called first in every child, in order (``wiring.wire`` registers itself): module-level
functions, passed by reference."""

_IN_CHILD = False

_PR_SET_PDEATHSIG = 1
_JOIN_SECONDS = 30.0


class ChildFailed(Unavailable):
    """The child ended with an unexpected error (logged by the child) or died: 503, as
    when the database is unreachable; what the work does after a crash (an import's
    staged rows, say) is the work's own recovery."""


def run_with_database(db: Database, fn: Callable[..., T], *args: Any) -> T:
    """``fn(child_db, *args)`` in a child process, its result returned here.

    ``fn`` must be a module-level function and ``args`` picklable. Blocks the calling
    thread (call it from a worker thread in the API) until the child answers.

    :raises MasterlineError: what ``fn`` raised (database errors as ``database_error``
        says).
    :raises ChildFailed: anything else, or the child died without answering.
    """
    ctx = multiprocessing.get_context("spawn")
    answers, answer_end = ctx.Pipe(duplex=False)
    lock_end: Connection | None = None
    child_lock_end: Connection | None = None
    if db.is_sqlite:
        lock_end, child_lock_end = ctx.Pipe()
    child = ctx.Process(
        target=_child_main,
        args=(
            list(CHILD_INITIALIZERS),
            db.url,
            db.busy_timeout_ms,
            child_lock_end,
            answer_end,
            fn,
            args,
        ),
        name=f"masterline-{getattr(fn, '__name__', 'child')}",
        daemon=True,
    )
    child.start()
    # Our copies of the child's ends: closed, so that its death reads as EOF here.
    answer_end.close()
    server: threading.Thread | None = None
    if lock_end is not None and child_lock_end is not None:
        child_lock_end.close()
        server = threading.Thread(
            target=_serve_lock,
            args=(db.write_lock, lock_end, db.busy_timeout_ms / 1000),
            name="masterline-child-lock",
            daemon=True,
        )
        server.start()
    try:
        try:
            kind, value = answers.recv()
        except EOFError:
            child.join(_JOIN_SECONDS)
            raise ChildFailed(f"the child process died (exit code {child.exitcode})") from None
    finally:
        answers.close()
        child.join(_JOIN_SECONDS)
        if child.is_alive():
            child.kill()
            child.join(_JOIN_SECONDS)
        if server is not None:
            server.join(_JOIN_SECONDS)  # ends at the child's EOF
        if lock_end is not None:
            lock_end.close()
    if kind == "ok":
        return value
    if kind == "error":
        raise value
    raise ChildFailed(str(value))


def keep_to_the_end() -> None:
    """In a child process (``run_with_database``): what is alive now stays alive until
    the child exits (an import's 100,000 planned rows, say), so later collections need
    not walk it (``core.heap``). Elsewhere, nothing: a long-lived process must not keep
    a request's data out of the collector."""
    if _IN_CHILD:
        freeze_long_lived(again=True)


def _serve_lock(lock: WriteLock, conn: Connection, timeout: float) -> None:
    """The parent's write lock, lent to the child one transaction at a time, until the
    child's end of the pipe closes (a lock the child held when it died is released)."""
    held = False
    try:
        while True:
            request = conn.recv()
            if request == "acquire":
                held = lock.acquire(timeout)
                conn.send(held)
            elif request == "release" and held:
                held = False
                lock.release()
    except (EOFError, OSError):
        pass
    finally:
        if held:
            lock.release()


class _RemoteLock:
    """The child's side of ``_serve_lock``. One thread uses it (the child runs one
    function), so a request and its answer never interleave with another's."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def acquire(self, timeout: float) -> bool:
        self._conn.send("acquire")
        return bool(self._conn.recv())

    def release(self) -> None:
        self._conn.send("release")


def _die_with_parent() -> None:
    """SIGKILL when the parent dies: a killed API must not leave an import running that
    its successor's crash recovery would race."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the child runs to its end
        return
    if os.getppid() == 1:  # the parent died before the line above
        os._exit(1)


def _child_main(
    initializers: list[Callable[[], None]],
    url: str,
    busy_timeout_ms: int,
    lock_conn: Connection | None,
    answers: Connection,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
) -> None:
    _die_with_parent()
    for init in initializers:
        init()
    # Its SQLite transactions hold the API's write lock: a full collection walking
    # every module's objects meanwhile made every scan wait (core.heap).
    freeze_long_lived()
    # And no full collection while it plans and publishes: each walked the rows built
    # so far, CPU taken from the scans (core.heap). It lives as long as its one job.
    no_automatic_full_collections()
    global _IN_CHILD
    _IN_CHILD = True
    lock: WriteLock = _RemoteLock(lock_conn) if lock_conn is not None else FairLock()
    db = Database(url, busy_timeout_ms=busy_timeout_ms, write_lock=lock)
    try:
        answer: tuple[str, Any] = ("ok", fn(db, *args))
    except MasterlineError as e:
        answer = ("error", e)
    except OperationalError as e:
        answer = ("error", database_error(e))
    except Exception as e:  # logged here, where the traceback is
        log.exception("child process %s failed", getattr(fn, "__name__", fn))
        answer = ("crash", f"{type(e).__name__} in the child process (see its log)")
    finally:
        db.dispose()
    answers.send(answer)
    answers.close()
