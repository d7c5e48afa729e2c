"""Item 6: server-side timeouts (PostgreSQL). A statement past `statement_timeout` and a lock
wait past `lock_timeout` answer 503 `DatabaseTimeout` (with `Retry-After`) within the timeout
plus a margin, and the very same pooled connection serves the next request."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from agora.db.api import WriteUoW
from agora.db.engine import make_engine
from agora.db.errors import DatabaseTimeout, translate
from tests.reliability.conftest import make_app, running
from tests.reliability.world import World, app_sessions, seed

MARGIN = 1.5  # s on top of a timeout: generous, for a loaded two-core machine


def timeout_app(url: str, **overrides: object) -> FastAPI:
    """The real app on a pool of ONE connection, plus two test routes on a write unit."""
    app = make_app(url, pool_size=1, max_overflow=0, pool_timeout=5, **overrides)

    @app.post("/test/sleep")
    async def sleep(uow: WriteUoW, seconds: float) -> dict[str, str]:
        await uow.session.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
        return {"status": "slept"}

    @app.get("/test/backend")
    async def backend_pid(uow: WriteUoW) -> dict[str, int]:
        return {"pid": int(await uow.session.scalar(text("SELECT pg_backend_pid()")) or 0)}

    return app


@pytest.fixture
async def world(pg_url: str) -> World:
    return await seed(pg_url, members=2, cents=100_00, products=1, stock=10)


@dataclass
class Lock:
    product: int
    conn: asyncpg.Connection

    async def release(self) -> None:
        await self.conn.execute("ROLLBACK")


@pytest.fixture
async def locked_product(pg_url: str, world: World) -> AsyncIterator[Lock]:
    """The product's row locked FOR UPDATE by another session (until `release()`)."""
    (product,) = world.products
    conn = await asyncpg.connect(pg_url.replace("+asyncpg", ""))
    try:
        await conn.execute("BEGIN")
        await conn.execute("SELECT 1 FROM product WHERE id = $1 FOR UPDATE", product)
        yield Lock(product, conn)
    finally:
        await conn.close()


async def _pid(http: AsyncClient) -> int:
    response = await http.get("/test/backend")
    assert response.status_code == 200, response.text
    return int(response.json()["pid"])


def _assert_timeout(response_status: int, body: dict[str, str], headers: dict[str, str]) -> None:
    assert response_status == 503, body
    assert body["error"] == "DatabaseTimeout"
    assert headers["retry-after"] == "1"


async def test_a_statement_past_statement_timeout_is_503_and_the_connection_is_reused(
    pg_url: str, world: World
) -> None:
    app = timeout_app(pg_url, statement_timeout_ms=300)
    async with running(app), AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        pid = await _pid(http)
        started = time.monotonic()
        response = await http.post("/test/sleep", params={"seconds": 5})
        elapsed = time.monotonic() - started
        assert (await http.post("/test/sleep", params={"seconds": 0.01})).status_code == 200
        assert await _pid(http) == pid  # the same connection, not a new one
    _assert_timeout(response.status_code, response.json(), dict(response.headers))
    assert 0.3 <= elapsed < 0.3 + MARGIN


async def test_a_lock_wait_past_lock_timeout_is_503_and_the_connection_is_reused(
    pg_url: str, world: World, locked_product: Lock
) -> None:
    app = timeout_app(pg_url, lock_timeout_ms=300, statement_timeout_ms=10_000)
    buyer = world.members[0]
    order = {"items": [{"product_id": locked_product.product, "quantity": 1}]}
    headers = {**world.headers[buyer], "Idempotency-Key": "lock-timeout-1"}
    async with running(app), AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        pid = await _pid(http)
        started = time.monotonic()
        response = await http.post("/api/v1/orders", json=order, headers=headers)
        elapsed = time.monotonic() - started
        assert await _pid(http) == pid
        assert await app_sessions(pg_url, state="idle in transaction") == 0
        # The refused request claimed nothing: once the row is free the same key does the work.
        await locked_product.release()
        retried = await http.post("/api/v1/orders", json=order, headers=headers)
        assert await _pid(http) == pid
    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers
    _assert_timeout(response.status_code, response.json(), dict(response.headers))
    assert "Another transaction holds a lock" in response.json()["detail"]
    assert 0.3 <= elapsed < 0.3 + MARGIN


async def test_a_lock_wait_without_lock_timeout_stops_at_statement_timeout(
    pg_url: str, world: World, locked_product: Lock
) -> None:
    app = timeout_app(pg_url, lock_timeout_ms=0, statement_timeout_ms=400)
    order = {"items": [{"product_id": locked_product.product, "quantity": 1}]}
    headers = {**world.headers[world.members[0]], "Idempotency-Key": "statement-timeout-1"}
    async with running(app), AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        started = time.monotonic()
        response = await http.post("/api/v1/orders", json=order, headers=headers)
        elapsed = time.monotonic() - started
    _assert_timeout(response.status_code, response.json(), dict(response.headers))
    assert 0.4 <= elapsed < 0.4 + MARGIN


async def test_asyncpg_timeouts_translate_to_database_timeout(pg_url: str, world: World) -> None:
    """The data layer alone: asyncpg's QueryCanceledError (statement_timeout) and
    LockNotAvailableError (lock_timeout) both become a typed 503 `DatabaseTimeout`."""
    (product,) = world.products
    engine = make_engine(pg_url, statement_timeout_ms=200, lock_timeout_ms=100)
    try:
        async with engine.connect() as holder, engine.connect() as waiter:
            await holder.execute(
                text("SELECT 1 FROM product WHERE id = :id FOR UPDATE"), {"id": product}
            )
            with pytest.raises(DBAPIError) as lock_wait:
                await waiter.execute(
                    text("SELECT 1 FROM product WHERE id = :id FOR UPDATE"), {"id": product}
                )
            await waiter.rollback()
            with pytest.raises(DBAPIError) as slow:
                await waiter.execute(text("SELECT pg_sleep(2)"))
    finally:
        await engine.dispose()
    assert isinstance(
        getattr(lock_wait.value.orig, "__cause__", None), asyncpg.LockNotAvailableError
    )
    assert isinstance(getattr(slow.value.orig, "__cause__", None), asyncpg.QueryCanceledError)
    for raised in (lock_wait.value, slow.value):
        typed = translate(raised)
        assert isinstance(typed, DatabaseTimeout)
        assert typed.status_code == 503
    assert "Another transaction holds a lock" in str(translate(lock_wait.value))
