"""`agora seed`: counts, referential integrity, the ledger, determinism, the CLI, sequences."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agora.app import create_app
from agora.config import Settings
from agora.db.engine import make_engine
from agora.db.session import Database
from agora.members.security import Passwords
from agora.seed import (
    COLUMNS,
    DEMO_PASSWORD,
    TAGS_PER_SEED,
    SeedPlan,
    demo_password_hash,
    seed,
)
from tests.support.databases import TestDatabases, upgrade

PLAN = SeedPlan(users=40, products=25, orders=60, posts=30, seed=7, batch_size=16)
PARAMS: dict[str, int] = {"memory_kib": 8, "time_cost": 1, "parallelism": 1}


async def _seeded(databases: TestDatabases, backend: str, plan: SeedPlan = PLAN) -> AsyncEngine:
    url = await databases.fresh_url(backend)
    await upgrade(url)
    engine = make_engine(url)
    await seed(engine, plan, password_hash=demo_password_hash(plan.seed, **PARAMS))
    return engine


@pytest.fixture
async def engine(backend: str, databases: TestDatabases) -> AsyncIterator[AsyncEngine]:
    eng = await _seeded(databases, backend)
    try:
        yield eng
    finally:
        await eng.dispose()


async def _all(engine: AsyncEngine, sql: str) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql))).all())


async def _one(engine: AsyncEngine, sql: str) -> Any:
    return (await _all(engine, sql))[0][0]


async def _dump(engine: AsyncEngine) -> dict[str, list[Any]]:
    return {t: await _all(engine, f'SELECT * FROM "{t}" ORDER BY 1, 2') for t in COLUMNS}


async def test_counts_match_the_flags(engine: AsyncEngine) -> None:
    assert await _one(engine, 'SELECT COUNT(*) FROM "user"') == PLAN.users
    assert await _one(engine, "SELECT COUNT(*) FROM user_profile") == PLAN.users
    assert await _one(engine, "SELECT COUNT(*) FROM product") == PLAN.products
    assert await _one(engine, 'SELECT COUNT(*) FROM "order"') == PLAN.orders
    assert await _one(engine, "SELECT COUNT(*) FROM order_item") >= PLAN.orders
    statuses = {r[0] for r in await _all(engine, 'SELECT DISTINCT status FROM "order"')}
    assert statuses == {"pending", "paid", "cancelled"}
    kinds = {r[0] for r in await _all(engine, "SELECT DISTINCT kind FROM credit_transfer")}
    assert kinds == {"grant", "order_payment", "transfer"}
    assert await _one(engine, "SELECT COUNT(*) FROM post") == PLAN.posts
    assert await _one(engine, "SELECT COUNT(*) FROM tag") == TAGS_PER_SEED
    assert await _one(engine, "SELECT COUNT(*) FROM post_tag") > 0


class _Recorder:
    """A progress reporter that keeps what it was told."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.advanced: dict[str, int] = {}

    def start(self, table: str, total: int) -> None:
        self.totals[table] = total

    def advance(self, table: str, rows: int) -> None:
        self.advanced[table] = self.advanced.get(table, 0) + rows


async def test_the_progress_totals_are_the_rows_written(
    backend: str, databases: TestDatabases
) -> None:
    """The planning pass counts every table's rows before writing (the CLI's progress bars);
    the loaders then write exactly that many, and the database holds them."""
    url = await databases.fresh_url(backend)
    await upgrade(url)
    engine = make_engine(url)
    recorder = _Recorder()
    try:
        written = await seed(
            engine, PLAN, password_hash=demo_password_hash(PLAN.seed, **PARAMS), reporter=recorder
        )
        stored = {t: await _one(engine, f'SELECT COUNT(*) FROM "{t}"') for t in recorder.totals}
    finally:
        await engine.dispose()
    assert recorder.totals["order_item"] > PLAN.orders  # orders have 1-4 items
    assert recorder.totals == recorder.advanced == stored
    assert {t: n for t, n in written.items() if n} == stored


ORPHANS = {
    "profile": 'SELECT COUNT(*) FROM user_profile p LEFT JOIN "user" u ON u.id = p.user_id '
    "WHERE u.id IS NULL",
    "seller": 'SELECT COUNT(*) FROM product p LEFT JOIN "user" u ON u.id = p.seller_id '
    "WHERE u.id IS NULL",
    "item order": 'SELECT COUNT(*) FROM order_item i LEFT JOIN "order" o ON o.id = i.order_id '
    "WHERE o.id IS NULL",
    "item product": "SELECT COUNT(*) FROM order_item i LEFT JOIN product p ON p.id = i.product_id "
    "WHERE p.id IS NULL OR p.seller_id <> i.seller_id OR p.name <> i.name "
    "OR p.price <> i.unit_price",
    "buyer is seller": 'SELECT COUNT(*) FROM order_item i JOIN "order" o ON o.id = i.order_id '
    "WHERE o.buyer_id = i.seller_id",
    "total": 'SELECT COUNT(*) FROM "order" o WHERE o.total <> '
    "(SELECT SUM(i.unit_price * i.quantity) FROM order_item i WHERE i.order_id = o.id)",
    "payments": "SELECT COUNT(*) FROM \"order\" o WHERE (o.status = 'paid') <> (o.total = "
    "(SELECT COALESCE(SUM(t.amount), 0) FROM credit_transfer t WHERE t.order_id = o.id))",
    "transfer users": "SELECT COUNT(*) FROM credit_transfer t "
    'LEFT JOIN "user" a ON a.id = t.from_user_id LEFT JOIN "user" b ON b.id = t.to_user_id '
    "WHERE (t.to_user_id IS NOT NULL AND b.id IS NULL) "
    "OR (t.from_user_id IS NOT NULL AND a.id IS NULL)",
    "post author": 'SELECT COUNT(*) FROM post p LEFT JOIN "user" u ON u.id = p.author_id '
    "WHERE u.id IS NULL",
    "post tag": "SELECT COUNT(*) FROM post_tag pt LEFT JOIN post p ON p.id = pt.post_id "
    "LEFT JOIN tag t ON t.id = pt.tag_id WHERE p.id IS NULL OR t.id IS NULL",
    "negative": 'SELECT (SELECT COUNT(*) FROM "user" WHERE credits < 0) + '
    "(SELECT COUNT(*) FROM product WHERE stock < 0)",
}


@pytest.mark.parametrize("check", ORPHANS)
async def test_referential_integrity(engine: AsyncEngine, check: str) -> None:
    assert await _one(engine, ORPHANS[check]) == 0


async def test_the_ledger_replays_to_the_balances_and_never_overdraws(engine: AsyncEngine) -> None:
    balances: dict[int, int] = {}
    for sender, recipient, amount in await _all(
        engine, "SELECT from_user_id, to_user_id, amount FROM credit_transfer ORDER BY id"
    ):
        if sender is not None:
            balances[sender] = balances.get(sender, 0) - amount
            assert balances[sender] >= 0
        if recipient is not None:  # None: a debit adjustment
            balances[recipient] = balances.get(recipient, 0) + amount
    credits = dict(await _all(engine, 'SELECT id, credits FROM "user"'))
    assert balances == credits
    assert sum(credits.values()) > 0


async def test_the_demo_password_logs_in(engine: AsyncEngine) -> None:
    hashed = await _one(engine, 'SELECT hashed_password FROM "user" ORDER BY id DESC LIMIT 1')
    passwords = Passwords(**PARAMS)
    assert (await passwords.verify(DEMO_PASSWORD, hashed))[0]
    assert await _one(engine, 'SELECT COUNT(DISTINCT hashed_password) FROM "user"') == 1


async def test_same_seed_same_rows_other_seed_other_rows(
    engine: AsyncEngine, backend: str, databases: TestDatabases
) -> None:
    again = await _seeded(databases, backend)
    other = await _seeded(databases, backend, SeedPlan(users=40, products=25, orders=60, seed=8))
    try:
        first = await _dump(engine)
        assert first == await _dump(again)
        different = await _dump(other)
        assert first["user"] != different["user"]
        assert first["order_item"] != different["order_item"]
    finally:
        await again.dispose()
        await other.dispose()


async def test_seeding_again_appends(engine: AsyncEngine) -> None:
    await seed(engine, PLAN, password_hash=demo_password_hash(PLAN.seed, **PARAMS))
    assert await _one(engine, 'SELECT COUNT(*) FROM "user"') == 2 * PLAN.users
    assert await _one(engine, 'SELECT COUNT(DISTINCT email) FROM "user"') == 2 * PLAN.users
    await test_the_ledger_replays_to_the_balances_and_never_overdraws(engine)
    for check in ORPHANS.values():
        assert await _one(engine, check) == 0


async def test_a_normal_insert_after_seeding_gets_a_fresh_id(engine: AsyncEngine) -> None:
    # PostgreSQL: the sequences were moved past the seeded ids; SQLite does max(id) + 1 itself.
    async with engine.begin() as conn:
        new_id = (
            await conn.execute(
                text(
                    'INSERT INTO "user" (email, username, hashed_password) '
                    "VALUES ('fresh@example.com', 'fresh_user', 'x') RETURNING id"
                )
            )
        ).scalar_one()
        order_id = (
            await conn.execute(
                text('INSERT INTO "order" (buyer_id, total) VALUES (:b, 0) RETURNING id'),
                {"b": new_id},
            )
        ).scalar_one()
    assert new_id == PLAN.users + 1
    assert order_id == PLAN.orders + 1


def test_cli_seeds_end_to_end(
    tmp_path: Path, repo_root: Path, subprocess_env: dict[str, str]
) -> None:
    db = tmp_path / "cli.db"
    env = {**subprocess_env, "AGORA_DATABASE_URL": f"sqlite:///{db}"}
    args = ["--users", "12", "--products", "6", "--orders", "9", "--posts", "5", "--seed", "3"]
    done = subprocess.run(
        [sys.executable, "-m", "agora", "seed", *args],
        env=env, cwd=repo_root, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Seeded 12 user, 12 user_profile, 6 product, 9 order" in done.stdout
    assert "5 post" in done.stdout
    assert DEMO_PASSWORD in done.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "agora", "seed", "--posts", "5"],
        env=env, cwd=repo_root, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "--posts needs --users" in refused.stderr


async def test_seeded_posts_are_found_by_full_text_search(engine: AsyncEngine) -> None:
    """The search index (tsvector column / FTS5 triggers) covers rows loaded by COPY too."""
    rows = await _all(engine, "SELECT title FROM post WHERE is_published ORDER BY id LIMIT 1")
    title = rows[0][0]
    word = title.split()[0].lower()
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False))
    app = create_app(settings, database=Database(engine))
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http:
        found = await http.get("/api/v1/posts", params={"q": word, "limit": 100})
    assert found.status_code == 200, found.text
    titles = [p["title"] for p in found.json()["items"]]
    assert title in titles
