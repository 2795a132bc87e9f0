"""The tests' shared route preparation (tests/support/routecache.py) keeps apps apart:
each app still answers from its own database, and an app with a dependency override
gets routes prepared for it, not another app's."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from api.app import create_app
from api.deps import get_session
from core.db import Database
from core.principal import Role
from tests.conftest import auth
from tests.support.factories import World


@pytest.fixture
def other_db(sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    """A second, empty migrated database: no token of the world is in it."""
    path = tmp_path / "other.db"
    shutil.copyfile(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


def test_two_apps_share_prepared_routes_but_not_their_databases(
    db: Database, world: World, other_db: Database
) -> None:
    admin = auth(world.token(Role.ADMIN))
    with (
        TestClient(create_app(db), raise_server_exceptions=False) as mine,
        TestClient(create_app(other_db), raise_server_exceptions=False) as other,
    ):
        assert mine.get("/me", headers=admin).status_code == 200
        assert other.get("/me", headers=admin).status_code == 401
        assert mine.get("/me", headers=admin).json()["role"] == "admin"


def test_an_app_with_an_override_gets_its_own_routes(
    db: Database, world: World, other_db: Database
) -> None:
    admin = auth(world.token(Role.ADMIN))
    with TestClient(create_app(db), raise_server_exceptions=False) as plain:
        listed = plain.get("/tokens", headers=admin).json()  # prepares /tokens for this app
    assert listed, "the world has tokens"

    def other_session() -> Iterator[Session]:
        with Session(other_db.engine) as session:
            yield session

    app = create_app(db)
    app.dependency_overrides[get_session] = other_session
    with TestClient(app, raise_server_exceptions=False) as overridden:
        # The caller is checked against the app's own database, the listing read through
        # the override: the other database has no token.
        assert overridden.get("/tokens", headers=admin).json() == []
