"""SQLite tuning as the research measured it: WAL, foreign keys, a busy timeout, and
``BEGIN IMMEDIATE`` for write sessions (plain ``BEGIN`` for reads), observed from a
second, independent connection."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from core.db import Database, FairLock
from inventory.models import Bench, Site


@pytest.fixture
def sqlite_db(sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    path = tmp_path / "tuned.db"
    path.write_bytes(sqlite_template.read_bytes())
    database = Database(f"sqlite:///{path}", busy_timeout_ms=4321)
    yield database
    database.dispose()


def _other_connection(db: Database) -> sqlite3.Connection:
    path = db.engine.url.database
    assert path
    # No busy timeout: a lock held by the session shows at once as "database is locked".
    return sqlite3.connect(path, timeout=0, isolation_level=None)


def _can_take_write_lock(db: Database) -> bool:
    other = _other_connection(db)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as e:
        assert "locked" in str(e)
        return False
    finally:
        other.close()


def test_pragmas_are_in_force_on_every_connection(sqlite_db: Database) -> None:
    with sqlite_db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 4321


def test_foreign_keys_are_enforced(sqlite_db: Database) -> None:
    with pytest.raises(IntegrityError), sqlite_db.session() as session:
        session.add(Bench(site_id=424242, code="B9", slots=4))
        session.flush()


def test_write_session_holds_the_write_lock_from_its_first_statement(
    sqlite_db: Database,
) -> None:
    with sqlite_db.session(write=True) as session:
        # A read is enough: BEGIN IMMEDIATE takes the reserved lock at BEGIN, so two
        # writers queue instead of both reading and then failing to upgrade.
        session.execute(text("SELECT count(*) FROM site")).one()
        assert not _can_take_write_lock(sqlite_db)
    assert _can_take_write_lock(sqlite_db)


def test_read_session_does_not_block_writers(sqlite_db: Database) -> None:
    with sqlite_db.session(write=False) as session:
        session.execute(text("SELECT count(*) FROM site")).one()
        assert _can_take_write_lock(sqlite_db)


def test_read_session_sees_a_stable_snapshot_while_a_writer_commits(
    sqlite_db: Database,
) -> None:
    with sqlite_db.session(write=False) as reader:
        before = reader.execute(text("SELECT count(*) FROM site")).one()
        with sqlite_db.session() as writer:
            writer.add(Site(code="LYS", name="Lyon"))
        after = reader.execute(text("SELECT count(*) FROM site")).one()
        assert after == before
    with sqlite_db.session(write=False) as fresh:
        assert fresh.execute(text("SELECT count(*) FROM site")).one()[0] == before[0] + 1


def test_session_commits_on_success_and_rolls_back_on_error(sqlite_db: Database) -> None:
    with sqlite_db.session() as session:
        session.add(Site(code="OK1", name="kept"))
    with pytest.raises(RuntimeError), sqlite_db.session() as session:
        session.add(Site(code="NO1", name="dropped"))
        session.flush()
        raise RuntimeError("boom")
    with sqlite_db.session(write=False) as session:
        codes = {s.code for s in session.execute(text("SELECT code FROM site")).all()}
    assert "OK1" in codes
    assert "NO1" not in codes


# The fair write lock: served in arrival order; its waiters give up only when it stops
# moving.
class _Clock:
    """A clock the test moves: how long the lock went without changing hands is then
    what the test says, whatever the machine's load."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _queued(lock: FairLock, n: int) -> None:
    # (the lock's own queue: the only way to know a thread is waiting, not about to)
    for _ in range(6000):
        if len(lock._waiters) == n:
            return
        time.sleep(0.01)
    raise AssertionError(f"{n} waiters never queued")


def test_a_moving_queue_is_served_however_long_the_wait() -> None:
    """200 scans at once on a loaded machine queued for more than the busy timeout, each
    holder quick: they got 503 (tests/inventory/test_slots.py). A waiter whose queue
    moves is served, here after three timeouts' worth of waiting."""
    clock = _Clock()
    lock = FairLock(clock=clock)
    assert lock.acquire(timeout=10)
    order: list[str] = []
    got: dict[str, bool] = {}
    holding = threading.Event()

    def wait(name: str) -> None:
        got[name] = lock.acquire(timeout=10)
        order.append(name)  # holding the lock: one at a time
        holding.set()

    threads = []
    for i, name in enumerate(("b", "c", "d")):
        t = threading.Thread(target=wait, args=(name,))
        t.start()
        threads.append(t)
        _queued(lock, i + 1)
    for _ in range(3):  # each holder holds 9 s: less than the timeout, never stuck
        clock.now += 9
        holding.clear()
        lock.release()
        assert holding.wait(timeout=60), "the next waiter was not served"
    for t in threads:
        t.join(timeout=60)
    assert got == {"b": True, "c": True, "d": True}
    assert order == ["b", "c", "d"]  # arrival order
    assert clock.now == 27  # "d" waited 27 s for a 10 s timeout
    lock.release()
    assert lock.acquire(timeout=0)


def test_a_lock_that_does_not_move_fails_its_waiters_and_forgets_them() -> None:
    lock = FairLock()
    assert lock.acquire(timeout=0.2)
    assert lock.acquire(timeout=0.2) is False  # the holder is stuck: busy
    lock.release()
    assert lock.acquire(timeout=0)  # the waiter that gave up is not in the way
    lock.release()


def test_a_busy_database_answers_503_with_retry_after(sqlite_db: Database) -> None:
    """What a bench scanner sees when a transaction holds the write lock too long: one
    problem, and when to try again."""
    from fastapi.testclient import TestClient

    from api import service as tokens
    from api.app import create_app
    from core.principal import Role

    busy = Database(str(sqlite_db.engine.url), busy_timeout_ms=300)
    try:
        with busy.session() as s:
            _, token = tokens.create_token(s, name="bench", role=Role.TECHNICIAN)
        client = TestClient(create_app(busy))
        assert busy.write_lock.acquire(timeout=1)  # a stuck writer
        try:
            r = client.post(
                "/scan",
                json={"code": "ABC123456", "bench_id": 1},
                headers={"Authorization": f"Bearer {token}"},
            )
        finally:
            busy.write_lock.release()
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "1"
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["title"] == "Database busy"
    finally:
        busy.dispose()
