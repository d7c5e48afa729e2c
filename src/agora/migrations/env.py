"""Alembic environment (async). Shipped inside the package so an installed `agora` migrates.

The URL comes from, in order: a connection handed over in `config.attributes["connection"]`
(tests), the `sqlalchemy.url` option (set by `agora db ...`), then `AGORA_DATABASE_URL`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

import agora.models  # noqa: F401 - registers every model on Base.metadata
from agora.db.base import Base
from agora.db.engine import make_engine, normalize_url
from agora.models.forum import (
    MIGRATION_ONLY_COLUMNS,
    MIGRATION_ONLY_TABLE_PREFIX,
)
from agora.models.forum import MIGRATION_ONLY_INDEXES as FORUM_MIGRATION_ONLY_INDEXES
from agora.models.market import MIGRATION_ONLY_INDEXES as MARKET_MIGRATION_ONLY_INDEXES

MIGRATION_ONLY_INDEXES = FORUM_MIGRATION_ONLY_INDEXES | MARKET_MIGRATION_ONLY_INDEXES

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from agora.config import load_settings

        url = load_settings().database_url
    return normalize_url(url).render_as_string(hide_password=False)


# Some schema exists on one database only and is made by the migrations, not by the models
# (see agora.models.forum and agora.models.market): the PostgreSQL `post.search_vector`
# column and its GIN index, the trigram index on product names, and the SQLite FTS5 table
# `post_fts` with its shadow tables. Autogenerate would
# report them as "to be removed"; these hooks skip them, and only them, when they are found
# in the database without a model counterpart. Tables are skipped by name before reflection
# (SQLAlchemy cannot reflect FTS5 virtual tables); columns and indexes once reflected.
def _include_name(name: str | None, type_: str, _parents: Any) -> bool:
    return not (type_ == "table" and name and name.startswith(MIGRATION_ONLY_TABLE_PREFIX))


def _include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    if not reflected or compare_to is not None:
        return True
    if type_ == "column":
        return (obj.table.name, name) not in MIGRATION_ONLY_COLUMNS
    if type_ == "index":
        return name not in MIGRATION_ONLY_INDEXES
    return True


def _configure(connection: Connection | None = None, **kwargs: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things: copy-and-move tables
        compare_type=True,
        compare_server_default=False,
        include_name=_include_name,
        include_object=_include_object,
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = make_engine(_url(), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_sync(connection)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
