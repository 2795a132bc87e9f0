"""SQLite tuning as the research measured it: WAL, foreign keys, a busy timeout, and
``BEGIN IMMEDIATE`` for write sessions (plain ``BEGIN`` for reads), observed from a
second, independent connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from core.db import Database
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
        session.exec(text("SELECT count(*) FROM site")).one()
        assert not _can_take_write_lock(sqlite_db)
    assert _can_take_write_lock(sqlite_db)


def test_read_session_does_not_block_writers(sqlite_db: Database) -> None:
    with sqlite_db.session(write=False) as session:
        session.exec(text("SELECT count(*) FROM site")).one()
        assert _can_take_write_lock(sqlite_db)


def test_read_session_sees_a_stable_snapshot_while_a_writer_commits(
    sqlite_db: Database,
) -> None:
    with sqlite_db.session(write=False) as reader:
        before = reader.exec(text("SELECT count(*) FROM site")).one()
        with sqlite_db.session() as writer:
            writer.add(Site(code="LYS", name="Lyon"))
        after = reader.exec(text("SELECT count(*) FROM site")).one()
        assert after == before
    with sqlite_db.session(write=False) as fresh:
        assert fresh.exec(text("SELECT count(*) FROM site")).one()[0] == before[0] + 1


def test_session_commits_on_success_and_rolls_back_on_error(sqlite_db: Database) -> None:
    with sqlite_db.session() as session:
        session.add(Site(code="OK1", name="kept"))
    with pytest.raises(RuntimeError), sqlite_db.session() as session:
        session.add(Site(code="NO1", name="dropped"))
        session.flush()
        raise RuntimeError("boom")
    with sqlite_db.session(write=False) as session:
        codes = {s.code for s in session.exec(text("SELECT code FROM site")).all()}
    assert "OK1" in codes
    assert "NO1" not in codes
