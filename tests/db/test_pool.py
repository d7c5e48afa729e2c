"""`FairAsyncQueuePool` (the pool `make_engine` gives file databases): first come, first served.

On both backends, with one connection so that every checkout but one waits. A connection
given back in the same step as a newcomer asks for one is exactly when SQLAlchemy's stock
asyncio pool lets the newcomer overtake the waiters (the newcomer's `get_nowait` finds it on
the shelf before the woken waiter runs); here it must go to the longest waiter.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agora.db.engine import make_engine
from agora.db.pool import FairAsyncQueuePool


@pytest.fixture
async def one_connection(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=5)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _hold(engine: AsyncEngine) -> AsyncConnection:
    conn = await engine.connect()
    await conn.execute(text("SELECT 1"))
    return conn


async def _queue_up(engine: AsyncEngine, served: list[str], name: str) -> None:
    async with engine.connect() as conn:
        served.append(name)
        await conn.execute(text("SELECT 1"))


async def _wait_until_waiting(engine: AsyncEngine, count: int) -> None:
    queue = engine.pool._pool._queue  # type: ignore[attr-defined]
    for _ in range(200):
        if sum(not w.done() for w in queue._waiters) == count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{count} checkouts never queued up")


async def test_make_engine_uses_the_fair_pool(one_connection: AsyncEngine) -> None:
    assert isinstance(one_connection.pool, FairAsyncQueuePool)


async def test_waiters_are_served_in_arrival_order_and_no_newcomer_overtakes(
    one_connection: AsyncEngine,
) -> None:
    holder = await _hold(one_connection)
    served: list[str] = []
    waiters = []
    for i in range(5):  # they queue up in this order
        waiters.append(asyncio.create_task(_queue_up(one_connection, served, f"waiter {i}")))
        await _wait_until_waiting(one_connection, i + 1)
    await holder.close()  # the connection goes back while five tasks wait...
    newcomer = await one_connection.connect()  # ...and a newcomer asks in the same step
    served.append("newcomer")
    await newcomer.close()
    await asyncio.gather(*waiters)
    assert served == [f"waiter {i}" for i in range(5)] + ["newcomer"]
    assert one_connection.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_waiter_that_times_out_gets_the_pool_timeout_and_nothing_is_lost(
    database_url: str,
) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        holder = await _hold(engine)
        with pytest.raises(sa_exc.TimeoutError):
            await engine.connect()
        await holder.close()
        conn = await asyncio.wait_for(engine.connect(), 1)  # not handed to the gone waiter
        assert (await conn.scalar(text("SELECT 1"))) == 1
        await conn.close()
        assert (engine.pool.checkedin(), engine.pool.checkedout()) == (1, 0)  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def test_a_connection_handed_to_a_cancelled_waiter_goes_to_the_next_one(
    one_connection: AsyncEngine,
) -> None:
    holder = await _hold(one_connection)
    served: list[str] = []
    first = asyncio.create_task(_queue_up(one_connection, served, "first"))
    await _wait_until_waiting(one_connection, 1)
    second = asyncio.create_task(_queue_up(one_connection, served, "second"))
    await _wait_until_waiting(one_connection, 2)
    await holder.close()  # handed to `first`, which is cancelled before it runs
    first.cancel()
    await asyncio.wait_for(second, 5)
    assert served == ["second"]
    assert first.cancelled()
    assert (one_connection.pool.checkedin(), one_connection.pool.checkedout()) == (1, 0)  # type: ignore[attr-defined]
