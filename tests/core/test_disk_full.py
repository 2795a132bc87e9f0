"""A full disk under the database is reported as such (507 "Database disk is full"), not
as "Database busy", and nothing is half-written.

SQLite: a real SQLITE_FULL, from a small tmpfs the test mounts and fills (or, where
mounting is not permitted, from ``PRAGMA max_page_count``, which SQLite enforces with
the same error code). PostgreSQL: a real server error with SQLSTATE 53100 (the test
cannot fill the cluster's disk without starving its neighbours).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, text
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from api.app import create_app
from core.db import Database, database_error
from core.errors import DatabaseBusy, DatabaseFull
from core.principal import Role
from inventory.models import Device
from tests.conftest import auth
from tests.support.factories import build_world


@contextmanager
def small_filesystem(where: Path, size_kib: int) -> Iterator[bool]:
    """A tmpfs of ``size_kib`` mounted at ``where`` (True), or a plain folder when
    ``size_kib`` is 0 or this process may not mount (False); unmounted when done."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = size_kib > 0 and (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(where)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def _fill(folder: Path) -> Path:
    """Write a file until the filesystem refuses more (ENOSPC)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    block = b"\0" * 65536
    try:
        while True:
            try:
                if os.write(fd, block) < len(block):
                    block = block[: len(block) // 2] or b"\0"
            except OSError:
                if len(block) == 1:
                    break
                block = block[: len(block) // 2]
    finally:
        os.close(fd)
    return filler


def _ship_notice(rows: int) -> bytes:
    lines = ["serial,model,macs"] + [
        f"FULL{i:06d},Latitude 7450,{i:012x}|{i + (1 << 30):012x}" for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def _count(db: Database) -> int:
    with db.session(write=False) as s:
        return int(s.exec(select(func.count()).select_from(Device)).one())


@pytest.mark.slow  # fills a disk, imports thousands of rows
@pytest.mark.parametrize("how", ["tmpfs", "max_page_count"])
def test_sqlite_disk_full_is_507_and_writes_nothing(
    sqlite_template: Path, tmp_path: Path, how: str
) -> None:
    with small_filesystem(tmp_path / "small", 16384 if how == "tmpfs" else 0) as mounted:
        if how == "tmpfs" and not mounted:
            pytest.skip("mounting a tmpfs needs root (the max_page_count case still runs)")
        path = tmp_path / "small" / "masterline.db"
        shutil.copyfile(sqlite_template, path)
        db = Database(f"sqlite:///{path}")
        limit: dict[str, Any] = {"pages": None}
        if not mounted:

            @event.listens_for(db.engine, "connect")
            def _cap(dbapi_conn: Any, _: Any) -> None:
                if limit["pages"]:
                    dbapi_conn.execute(f"PRAGMA max_page_count={limit['pages']}")

        world = build_world(db)
        headers = {**auth(world.token(Role.LOGISTICS, "ACME")), "Content-Type": "text/csv"}
        url = f"/deliveries/{world.acme_delivery.id}/import"
        before = _count(db)
        try:
            with TestClient(create_app(db), raise_server_exceptions=False) as client:
                if mounted:
                    filler = _fill(tmp_path / "small")
                else:
                    with db.engine.connect() as conn:
                        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
                    limit["pages"] = int(pages or 0) + 8
                    db.engine.dispose()  # new connections get the cap
                r = client.post(url, content=_ship_notice(3000), headers=headers)
                assert r.status_code == 507, r.text
                assert r.headers["content-type"].startswith("application/problem+json")
                body = r.json()
                assert body["title"] == "Database disk is full"
                assert "busy" not in body["detail"]
                assert _count(db) == before
                if mounted:
                    filler.unlink()
                else:
                    limit["pages"] = None
                    db.engine.dispose()
                again = client.post(url, content=_ship_notice(3000), headers=headers)
                assert again.status_code == 200, again.text
                assert _count(db) == before + 3000
        finally:
            db.dispose()


def test_postgres_disk_full_sqlstate_is_the_same_answer(request: pytest.FixtureRequest) -> None:
    if "postgres" not in os.environ.get("MASTERLINE_TEST_BACKENDS", "sqlite,postgres"):
        pytest.skip("PostgreSQL not among MASTERLINE_TEST_BACKENDS")
    url: str = request.getfixturevalue("pg_url")
    db = Database(url)
    try:
        with pytest.raises(OperationalError) as raised, db.engine.connect() as conn:
            conn.execute(
                text(
                    "DO $$ BEGIN RAISE EXCEPTION 'could not extend file' "
                    "USING ERRCODE = '53100'; END $$"
                )
            )
        assert isinstance(database_error(raised.value), DatabaseFull)
        with pytest.raises(OperationalError) as busy, db.engine.connect() as conn:
            conn.execute(text("SET lock_timeout = 1"))
            conn.execute(text("DO $$ BEGIN RAISE EXCEPTION 'lock' USING ERRCODE = '55P03'; END $$"))
        assert isinstance(database_error(busy.value), DatabaseBusy)
    finally:
        db.dispose()
