"""Alembic environment: one URL from the caller, every domain's metadata, batch mode on
SQLite (both offline and online, or ALTERs fail there)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from core.registry import load_all_models

config = context.config
target_metadata = load_all_models()
url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")


def run_offline() -> None:
    context.configure(
        url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(str(url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
