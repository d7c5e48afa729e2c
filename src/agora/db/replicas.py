"""Read replicas: round-robin routing, health tracking and read-your-writes positions.

    replicas = ReplicaSet([make_engine(url) for url in replica_urls], poll_interval=1.0)
    db = Database(primary_engine, replicas=replicas)
    await replicas.start()          # background probe; `await replicas.stop()` at shutdown

`Database.uow(read_only=True)` then asks `choose(min_lsn)` for a replica: the next healthy one
in round-robin order whose replayed WAL position is at least `min_lsn` (the position of the
caller's last write, see `agora.db.readyourwrites`), or None, meaning "read on the primary".
Write units of work always run on the primary.

Health and positions are known from a background probe, never asked for on a request: every
`poll_interval` seconds each replica runs `SELECT pg_last_wal_replay_lsn()` on a pooled
connection. A replica is healthy after a successful probe and unhealthy after a failed one,
or as soon as a request finds it unreachable (`mark_unhealthy`); it is skipped until a probe
succeeds again. Before its first probe a replica counts as unhealthy, so a cold start reads on
the primary.

Positions are plain integers (bytes of WAL since 0/0), the same scale as
`pg_current_wal_insert_lsn() - '0/0'` on the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agora.db.engine import autocommit_engine

logger = logging.getLogger("agora.db.replicas")

REPLAY_POSITION = text("SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn")
# Insert position, not write position: it is past our COMMIT record even when
# synchronous_commit = off leaves that record unwritten for a moment.
PRIMARY_POSITION = text("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
# Errors that mean "this server cannot be reached", as opposed to a bad statement.
UNREACHABLE: tuple[type[BaseException], ...] = (OSError, TimeoutError, exc.DBAPIError)


@dataclass(eq=False)
class Replica:
    """One replica: its engine, a read-only (autocommit) session factory, what the probe saw."""

    name: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession] = field(init=False)
    healthy: bool = False
    replay_lsn: int | None = None  # None: unknown, or the server is not in recovery

    def __post_init__(self) -> None:
        self.sessionmaker = async_sessionmaker(
            autocommit_engine(self.engine), expire_on_commit=False
        )
        _drop_closed_connections_on_checkout(self.engine)


Listener = Callable[[Replica], None]


class ReplicaSet:
    """The replicas of one primary, with a background probe (`start` / `stop`)."""

    def __init__(
        self,
        engines: Sequence[AsyncEngine],
        *,
        names: Sequence[str] | None = None,
        poll_interval: float = 1.0,
        probe_timeout: float = 2.0,
    ) -> None:
        names = names or [f"replica-{i}" for i in range(1, len(engines) + 1)]
        if len(names) != len(engines):
            raise ValueError("one name per replica engine")
        self.replicas = [Replica(name, engine) for name, engine in zip(names, engines, strict=True)]
        self.poll_interval = poll_interval
        self.probe_timeout = probe_timeout
        self._turn = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []
        for replica in self.replicas:
            self._watch_disconnects(replica)

    def __len__(self) -> int:
        return len(self.replicas)

    def on_change(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(replica)` after every probe and every `mark_unhealthy`; returns a
        function that removes it (metrics use this)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def choose(self, min_lsn: int | None = None) -> Replica | None:
        """The next healthy replica (round robin) that has replayed `min_lsn`, else None."""
        count = len(self.replicas)
        start = next(self._turn)
        for offset in range(count):
            replica = self.replicas[(start + offset) % count]
            if not replica.healthy:
                continue
            replayed = replica.replay_lsn
            if min_lsn is None or (replayed is not None and replayed >= min_lsn):
                return replica
        return None

    def mark_unhealthy(self, replica: Replica, error: BaseException) -> None:
        if replica.healthy:
            logger.warning("replica %s unreachable, reads go elsewhere: %r", replica.name, error)
        replica.healthy = False
        self._notify(replica)

    async def probe(self, replica: Replica) -> None:
        """Ask `replica` how far it has replayed; mark it healthy or not accordingly."""
        was_healthy = replica.healthy
        try:
            async with asyncio.timeout(self.probe_timeout):
                async with autocommit_engine(replica.engine).connect() as conn:
                    position = await conn.scalar(REPLAY_POSITION)
        except UNREACHABLE as error:
            self.mark_unhealthy(replica, error)
            return
        replica.replay_lsn = None if position is None else int(position)
        replica.healthy = True
        if not was_healthy:
            logger.info("replica %s is healthy", replica.name)
        self._notify(replica)

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(replica) for replica in self.replicas))

    async def start(self) -> None:
        """Probe once (so a healthy replica serves reads from the first request), then keep
        probing every `poll_interval` seconds in a background task."""
        await self.probe_all()
        if self._task is None:
            self._task = asyncio.create_task(self._poll(), name="agora-replica-probe")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.probe_all()
            except Exception:  # never let the probe die: a dead probe means stale routing
                logger.exception("replica probe failed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def dispose(self) -> None:
        await self.stop()
        for replica in self.replicas:
            await replica.engine.dispose()

    def _watch_disconnects(self, replica: Replica) -> None:
        """A request (or the probe) lost its connection: the replica is out of rotation at
        once, until a probe reaches it again."""

        def on_error(context: Any) -> None:
            if context.is_disconnect:
                self.mark_unhealthy(replica, context.original_exception)

        event.listen(replica.engine.sync_engine, "handle_error", on_error)

    def _notify(self, replica: Replica) -> None:
        for listener in list(self._listeners):
            listener(replica)


def _drop_closed_connections_on_checkout(engine: AsyncEngine) -> None:
    """Refuse a pooled connection whose socket the server already closed (a stopped replica),
    so the pool opens a new one instead -- which fails fast if the server is still down.

    It reads the driver's own flag (asyncpg's `is_closed()`), so it costs no round trip,
    unlike `pool_pre_ping`. See
    https://docs.sqlalchemy.org/en/20/core/pooling.html#custom-legacy-pessimistic-ping
    """

    @event.listens_for(engine.sync_engine, "checkout")  # a pool event, kept across dispose()
    def _check(_dbapi_connection: Any, _record: Any, proxy: Any) -> None:
        is_closed = getattr(proxy.driver_connection, "is_closed", None)
        if is_closed is not None and is_closed():
            raise exc.DisconnectionError("the server closed this pooled connection")
