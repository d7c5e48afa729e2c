"""Fixtures for the data-layer tests: a database per backend holding the toolkit's models."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agora.db.engine import make_engine
from agora.db.errors import register_metadata
from agora.db.session import Database
from agora.db.testing import isolated_connection, rollback_session_factory
from agora.db.uow import UnitOfWork
from tests.db.models import ToolkitBase
from tests.support.databases import TestDatabases

register_metadata(ToolkitBase.metadata)


@pytest.fixture(scope="session")
async def toolkit_engine(backend: str, databases: TestDatabases) -> AsyncIterator[AsyncEngine]:
    """Engine on a database (of the current backend) with the toolkit models' tables."""
    url = await databases.fresh_url(backend)
    engine = make_engine(url, pool_size=10, max_overflow=60, pool_timeout=30)
    async with engine.begin() as conn:
        await conn.run_sync(ToolkitBase.metadata.create_all)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def tk_connection(toolkit_engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside an outer transaction that is rolled back after the test."""
    async with isolated_connection(toolkit_engine) as conn:
        yield conn


@pytest.fixture
def tk_database(toolkit_engine: AsyncEngine, tk_connection: AsyncConnection) -> Database:
    """Sessions that join the test's outer transaction: nothing outlives the test."""
    factory = rollback_session_factory(tk_connection)
    return Database(toolkit_engine, sessionmaker=factory, read_sessionmaker=factory)


@pytest.fixture
async def tk_uow(tk_database: Database) -> AsyncIterator[UnitOfWork]:
    async with tk_database.uow() as unit:
        yield unit


@pytest.fixture
async def committed_database(toolkit_engine: AsyncEngine) -> AsyncIterator[Database]:
    """A real `Database` (separate connections, real commits) for concurrency tests.

    Every toolkit table is emptied afterwards.
    """
    yield Database(toolkit_engine)
    async with toolkit_engine.begin() as conn:
        for table in reversed(ToolkitBase.metadata.sorted_tables):
            await conn.execute(delete(table))
