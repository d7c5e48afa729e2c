"""Shared pieces of the reliability suite: a seeded world (members, a seller, products),
the books' invariants, access tokens, and the real service in a uvicorn subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select, text

from agora.db.engine import make_engine
from agora.members.security import Tokens
from agora.models.market import CreditTransfer, OrderItem, Product, TransferKind
from agora.models.user import User
from tests.support import pgcluster

SECRET = "reliability-secret-" + "x" * 32
APP_NAME = "agora"  # make_engine's default application_name: how tests find the app's sessions


async def eventually(predicate: Callable[[], bool], *, timeout: float = 20) -> None:
    """Poll a state that no event announces (a pool's counters) until it holds; a bound, not
    a speed goal: TimeoutError when it never does."""
    async with asyncio.timeout(timeout):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.02)


@dataclass
class World:
    """Members with credits (every credit granted through the ledger), one seller who owns
    the products, and each product's initial stock."""

    members: list[int]
    seller: int
    products: dict[int, int]
    total_credits: int
    headers: dict[int, dict[str, str]] = field(default_factory=dict)


async def seed(
    url: str,
    *,
    members: int,
    cents: int,
    products: int = 0,
    stock: int | Sequence[int] = 0,
    prefix: str = "rel",
    secret: str = SECRET,
) -> World:
    """Insert the world in one committed transaction; tokens signed with `secret`."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            rows = [
                {
                    "email": f"{prefix}{n}@reliability.test",
                    "username": f"{prefix}{n}",
                    "hashed_password": "unused: the tests issue tokens directly",
                    "credits": cents if n < members else 0,
                }
                for n in range(members + 1)
            ]
            ids = list((await conn.scalars(insert(User).returning(User.id), rows)).all())
            member_ids, seller = ids[:-1], ids[-1]
            await conn.execute(
                insert(CreditTransfer),
                [
                    {"kind": TransferKind.grant, "to_user_id": uid, "amount": cents, "note": "seed"}
                    for uid in member_ids
                ],
            )
            product_ids: list[int] = []
            stocks = [stock] * products if isinstance(stock, int) else list(stock)
            if products:
                product_rows = [
                    {
                        "seller_id": seller,
                        "name": f"{prefix} product {n}",
                        "category": "tools",
                        "price": 100 + n,
                        "stock": stocks[n],
                    }
                    for n in range(products)
                ]
                product_ids = list(
                    (await conn.scalars(insert(Product).returning(Product.id), product_rows)).all()
                )
    finally:
        await engine.dispose()
    tokens = Tokens(secret, ttl=timedelta(hours=1))
    headers = {
        uid: {"Authorization": f"Bearer {tokens.issue(uid).token}"} for uid in [*member_ids, seller]
    }
    return World(
        member_ids, seller, dict(zip(product_ids, stocks, strict=True)), cents * members, headers
    )


async def books(url: str, world: World) -> dict[str, Any]:
    """The figures the invariants are checked on, read after the run (on a new engine)."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            ids = [*world.members, world.seller]
            balances = {
                uid: int(c)
                for uid, c in await conn.execute(
                    select(User.id, User.credits).where(User.id.in_(ids))
                )
            }
            replay = dict.fromkeys(ids, 0)
            for sender, receiver, amount in await conn.execute(
                select(
                    CreditTransfer.from_user_id, CreditTransfer.to_user_id, CreditTransfer.amount
                )
            ):
                if receiver in replay:
                    replay[receiver] += amount
                if sender in replay:
                    replay[sender] -= amount
            stock = {
                pid: int(s)
                for pid, s in await conn.execute(
                    select(Product.id, Product.stock).where(Product.id.in_(list(world.products)))
                )
            }
            ordered = dict.fromkeys(world.products, 0)
            for pid, qty in await conn.execute(
                select(OrderItem.product_id, func.sum(OrderItem.quantity)).group_by(
                    OrderItem.product_id
                )
            ):
                ordered[pid] = int(qty)
    finally:
        await engine.dispose()
    return {"balances": balances, "replay": replay, "stock": stock, "ordered": ordered}


def assert_books_balance(figures: dict[str, Any], world: World) -> None:
    """No credit made or lost, none negative, the ledger replays to every balance, and
    every unit of stock is either on the shelf or in an order."""
    balances = figures["balances"]
    assert sum(balances.values()) == world.total_credits
    assert min(balances.values()) >= 0
    assert figures["replay"] == balances
    for pid, initial in world.products.items():
        assert figures["stock"][pid] >= 0
        assert figures["stock"][pid] + figures["ordered"][pid] == initial, pid


@contextlib.contextmanager
def uvicorn_server(database_url: str, log: Path, **settings: str | int | float) -> Iterator[str]:
    """The service in a uvicorn subprocess (uvloop, httptools, as `agora serve`) on a free
    loopback port; yields its base URL once `/health/live` answers."""
    port = pgcluster.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env |= {
        "AGORA_ENV": "test",
        "AGORA_DATABASE_URL": database_url,
        "AGORA_SECRET_KEY": SECRET,
        "AGORA_ACCESS_LOG": "false",
        "AGORA_LOG_LEVEL": "WARNING",
    }
    env |= {f"AGORA_{name.upper()}": str(value) for name, value in settings.items()}
    argv = [sys.executable, "-m", "uvicorn", "agora.app:create_app", "--factory"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop"]
    argv += ["--http", "httptools", "--log-level", "warning"]
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health/live", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not start in 60 s"
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def app_sessions(url: str, *, state: str | None = None) -> int:
    """How many sessions the application (by application_name) has on this database."""
    engine = make_engine(url, application_name="agora-probe")
    try:
        async with engine.connect() as conn:
            sql = (
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = :app AND datname = current_database()"
            )
            params: dict[str, str] = {"app": APP_NAME}
            if state is not None:
                sql += " AND state = :state"
                params["state"] = state
            return int(await conn.scalar(text(sql), params) or 0)
    finally:
        await engine.dispose()
