"""Item 5: pool exhaustion. A pool of 2 (no overflow) and 50 slow requests: the excess get a
fast 503 with `Retry-After` (every one of them while the slow ones are still waiting), then
the service recovers fully. Then 1 000 requests ending in 404 / 409 / 422 leak no connection.
(tests/test_observability.py checks the 503 body and metrics with a one-connection pool.)"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from typing import Any

from httpx import ASGITransport, AsyncClient

from tests.reliability.conftest import make_app, running
from tests.reliability.locks import lockable_now, row_locks
from tests.reliability.world import World, app_sessions, assert_books_balance, books, seed

SLOW = 50
POOL = 2
REFUSED = 1000
_keys = itertools.count(1)


def order(world: World, product: int, *, quantity: int = 1, buyer: int = 0) -> dict[str, Any]:
    key = f"k-{next(_keys):06d}"
    return {
        "url": "/api/v1/orders",
        "json": {"items": [{"product_id": product, "quantity": quantity}]},
        "headers": {**world.headers[buyer or world.members[0]], "Idempotency-Key": key},
    }


def refused_requests(world: World, busy: int, scarce: int) -> list[tuple[int, dict[str, Any]]]:
    """(expected status, request) of each kind that ends in a 4xx, reads and writes alike."""
    member, poor = world.members
    transfer = "/api/v1/credits/transfers"
    return [
        (404, {"method": "GET", "url": "/api/v1/products/999999"}),
        (404, {"method": "POST", "url": "/api/v1/orders/999999/pay",
               "headers": world.headers[member]}),
        (409, {"method": "POST", "url": transfer, "headers": world.headers[poor],
               "json": {"to_user_id": member, "amount": "100.01"}}),
        (409, {"method": "POST", **order(world, scarce, quantity=5)}),
        (422, {"method": "POST", **order(world, busy, buyer=world.seller)}),
        (422, {"method": "POST", "url": transfer, "headers": world.headers[member],
               "json": {"to_user_id": member, "amount": "1.00"}}),
        (422, {"method": "POST", "url": "/api/v1/orders", "json": {"items": []},
               "headers": {**world.headers[member], "Idempotency-Key": "k-invalid-body"}}),
    ]  # fmt: skip


async def test_an_exhausted_pool_turns_the_excess_away_fast_then_recovers(fresh_url: str) -> None:
    world = await seed(fresh_url, members=2, cents=100_00, products=2, stock=[1000, 1])
    busy, scarce = world.products
    app = make_app(fresh_url, pool_size=POOL, max_overflow=0, pool_timeout=0.5)
    async with running(app), AsyncClient(transport=ASGITransport(app), base_url="http://t") as http:
        pool = app.state.db.engine.pool
        async with row_locks(fresh_url, table="product", ids=[busy]) as lock:
            started = time.monotonic()
            slow = [asyncio.create_task(http.post(**order(world, busy))) for _ in range(SLOW)]
            async with asyncio.timeout(30):
                while sum(t.done() for t in slow) < SLOW - POOL:
                    await asyncio.wait(
                        [t for t in slow if not t.done()], return_when=asyncio.FIRST_COMPLETED
                    )
            # The lock is still held, so every answer so far was a refusal, not a service.
            turned_away = [t.result() for t in slow if t.done()]
            refused_within = time.monotonic() - started
            still_waiting = [t for t in slow if not t.done()]
            assert pool.checkedout() == POOL
            await lock.release()
            served = await asyncio.gather(*still_waiting)
        after = [await http.post(**order(world, busy)) for _ in range(20)]

        statuses: Counter[int] = Counter()
        cases = refused_requests(world, busy, scarce)

        async def refuse(worker: int) -> None:
            for n in range(worker, REFUSED, POOL):
                expected, request = cases[n % len(cases)]
                if request["url"] == "/api/v1/orders":  # a fresh key each time
                    request = {
                        **request,
                        "headers": {**request["headers"], "Idempotency-Key": f"refused-{n:06d}"},
                    }
                response = await http.request(**request)
                assert response.status_code == expected, (request, response.text)
                statuses[response.status_code] += 1

        await asyncio.gather(*(refuse(w) for w in range(POOL)))
        checked_out = pool.checkedout()
        last = await http.post(**order(world, busy))

    assert len(turned_away) == SLOW - POOL
    for response in turned_away:
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"] == "DatabaseUnavailable"
    assert [r.status_code for r in served] == [201] * POOL
    assert [r.status_code for r in after] == [201] * 20
    assert sum(statuses.values()) == REFUSED
    assert checked_out == 0
    assert last.status_code == 201
    if fresh_url.startswith("postgresql"):
        assert await app_sessions(fresh_url, state="idle in transaction") == 0
    assert await lockable_now(fresh_url, table="product", ids=list(world.products))
    assert await lockable_now(fresh_url, table="user", ids=world.members)
    assert_books_balance(await books(fresh_url, world), world)
    print(f"\npool exhaustion: {SLOW - POOL} of {SLOW} refused within {refused_within:.2f} s, "
          f"{REFUSED} 4xx requests, checked out after: {checked_out}")  # fmt: skip
