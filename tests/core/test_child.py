"""``core.child``: work run in a child process on the parent's database, both backends.

The functions the child runs are module-level here: a spawned child imports this
module by name."""

from __future__ import annotations

import os
import threading

import pytest
from sqlmodel import col, func, select

from core.child import ChildFailed, run_with_database
from core.db import Database, FairLock
from core.errors import FileRejected
from inventory import lifecycle
from inventory.hooks import ON_RECEIVED
from inventory.models import Device
from inventory.states import Event
from tests.support.factories import World

pytestmark = pytest.mark.slow  # spawns interpreters


def add_devices(db: Database, client_id: int, serials: list[str]) -> int:
    """One write transaction per laptop; returns how many this child wrote."""
    for serial in serials:
        with db.session() as s:
            lifecycle.create(
                s,
                [Device(serial=serial, vendor="Dell", client_id=client_id, mac_addresses=[])],
                Event.EXPECT,
                actor="child",
            )
    return len(serials)


def reject(_db: Database) -> None:
    raise FileRejected([{"line": 7, "column": "serial", "message": "not a serial"}])


def blow_up(_db: Database) -> None:
    raise KeyError("a bug")


def vanish(_db: Database) -> None:
    os._exit(3)


def hooks_wired(_db: Database) -> int:
    return len(ON_RECEIVED)


class CountingLock:
    """The parent's write lock, counting how often it was taken."""

    def __init__(self) -> None:
        self.inner = FairLock()
        self.taken = 0
        self._mutex = threading.Lock()

    def acquire(self, timeout: float) -> bool:
        ok = self.inner.acquire(timeout)
        if ok:
            with self._mutex:
                self.taken += 1
        return ok

    def release(self) -> None:
        self.inner.release()


def test_the_child_writes_through_the_parents_write_lock(database_url: str, world: World) -> None:
    lock = CountingLock()
    db = Database(database_url, write_lock=lock)
    try:
        client_id = world.acme.id
        serials = [f"CHILD{i}" for i in range(3)]
        assert run_with_database(db, add_devices, client_id, serials) == 3
        with db.session(write=False) as s:
            n = s.exec(
                select(func.count()).select_from(Device).where(col(Device.serial).like("CHILD%"))
            ).one()
        assert n == 3
        if db.is_sqlite:  # each of the child's transactions took the parent's lock
            assert lock.taken == 3
            assert lock.inner.acquire(timeout=0)  # and gave it back
            lock.inner.release()
    finally:
        db.dispose()


def test_errors_come_back_as_themselves_or_as_one_line(db: Database) -> None:
    with pytest.raises(FileRejected) as rejected:
        run_with_database(db, reject)
    assert rejected.value.status_code == 422
    assert rejected.value.extra["errors"][0]["line"] == 7
    with pytest.raises(ChildFailed) as bug:
        run_with_database(db, blow_up)
    assert bug.value.status_code == 503 and "KeyError" in bug.value.message
    with pytest.raises(ChildFailed) as died:
        run_with_database(db, vanish)
    assert "died" in died.value.message and "3" in died.value.message


def test_the_child_is_wired_like_its_parent(db: Database) -> None:
    from wiring import wire

    wire()
    assert run_with_database(db, hooks_wired) == len(ON_RECEIVED) > 0
