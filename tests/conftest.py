"""Shared fixtures: a real SQLite file and a real PostgreSQL cluster, schema built by the
migrations, and the API on top.

Every test that takes ``db`` runs once per backend (``MASTERLINE_TEST_BACKENDS``,
default ``sqlite,postgres``). SQLite tests get a copy of a migrated template file (with
the ``world`` already in it when the test takes ``world``: building it costs more than
many tests, so each worker builds it once); PostgreSQL tests share one migrated database
per xdist worker, truncated after each test.
"""

from __future__ import annotations

import gc
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from core.db import Database
from core.migrate import upgrade
from core.registry import load_all_models
from tests.support import routecache
from tests.support.factories import World, build_world, reload_world
from tests.support.postgres import PostgresCluster, start_cluster
from wiring import wire

if TYPE_CHECKING:
    from tests.helpdesk.conftest import Desk

wire()  # the hooks every process registers at start (scan-in queues runs...)
routecache.install()  # FastAPI's per-route set-up once per process, not once per app

# The test process holds every module of the product and its libraries, and each test
# makes thousands of short-lived ORM objects: with the default threshold (700) the cyclic
# collector ran ~1,500 times in 50 tests and took a tenth of their CPU. Collected less
# often, it took 0.5 s instead of 2.5 s (docs/development.md). Test processes only: the
# product keeps Python's defaults.
gc.set_threshold(50_000, 20, 100)

_WANTED = os.environ.get("MASTERLINE_TEST_BACKENDS", "sqlite,postgres")
BACKENDS = [b.strip() for b in _WANTED.split(",") if b.strip()]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_url(pg_cluster: PostgresCluster) -> str:
    url = pg_cluster.create_database("masterline_test")
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def sqlite_world_template(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, World]:
    """The migrated template with the ``world`` in it, and that world."""
    path = tmp_path_factory.mktemp("sqlite-world") / "world.db"
    shutil.copyfile(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    world = build_world(database)
    database.dispose()  # the last connection closed: SQLite folds the WAL into the file
    assert not Path(f"{path}-wal").exists(), "the world template is not in one file"
    return path, world


# Set on a test whose SQLite file was copied from the world template.
_SEEDED = pytest.StashKey[World]()
# Set on a test whose SQLite file was copied from a desk template (``DESK_SEEDED``).
DESK_SEEDED = pytest.StashKey["Desk"]()


@pytest.fixture(scope="session")
def sqlite_desk_templates(
    sqlite_world_template: tuple[Path, World], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], tuple[Path, World, Desk]]]:
    """The world template with the help desk's ``desk`` in it (tests/helpdesk/conftest.py),
    one per secret key: the desk's secrets and personal data are sealed with keys derived
    from ``MASTERLINE_SECRET_KEY``, which each test module sets (an autouse fixture, set
    before this is asked for)."""
    from tests.helpdesk.conftest import build_desk

    made: dict[tuple[str | None, str | None], tuple[Path, World, Desk]] = {}

    def template() -> tuple[Path, World, Desk]:
        key = (
            os.environ.get("MASTERLINE_SECRET_KEY"),
            os.environ.get("MASTERLINE_HELP_PUBLIC_URL"),
        )
        if key not in made:
            world_path, world = sqlite_world_template
            path = tmp_path_factory.mktemp("sqlite-desk") / "desk.db"
            shutil.copyfile(world_path, path)
            database = Database(f"sqlite:///{path}")
            desk = build_desk(database, reload_world(database, world))
            database.dispose()
            assert not Path(f"{path}-wal").exists(), "the desk template is not in one file"
            made[key] = (path, world, desk)
        return made[key]

    yield template


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        if "desk" in request.fixturenames:  # a desk is built on a world
            desk_template = request.getfixturevalue("sqlite_desk_templates")
            template, request.node.stash[_SEEDED], request.node.stash[DESK_SEEDED] = desk_template()
        elif "world" in request.fixturenames:
            template, request.node.stash[_SEEDED] = request.getfixturevalue("sqlite_world_template")
        path = tmp_path / "masterline.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    url: str = request.getfixturevalue("pg_url")
    yield url
    _truncate_all(url)


def _truncate_all(url: str) -> None:
    names = ", ".join(f'"{t.name}"' for t in load_all_models().sorted_tables)
    cleaner = Database(url)
    with cleaner.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    cleaner.dispose()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def world(db: Database, request: pytest.FixtureRequest) -> World:
    seeded = request.node.stash.get(_SEEDED, None)
    return reload_world(db, seeded) if seeded is not None else build_world(db)


def seeded_desk(db: Database, world: World, request: pytest.FixtureRequest) -> Desk:
    """The ``desk`` of a test: copied with its SQLite file from a template, or built."""
    from tests.helpdesk.conftest import build_desk

    seeded = request.node.stash.get(DESK_SEEDED, None)
    return seeded if seeded is not None else build_desk(db, world)


@pytest.fixture
def app_client(db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(db), raise_server_exceptions=False) as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Fixtures that start real processes (lab laptops: sshd, the lab daemon, WinRM endpoints;
# ansible-runner against them): a test that takes one, even through another fixture, is
# marked ``lab`` and left out of ``make test-fast``.
LAB_FIXTURES = frozenset({"lab"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)
