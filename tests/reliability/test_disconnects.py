"""Item 4: clients that go away mid-flight while their requests wait on row locks.

Two ways a request can lose its client:

* **cancelled**: the server cancels the request's task (Starlette does so when it notices
  the disconnect in some paths; so do servers such as Hypercorn). Here the client task is
  cancelled with `ASGITransport`, which runs the app in that task: each request is
  cancelled inside its database call or while waiting for a pooled connection.
* **abandoned**: uvicorn (the server `agora serve` runs) does not cancel; the client's TCP
  connection is reset and the request runs on to its end with nobody listening. Real
  sockets against uvicorn in this process.

Either way, afterwards: no session of the service is left `idle in transaction`, the pool has
nothing checked out, the rows can be locked at once by someone else, and the books balance.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select

from agora.db.engine import make_engine
from agora.models.market import Order
from tests.reliability.conftest import make_app, running
from tests.reliability.locks import lockable_now, row_locks
from tests.reliability.world import (
    World,
    app_sessions,
    assert_books_balance,
    books,
    eventually,
    seed,
)
from tests.support import pgcluster

REQUESTS = 200
POOL = 10
_keys = itertools.count(1)


def order_request(world: World, n: int) -> dict[str, Any]:
    """An order of both products. Rows are locked in ascending id order, so while the test
    holds the second product, the request holding the first waits on it with its row lock
    (and its Idempotency-Key's) held, and every other request waits on the first."""
    buyer = world.members[n % len(world.members)]
    return {
        "url": "/api/v1/orders",
        "json": {"items": [{"product_id": p, "quantity": 1} for p in sorted(world.products)]},
        "headers": {**world.headers[buyer], "Idempotency-Key": f"gone-{next(_keys):06d}"},
    }


async def wait_until_idle(app: FastAPI, timeout: float = 20) -> None:
    """Until the pool has nothing checked out (bounded: a leak fails the test)."""
    pool = app.state.db.engine.pool
    await eventually(lambda: pool.checkedout() == 0, timeout=timeout)


async def wait_for_waiters(app: FastAPI) -> None:
    """Until every pooled connection is taken: requests are stuck on the lock."""
    pool = app.state.db.engine.pool
    await eventually(lambda: pool.checkedout() == POOL)
    await asyncio.sleep(0.2)  # and the rest queue for a connection


async def orders_placed(url: str) -> int:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(select(func.count(Order.id))) or 0)
    finally:
        await engine.dispose()


async def assert_clean(url: str, app: FastAPI, world: World) -> dict[str, Any]:
    await wait_until_idle(app)
    if url.startswith("postgresql"):
        assert await app_sessions(url, state="idle in transaction") == 0
    assert await lockable_now(url, table="product", ids=list(world.products))
    figures = await books(url, world)
    assert_books_balance(figures, world)
    return figures


async def test_cancelled_requests_release_their_locks_and_connections(fresh_url: str) -> None:
    world = await seed(fresh_url, members=4, cents=100_00, products=2, stock=10_000)
    product = max(world.products)
    app = make_app(fresh_url, pool_size=POOL, max_overflow=0, pool_timeout=10)
    async with running(app), AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        async with row_locks(fresh_url, table="product", ids=[product]):
            tasks = [
                asyncio.create_task(http.post(**order_request(world, n))) for n in range(REQUESTS)
            ]
            await wait_for_waiters(app)
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(r, asyncio.CancelledError) for r in results)
            await wait_until_idle(app)
            if fresh_url.startswith("postgresql"):
                # While the test still holds its lock: no statement of the service waits on
                # it, and the first product, which a cancelled request had locked, is free.
                assert await app_sessions(fresh_url, state="active") == 0
                assert await lockable_now(fresh_url, table="product", ids=[min(world.products)])
        await assert_clean(fresh_url, app, world)
        assert await orders_placed(fresh_url) == 0  # every one was cancelled before its commit
        after = await http.post(**order_request(world, 0))
        assert after.status_code == 201, after.text


@contextlib.asynccontextmanager
async def uvicorn_in_process(app: FastAPI) -> AsyncIterator[int]:
    """uvicorn serving `app` on a free loopback port in this event loop (real sockets)."""
    port = pgcluster.free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            assert not serving.done(), serving
            await asyncio.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        await serving


async def post_then_reset(port: int, request: dict[str, Any], gone: asyncio.Event) -> None:
    """Send the request over a new TCP connection, then reset it once `gone` is set."""
    body = json.dumps(request["json"]).encode()
    headers = {**request["headers"], "Content-Type": "application/json"}
    head = f"POST {request['url']} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + body)
    await writer.drain()
    await gone.wait()
    writer.transport.abort()  # RST: the client is gone


async def test_abandoned_requests_on_a_real_server_leave_nothing_locked(fresh_url: str) -> None:
    world = await seed(fresh_url, members=4, cents=100_00, products=2, stock=10_000)
    product = max(world.products)
    # The requests holding a connection wait as long as the test holds the row, however
    # slow the machine: no lock or busy timeout cuts their wait short.
    app = make_app(
        fresh_url,
        pool_size=POOL,
        max_overflow=0,
        pool_timeout=1,
        lock_timeout_ms=0,
        sqlite_busy_timeout_ms=60_000,
    )
    gone = asyncio.Event()
    async with uvicorn_in_process(app) as port:
        async with row_locks(fresh_url, table="product", ids=[product]):
            clients = [
                asyncio.create_task(post_then_reset(port, order_request(world, n), gone))
                for n in range(REQUESTS)
            ]
            await wait_for_waiters(app)
            gone.set()
            await asyncio.gather(*clients)
            await asyncio.sleep(0.2)
        # The lock is gone: the requests that held a connection finish (nobody listening),
        # the others gave up on the pool after pool_timeout.
        started = time.monotonic()
        await assert_clean(fresh_url, app, world)
        settled = time.monotonic() - started
        placed = await orders_placed(fresh_url)
        async with AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            after = await http.post(**order_request(world, 0))
    assert after.status_code == 201, after.text
    assert 0 < placed <= REQUESTS
    print(f"\nabandoned: {REQUESTS} requests reset, {placed} orders completed, "
          f"settled in {settled:.2f} s")  # fmt: skip
