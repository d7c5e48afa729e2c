"""Concurrency proofs (issue 6, section 6), on both databases, through the HTTP API.

Real separate connections and real commits on the migrated test database of each backend
(SQLite on a file: an in-memory database shares one connection and proves nothing); every
row made here is deleted afterwards. Sized for two cores: seconds each.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import delete, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from agora.app import create_app
from agora.config import Settings
from agora.db.engine import make_engine
from agora.db.session import Database
from agora.models.market import CreditTransfer, IdempotencyKey, Order, OrderItem, Product
from agora.models.user import User
from agora.money import format_cents
from tests.market.builders import make_product
from tests.members.builders import auth, make_user
from tests.members.conftest import fast_settings
from tests.support.databases import committed_database as real_database

PREFIX = "mkrace"
APP_NAME = "agora-market-race"


@dataclass
class World:
    db: Database
    http: AsyncClient
    settings: Settings


async def _cleanup(conn: AsyncConnection) -> None:
    users = select(User.id).where(User.username.like(f"{PREFIX}%")).scalar_subquery()
    await conn.execute(delete(CreditTransfer).where(CreditTransfer.to_user_id.in_(users)))
    await conn.execute(delete(IdempotencyKey).where(IdempotencyKey.user_id.in_(users)))
    orders = select(Order.id).where(Order.buyer_id.in_(users)).scalar_subquery()
    await conn.execute(delete(OrderItem).where(OrderItem.order_id.in_(orders)))
    await conn.execute(delete(Order).where(Order.buyer_id.in_(users)))
    await conn.execute(delete(Product).where(Product.seller_id.in_(users)))
    await conn.execute(delete(User).where(User.username.like(f"{PREFIX}%")))


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    settings = fast_settings(database_url)
    async with real_database(
        database_url, cleanup=_cleanup, connections=20, application_name=APP_NAME
    ) as db:
        app = create_app(settings, database=db)
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http:
            yield World(db, http, settings)


async def _members(world: World, n: int, *, superuser: bool = False) -> list[User]:
    made = []
    async with world.db.uow() as uow:
        for _ in range(n):
            name = f"{PREFIX}{random.getrandbits(40):x}"
            made.append(await make_user(uow, username=name, is_superuser=superuser))
    return made


async def _fund(world: World, admin: User, members: list[User], cents: int) -> None:
    """Through POST /credits/grants, so the ledger holds every credit from zero."""
    for member in members:
        body = {"to_user_id": member.id, "amount": format_cents(cents), "note": "seed"}
        response = await world.http.post(
            "/api/v1/credits/grants", json=body, headers=auth(world.settings, admin)
        )
        assert response.status_code == 201, response.text


async def _deadlocks(world: World, backend: str) -> int:
    """`pg_stat_database.deadlocks`, after this test's own connections have gone.

    A backend reports its counters when it exits (or every second or so); waiting for the
    test's connections to close makes the figure complete.
    """
    if backend != "postgresql":
        return 0
    await world.db.engine.dispose()
    probe = make_engine(world.db.engine.url.render_as_string(hide_password=False))
    try:
        async with probe.connect() as conn:
            for _ in range(50):
                busy = await conn.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
                    {"n": APP_NAME},
                )
                if not busy:
                    break
                await asyncio.sleep(0.05)
            await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            value = await conn.scalar(
                text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            )
    finally:
        await probe.dispose()
    return int(value or 0)


async def _balances_and_ledger(
    world: World, ids: list[int]
) -> tuple[dict[int, int], dict[int, int]]:
    async with world.db.uow(read_only=True) as uow:
        rows = await uow.session.execute(select(User.id, User.credits).where(User.id.in_(ids)))
        balances = {uid: int(c) for uid, c in rows}
        replay = dict.fromkeys(ids, 0)
        for sender, receiver, amount in await uow.session.execute(
            select(
                CreditTransfer.from_user_id, CreditTransfer.to_user_id, CreditTransfer.amount
            ).where(or_(CreditTransfer.to_user_id.in_(ids), CreditTransfer.from_user_id.in_(ids)))
        ):
            if receiver in replay:
                replay[receiver] += amount
            if sender in replay:
                replay[sender] -= amount
    return balances, replay


async def test_random_transfers_keep_the_books(world: World, backend: str) -> None:
    """8 clients x 50 random transfers among 10 members: no money made or lost."""
    (admin,) = await _members(world, 1, superuser=True)
    members = await _members(world, 10)
    ids = [m.id for m in members]
    await _fund(world, admin, members, 100_00)
    before = await _deadlocks(world, backend)
    headers = {m.id: auth(world.settings, m) for m in members}

    async def client(seed: int) -> list[int]:
        rng = random.Random(seed)
        statuses = []
        for _ in range(50):
            sender, receiver = rng.sample(ids, 2)
            body = {"to_user_id": receiver, "amount": f"{rng.randint(1, 4000) / 100:.2f}"}
            response = await world.http.post(
                "/api/v1/credits/transfers", json=body, headers=headers[sender]
            )
            statuses.append(response.status_code)
            if response.status_code == 409:
                assert response.json()["error"] == "InsufficientCredits"
        return statuses

    results = await asyncio.gather(*(client(seed) for seed in range(8)))
    statuses = Counter(s for batch in results for s in batch)
    assert set(statuses) <= {201, 409}, statuses  # zero 5xx, nothing else
    assert statuses[201] > 0
    balances, replay = await _balances_and_ledger(world, ids)
    assert sum(balances.values()) == 10 * 100_00
    assert min(balances.values()) >= 0
    assert balances == replay
    assert await _deadlocks(world, backend) == before


async def test_opposite_transfers_never_deadlock(world: World, backend: str) -> None:
    """A -> B and B -> A at the same moment, many times: both always succeed."""
    (admin,) = await _members(world, 1, superuser=True)
    a, b = await _members(world, 2)
    await _fund(world, admin, [a, b], 1000_00)
    before = await _deadlocks(world, backend)

    async def send(sender: User, receiver: User) -> int:
        body = {"to_user_id": receiver.id, "amount": "1.00"}
        headers = auth(world.settings, sender)
        response = await world.http.post("/api/v1/credits/transfers", json=body, headers=headers)
        return response.status_code

    for _ in range(25):
        pairs = [send(a, b), send(b, a)] * 2
        assert await asyncio.gather(*pairs) == [201] * 4
    balances, replay = await _balances_and_ledger(world, [a.id, b.id])
    assert balances == {a.id: 1000_00, b.id: 1000_00} == replay
    assert await _deadlocks(world, backend) == before


async def test_thirty_orders_for_ten_units(world: World) -> None:
    seller, *buyers = await _members(world, 7)
    async with world.db.uow() as uow:
        product = await make_product(uow, seller=seller, stock=10)

    async def order(n: int) -> tuple[int, str | None]:
        buyer = buyers[n % len(buyers)]
        headers = {**auth(world.settings, buyer), "Idempotency-Key": f"race-order-{n:04d}"}
        body = {"items": [{"product_id": product.id, "quantity": 1}]}
        response = await world.http.post("/api/v1/orders", json=body, headers=headers)
        return response.status_code, response.json().get("error")

    results = Counter(await asyncio.gather(*(order(n) for n in range(30))))
    assert results == {(201, None): 10, (409, "OutOfStock"): 20}
    async with world.db.uow(read_only=True) as uow:
        left = await uow.session.scalar(select(Product.stock).where(Product.id == product.id))
        orders = await uow.session.scalar(
            select(func.count(OrderItem.id)).where(OrderItem.product_id == product.id)
        )
    assert (left, orders) == (0, 10)


async def test_twenty_retries_of_one_order_make_one_order(world: World) -> None:
    seller, buyer = await _members(world, 2)
    async with world.db.uow() as uow:
        product = await make_product(uow, seller=seller, stock=50)
    headers = {**auth(world.settings, buyer), "Idempotency-Key": "one-key-for-all-20"}
    body = {"items": [{"product_id": product.id, "quantity": 2}]}

    async def order() -> tuple[int, bytes, bool]:
        response = await world.http.post("/api/v1/orders", json=body, headers=headers)
        return response.status_code, response.content, "idempotent-replayed" in response.headers

    results = await asyncio.gather(*(order() for _ in range(20)))
    assert len({(status, content) for status, content, _ in results}) == 1
    assert results[0][0] == 201
    assert sum(not replayed for _, _, replayed in results) == 1
    async with world.db.uow(read_only=True) as uow:
        orders = await uow.session.scalar(
            select(func.count(Order.id)).where(Order.buyer_id == buyer.id)
        )
        left = await uow.session.scalar(select(Product.stock).where(Product.id == product.id))
    assert (orders, left) == (1, 48)


async def test_twenty_retries_of_one_grant_mint_once(world: World) -> None:
    (admin,) = await _members(world, 1, superuser=True)
    (ann,) = await _members(world, 1)
    headers = {**auth(world.settings, admin), "Idempotency-Key": "one-grant-for-all-20"}
    body = {"to_user_id": ann.id, "amount": "12.34"}

    async def grant() -> tuple[int, bytes]:
        response = await world.http.post("/api/v1/credits/grants", json=body, headers=headers)
        return response.status_code, response.content

    results = await asyncio.gather(*(grant() for _ in range(20)))
    assert len(set(results)) == 1
    assert results[0][0] == 201
    async with world.db.uow(read_only=True) as uow:
        credits = await uow.session.scalar(select(User.credits).where(User.id == ann.id))
        grants = await uow.session.scalar(
            select(func.count(CreditTransfer.id)).where(CreditTransfer.to_user_id == ann.id)
        )
    assert (credits, grants) == (12_34, 1)
