"""Fixtures shared by every test.

Data-layer and API tests take the `backend` fixture (directly or through `engine`, `uow`,
`client`, ...) and so run twice: on a SQLite file and on a real PostgreSQL server
(`TEST_POSTGRES_URL`, default `postgresql+asyncpg://postgres@127.0.0.1:5432/test`). The
schema is built by the migrations (`upgrade head`), once per backend, in a database created
for this run. Each test runs inside an outer transaction that is rolled back at the end.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agora.app import create_app
from agora.config import Settings
from agora.db.engine import make_engine
from agora.db.session import Database
from agora.db.testing import isolated_connection, rollback_session_factory
from agora.db.uow import UnitOfWork
from tests.support import pgcluster
from tests.support.databases import BACKENDS, TestDatabases

pytest_plugins = ["agora.db.pytest_plugin"]


@pytest.fixture(scope="session")
async def databases(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TestDatabases]:
    dbs = TestDatabases(tmp_path_factory.mktemp("databases"))
    try:
        yield dbs
    finally:
        await dbs.drop_all()


@pytest.fixture(scope="session", params=BACKENDS)
async def backend(request: pytest.FixtureRequest, databases: TestDatabases) -> str:
    """Name of the backend under test; the migrated database for it exists on return."""
    name: str = request.param
    await databases.migrated_url(name)
    return name


@pytest.fixture(scope="session")
async def database_url(backend: str, databases: TestDatabases) -> str:
    return await databases.migrated_url(backend)


@pytest.fixture(scope="session")
async def pg_database_url(databases: TestDatabases) -> str:
    """The migrated PostgreSQL database, for tests of PostgreSQL-only behaviour."""
    return await databases.migrated_url("postgresql")


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url, pool_size=5, max_overflow=5)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside an outer transaction that is rolled back after the test."""
    async with isolated_connection(engine) as conn:
        yield conn


@pytest.fixture
def database(engine: AsyncEngine, connection: AsyncConnection) -> Database:
    """A `Database` whose sessions (read and write) all join the test's outer transaction."""
    factory = rollback_session_factory(connection)
    return Database(engine, sessionmaker=factory, read_sessionmaker=factory)


@pytest.fixture
async def uow(database: Database) -> AsyncIterator[UnitOfWork]:
    async with database.uow() as unit:
        yield unit


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, env="test")


@pytest.fixture
async def client(settings: Settings, database: Database) -> AsyncIterator[AsyncClient]:
    app = create_app(settings, database=database)
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture
def subprocess_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running `agora` in a subprocess: no stray AGORA_* from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env["AGORA_ENV"] = "test"
    return env


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    """A directory for throwaway PostgreSQL clusters (tests/support/pgcluster.py); skipped,
    or failed under AGORA_REQUIRE_POSTGRES, where this machine cannot run a server of its own."""
    pgcluster.require()
    with pgcluster.workdir() as path:
        yield path
