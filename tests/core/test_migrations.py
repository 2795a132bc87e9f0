"""The migrations build exactly the schema the models describe, on both databases, and
can be walked down to nothing and up again."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, pool

from core.migrate import downgrade, upgrade
from core.registry import load_all_models
from tests.conftest import BACKENDS
from tests.support.postgres import PostgresCluster


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A brand-new, empty database (not the migrated template the other tests share)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    yield cluster.create_database(f"masterline_migrations_{worker}")


def _schema_diff(url: str) -> list[Any]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, load_all_models()))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgraded_schema_equals_the_models(empty_url: str) -> None:
    upgrade(empty_url)
    diff = _schema_diff(empty_url)
    assert diff == [], "migrations and models differ:\n" + "\n".join(map(repr, diff))


@pytest.mark.slow  # every migration down and up
def test_downgrade_to_base_then_upgrade_again(empty_url: str) -> None:
    upgrade(empty_url)
    model_tables = {t.name for t in load_all_models().sorted_tables}
    assert model_tables <= _tables(empty_url)
    downgrade(empty_url, "base")
    assert _tables(empty_url) <= {"alembic_version"}
    upgrade(empty_url)
    assert model_tables <= _tables(empty_url)
    assert _schema_diff(empty_url) == []
