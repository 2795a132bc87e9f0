"""Engines and sessions for SQLite (embedded default) and PostgreSQL (scale-out).

SQLite is tuned as measured when this was written: WAL, a busy
timeout, foreign keys on, and ``BEGIN IMMEDIATE`` for write transactions, because
Python's default deferred BEGIN either loses updates or fails at once with "database is
locked" under concurrent writers. Read-only sessions use a plain ``BEGIN`` so that reads
never queue behind writers.

Services never commit: ``Database.session()`` is the boundary that does.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from core.errors import DatabaseBusy, DatabaseFull, MasterlineError
from core.files import secure_local_state, secure_sqlite_file, sqlite_path

READ_ONLY_OPTION = "masterline_read_only"
_HOLDS_WRITE_LOCK = "masterline_holds_write_lock"


class FairLock:
    """A lock handed to its waiters in arrival order, whose waiters give up only when
    it stops moving.

    ``threading.Lock`` is not fair: a thread that releases it and asks again at once
    (a large import publishing chunk after chunk) usually gets it back before a waiter
    wakes up, and scans would wait for the whole import. Here ``release`` hands the
    lock to the oldest waiter directly.

    ``timeout`` bounds how long the lock may go *without changing hands*, not a
    waiter's place in the queue. A holder stuck that long (a transaction waiting on
    something it should not, say) makes the waiters fail, as a busy database should.
    But a queue that moves is served: 200 scans at once on a machine busy with other
    work queued behind one another for more than the busy timeout, each holder quick,
    and a fixed deadline turned that load into 503s that only added retries to it
    (``tests/inventory/test_slots.py``). The queue is bounded by the request threads.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._mutex = threading.Lock()
        self._waiters: collections.deque[threading.Event] = collections.deque()
        self._held = False
        self._moved = clock()  # when it last changed hands

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if not self._held and not self._waiters:
                self._held = True
                self._moved = self._clock()
                return True
            turn = threading.Event()
            self._waiters.append(turn)
        while True:
            with self._mutex:
                if turn.is_set():  # (also: handed over just as a wait timed out)
                    return True
                still = self._clock() - self._moved
                if still >= timeout:
                    self._waiters.remove(turn)
                    return False
            if turn.wait(timeout - still):
                return True

    def release(self) -> None:
        with self._mutex:
            self._moved = self._clock()
            if self._waiters:
                self._waiters.popleft().set()  # still held: now by that waiter
            else:
                self._held = False


class WriteLock(Protocol):
    """What a SQLite engine's writers queue on: ``FairLock``, or in a child process
    (``inventory.intake_process``), the parent's ``FairLock`` reached through a pipe."""

    def acquire(self, timeout: float) -> bool: ...

    def release(self) -> None: ...


def _tune_sqlite(engine: Engine, *, busy_timeout_ms: int, write_lock: WriteLock) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below); pysqlite's implicit BEGIN would be deferred.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    # Writers of this process queue on a lock that hands over the moment the previous
    # writer's connection is returned to the pool. SQLite's own busy handler polls with
    # sleeps growing to 100 ms, so 50 concurrent scans waiting on BEGIN IMMEDIATE turned
    # a 13 ms scan into a p99 above a second (bench/core.py). The busy timeout still
    # arbitrates between processes (an API and a worker on one file).
    # (Fair: handed over in arrival order, see FairLock.)
    timeout_s = busy_timeout_ms / 1000

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY_OPTION):
            conn.exec_driver_sql("BEGIN")
            return
        info = conn.connection.info
        if not info.get(_HOLDS_WRITE_LOCK):
            if not write_lock.acquire(timeout=timeout_s):
                raise OperationalError(
                    "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
                )
            info[_HOLDS_WRITE_LOCK] = True
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine.pool, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        # After COMMIT or ROLLBACK has completed (or the connection was invalidated).
        if record is not None and record.info.pop(_HOLDS_WRITE_LOCK, False):
            write_lock.release()


class Database:
    """One database: an engine plus the session boundary used by API, CLI and jobs."""

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_ms: int = 10_000,
        echo: bool = False,
        write_lock: WriteLock | None = None,
    ) -> None:
        self.url = url
        self.busy_timeout_ms = busy_timeout_ms
        # SQLite's writers of this process queue on it (see _tune_sqlite); a child
        # process that writes to the same file is given the parent's, through a pipe.
        self.write_lock: WriteLock = write_lock or FairLock()
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            db_file = sqlite_path(url)
            if db_file is not None:
                # Created 0600 before SQLite opens it: its WAL and SHM take its mode.
                secure_sqlite_file(db_file)
            engine = create_engine(
                url,
                echo=echo,
                connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
                pool_size=20,
                max_overflow=40,
            )
            _tune_sqlite(engine, busy_timeout_ms=busy_timeout_ms, write_lock=self.write_lock)
        else:
            engine = create_engine(
                url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=40
            )
        self.engine: Engine = engine
        self._read_engine: Engine = engine.execution_options(**{READ_ONLY_OPTION: True})

    def new_session(self, *, write: bool = True) -> Session:
        """A session the caller commits and closes (the API's request boundary)."""
        return Session(self.engine if write else self._read_engine, expire_on_commit=False)

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """A unit of work: commits when the block ends normally, rolls back otherwise."""
        with self.new_session(write=write) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


# PostgreSQL's disk_full condition (class 53, insufficient resources).
_PG_DISK_FULL = "53100"


def is_disk_full(exc: BaseException) -> bool:
    """Whether a database error says the disk under the database is full: SQLite's
    ``SQLITE_FULL`` (also what ``PRAGMA max_page_count`` gives) or PostgreSQL's
    SQLSTATE 53100."""
    orig = getattr(exc, "orig", exc)
    if isinstance(orig, sqlite3.Error):
        return getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return getattr(orig, "sqlstate", None) == _PG_DISK_FULL


def database_error(exc: OperationalError) -> MasterlineError:
    """What to tell a user about a failed database call: the disk is full (507), or
    busy / unreachable (503), never a traceback."""
    if is_disk_full(exc):
        return DatabaseFull(
            "the disk under the database is full; nothing was written. Free space on it, then retry"
        )
    return DatabaseBusy("database busy or unreachable; retry")


_default: Database | None = None


def get_database() -> Database:
    """The process-wide database built from settings (server-side commands only)."""
    global _default
    if _default is None:
        from core.settings import get_settings

        settings = get_settings()
        # Every server-side process starts here: local state private, fixed if wider.
        secure_local_state(settings)
        _default = Database(
            settings.resolved_database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms
        )
    return _default
