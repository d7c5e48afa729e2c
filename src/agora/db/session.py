"""`Database`: the engine and its session factories, owned by the application lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Self

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agora.db.engine import autocommit_engine, behind_pgbouncer
from agora.db.prepared import AUTOCOMMIT, DIRECT, TRANSACTION
from agora.db.readyourwrites import current_min_lsn, note_commit
from agora.db.replicas import PRIMARY_POSITION, UNREACHABLE, Replica, ReplicaSet
from agora.db.softdelete import install_soft_delete
from agora.db.uow import UnitOfWork

# Soft-deleted rows are hidden from every ORM read. The listener sits on the `Session` class,
# so it also covers sessions from factories passed in below (e.g. the test helpers').
install_soft_delete()


class Database:
    """Engine + two session factories: read-write (transactional) and read-only (autocommit).

    Read-only units of work run each statement on its own, so a request made of one SELECT
    costs one round trip. In both kinds of unit, `Prepared` statements skip SQLAlchemy's
    per-execution layers (`agora.db.prepared`). Sessions never expire objects on commit
    (`expire_on_commit=False`), so a committed object can still be serialized without a
    lazy load.

    With `replicas`, read-only units of work run on a replica chosen by
    `ReplicaSet.choose(current_min_lsn())` (see `agora.db.replicas` and
    `agora.db.readyourwrites`), or on the primary when none qualifies; write units of work
    always run on the primary. `on_read(target)` is called with "primary" or the replica's
    name for every read-only unit of work (metrics).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        read_sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        replicas: ReplicaSet | None = None,
    ) -> None:
        self.engine = engine
        self.replicas = replicas
        self.on_read: Callable[[str], None] | None = None
        # The sessions of these factories let `Prepared` statements skip SQLAlchemy's
        # per-execution layers (`agora.db.prepared`); not behind PgBouncer, where a statement
        # is prepared and executed in two exchanges that must share a server connection.
        direct = not behind_pgbouncer(engine)
        self.sessionmaker = sessionmaker or async_sessionmaker(
            engine, expire_on_commit=False, info={DIRECT: direct and TRANSACTION}
        )
        self.read_sessionmaker = read_sessionmaker or async_sessionmaker(
            autocommit_engine(engine),
            expire_on_commit=False,
            info={DIRECT: direct and AUTOCOMMIT},
        )

    def uow(self, *, read_only: bool = False) -> UnitOfWork:
        if self.replicas is None:
            return UnitOfWork(self.read_sessionmaker if read_only else self.sessionmaker)
        if read_only:
            return _RoutedReadUnitOfWork(self, self.replicas)
        return UnitOfWork(self.sessionmaker, on_commit=note_commit)

    async def primary_position(self) -> int:
        """The primary's WAL insert position (bytes since 0/0): one round trip."""
        async with autocommit_engine(self.engine).connect() as conn:
            return int(await conn.scalar(PRIMARY_POSITION))

    async def start(self) -> None:
        """Start probing the replicas, if any (the application lifespan calls this)."""
        if self.replicas is not None:
            await self.replicas.start()

    async def ping(self, *, timeout: float = 2.0) -> None:
        """Run `SELECT 1`; raise on failure or when it takes longer than `timeout` seconds."""
        async with asyncio.timeout(timeout):
            async with autocommit_engine(self.engine).connect() as conn:
                await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self.replicas is not None:
            await self.replicas.dispose()
        await self.engine.dispose()


class _RoutedReadUnitOfWork(UnitOfWork):
    """A read-only unit of work on a replica when one qualifies, else on the primary.

    The session takes its connection on entry: a replica that cannot be reached (connection
    refused, or a pooled connection the server closed) is then marked unhealthy and this unit
    runs on the primary instead -- the request never sees the failure. Taking the connection
    sends nothing to the server, so a read still costs one round trip per statement. A
    replica lost *during* a statement makes that request fail (503, `Retry-After`); the
    replica is marked unhealthy at once, so the next request reads on the primary.
    """

    def __init__(self, db: Database, replicas: ReplicaSet) -> None:
        super().__init__(db.read_sessionmaker)
        self._db = db
        self._replicas = replicas

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        replica = self._replicas.choose(current_min_lsn())
        if replica is not None:
            session = await self._open_on(replica)
            if session is not None:
                self._session = session
                self._report(replica.name)
                return self
        self._session = self._factory()
        self._report("primary")
        return self

    async def _open_on(self, replica: Replica) -> AsyncSession | None:
        session = replica.sessionmaker()
        try:
            await session.connection()
        except UNREACHABLE as error:
            await asyncio.shield(session.close())
            self._replicas.mark_unhealthy(replica, error)
            return None
        return session

    def _report(self, target: str) -> None:
        if self._db.on_read is not None:
            self._db.on_read(target)
