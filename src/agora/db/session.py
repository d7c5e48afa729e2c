"""`Database`: the engine and its session factories, owned by the application lifespan."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agora.db.engine import autocommit_engine
from agora.db.softdelete import install_soft_delete
from agora.db.uow import UnitOfWork

# Soft-deleted rows are hidden from every ORM read. The listener sits on the `Session` class,
# so it also covers sessions from factories passed in below (e.g. the test helpers').
install_soft_delete()


class Database:
    """Engine + two session factories: read-write (transactional) and read-only (autocommit).

    Read-only units of work run each statement on its own, so a request made of one SELECT
    costs one round trip. Sessions never expire objects on commit (`expire_on_commit=False`),
    so a committed object can still be serialized without a lazy load.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        read_sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self.engine = engine
        self.sessionmaker = sessionmaker or async_sessionmaker(engine, expire_on_commit=False)
        self.read_sessionmaker = read_sessionmaker or async_sessionmaker(
            autocommit_engine(engine), expire_on_commit=False
        )

    def uow(self, *, read_only: bool = False) -> UnitOfWork:
        return UnitOfWork(self.read_sessionmaker if read_only else self.sessionmaker)

    async def ping(self, *, timeout: float = 2.0) -> None:
        """Run `SELECT 1`; raise on failure or when it takes longer than `timeout` seconds."""
        async with asyncio.timeout(timeout):
            async with autocommit_engine(self.engine).connect() as conn:
                await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
