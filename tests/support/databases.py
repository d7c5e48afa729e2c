"""Creating, migrating and dropping the databases a test run uses."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from agora.db.engine import make_engine
from agora.db.session import Database
from agora.migrate import alembic_config

BACKENDS = ("sqlite", "postgresql")
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def postgres_server_url() -> URL:
    return make_url(os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG))


def require_postgres() -> bool:
    return os.environ.get("AGORA_REQUIRE_POSTGRES", "") not in ("", "0", "false")


def _dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def upgrade(url: str, revision: str = "head") -> None:
    # env.py runs its own event loop, so Alembic goes to a worker thread.
    await asyncio.to_thread(command.upgrade, alembic_config(url), revision)


async def downgrade(url: str, revision: str) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(url), revision)


class TestDatabases:
    """One fresh database per backend (and extra throwaway ones) for this test run."""

    __test__ = False

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._migrated: dict[str, str] = {}
        self._pg_created: list[str] = []
        self._pg_error: str | None = None

    async def migrated_url(self, backend: str) -> str:
        if backend not in self._migrated:
            url = await self.fresh_url(backend)
            await upgrade(url)
            self._migrated[backend] = url
        return self._migrated[backend]

    async def fresh_url(self, backend: str) -> str:
        """The URL of a new, empty database of that backend."""
        if backend == "sqlite":
            path = self.tmp / f"{uuid.uuid4().hex[:12]}.db"
            return f"sqlite+aiosqlite:///{path}"
        return await self._create_pg()

    async def _create_pg(self) -> str:
        server = postgres_server_url()
        if self._pg_error is None:
            name = f"agora_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            try:
                conn = await asyncpg.connect(_dsn(server), timeout=5)
                try:
                    await conn.execute(f'CREATE DATABASE "{name}"')
                finally:
                    await conn.close()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                self._pg_error = f"{type(exc).__name__}: {exc}"
            else:
                self._pg_created.append(name)
                return server.set(database=name).render_as_string(hide_password=False)
        reason = (
            f"PostgreSQL at {server.render_as_string(hide_password=True)} is unreachable "
            f"({self._pg_error}); set TEST_POSTGRES_URL"
        )
        if require_postgres():
            pytest.fail(f"AGORA_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(f"SKIPPING THE POSTGRESQL HALF: {reason}")

    async def drop_all(self) -> None:
        if not self._pg_created:
            return
        conn = await asyncpg.connect(_dsn(postgres_server_url()), timeout=5)
        try:
            for name in self._pg_created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


Cleanup = Callable[[AsyncConnection], Awaitable[object]]


@asynccontextmanager
async def committed_database(
    url: str, *, cleanup: Cleanup, connections: int, **engine_kwargs: Any
) -> AsyncIterator[Database]:
    """A real `Database` (separate connections, real commits) for race tests.

    `cleanup` runs in one transaction afterwards to delete what the test created, so the
    shared migrated database stays as the rolled-back tests expect it.
    """
    engine = make_engine(
        url, pool_size=5, max_overflow=connections, pool_timeout=30, **engine_kwargs
    )
    db = Database(engine)
    try:
        yield db
    finally:
        async with engine.begin() as conn:
            await cleanup(conn)
        await db.dispose()
