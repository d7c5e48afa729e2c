"""agora.db repository vs SQLAlchemy Core vs the raw driver, on PostgreSQL and SQLite.

    uv run python -m bench.data_layer [--rows 100000] [--rounds 7] [--calls 300]

Prints Markdown tables (per-call wall and CPU time, ratios against the raw driver measured in
the same run, interleaved rounds) and bulk-insert throughput of `Repository.add_many` against
`asyncpg.copy_records_to_table` (PostgreSQL) and `executemany` (SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import asyncpg
from sqlalchemy import MetaData, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from agora.db.base import NAMING_CONVENTION, IdMixin, TimestampMixin, UTCDateTime
from agora.db.engine import autocommit_engine, make_engine
from agora.db.repository import Repository
from agora.db.session import Database
from bench.common import interleaved, table

PG_SERVER = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


class BenchBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class Item(IdMixin, TimestampMixin, BenchBase):
    __tablename__ = "item"
    name: Mapped[str] = mapped_column(String(100))
    price_cents: Mapped[int]
    category: Mapped[str] = mapped_column(String(50))


class ItemRepository(Repository[Item]):
    model = Item


def _rows(n: int, start: int = 0) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    return [
        {
            "name": f"item {i}",
            "price_cents": i % 10_000,
            "category": f"c{i % 20}",
            "created_at": now,
            "updated_at": now,
        }
        for i in range(start, start + n)
    ]


async def _pg_database() -> tuple[str, Callable[[], Awaitable[None]]]:
    name = f"agora_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PG_SERVER)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    dsn = PG_SERVER.rsplit("/", 1)[0] + f"/{name}"

    async def drop() -> None:
        c = await asyncpg.connect(PG_SERVER)
        await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await c.close()

    return dsn, drop


async def read_scenarios(
    url: str,
    raw: Callable[[str, list[object]], Awaitable[object]],
    *,
    calls: int,
    rounds: int,
    label: str,
) -> str:
    engine = make_engine(url, pool_size=2, max_overflow=0)
    db = Database(engine)
    core = autocommit_engine(engine)
    item_t = BenchBase.metadata.tables["item"]
    async with engine.begin() as conn:
        await conn.run_sync(BenchBase.metadata.create_all)
        await conn.execute(item_t.insert(), _rows(1000))

    async def repo_get() -> object:
        async with db.uow(read_only=True) as uow:
            return await uow.repo(ItemRepository).get(500)

    async def core_get() -> object:
        async with core.connect() as conn:
            return (await conn.execute(select(item_t).where(item_t.c.id == 500))).one()

    async def repo_list() -> object:
        async with db.uow(read_only=True) as uow:
            return await uow.repo(ItemRepository).list(order_by=(Item.id,), limit=100)

    async def core_list() -> object:
        async with core.connect() as conn:
            stmt = select(item_t).order_by(item_t.c.id).limit(100)
            return (await conn.execute(stmt)).all()

    sql_get = (
        "SELECT id, name, price_cents, category, created_at, updated_at FROM item WHERE id = {p}"
    )
    sql_list = (
        "SELECT id, name, price_cents, category, created_at, updated_at FROM item "
        "ORDER BY id LIMIT 100"
    )
    out = []
    get = await interleaved(
        [
            ("raw driver", lambda: raw(sql_get, [500])),
            ("SQLAlchemy Core", core_get),
            ("Repository.get", repo_get),
        ],
        calls=calls,
        rounds=rounds,
    )
    out.append(table(f"{label}: get one row by primary key", get, baseline="raw driver"))
    lst = await interleaved(
        [
            ("raw driver", lambda: raw(sql_list, [])),
            ("SQLAlchemy Core", core_list),
            ("Repository.list", repo_list),
        ],
        calls=max(1, calls // 5),
        rounds=rounds,
    )
    out.append(table(f"{label}: list 100 rows", lst, baseline="raw driver"))
    await engine.dispose()
    return "\n".join(out)


async def bulk_scenario(
    url: str,
    baseline: Callable[[list[dict[str, object]]], Awaitable[None]],
    *,
    rows: int,
    label: str,
    baseline_name: str,
) -> str:
    engine = make_engine(url)
    db = Database(engine)
    async with engine.begin() as conn:
        await conn.run_sync(BenchBase.metadata.drop_all)
        await conn.run_sync(BenchBase.metadata.create_all)
    data = _rows(rows)
    results: dict[str, list[float]] = {
        "add_many": [],
        "add_many(returning=False)": [],
        baseline_name: [],
    }
    for _ in range(3):  # interleaved: A B A B A B
        t0 = time.perf_counter()
        async with db.uow() as uow:
            await uow.repo(ItemRepository).add_many(data)
            await uow.commit()
        results["add_many"].append(rows / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        async with db.uow() as uow:
            await uow.repo(ItemRepository).add_many(data, returning=False)
            await uow.commit()
        results["add_many(returning=False)"].append(rows / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        await baseline(data)
        results[baseline_name].append(rows / (time.perf_counter() - t0))
    await engine.dispose()
    med = {k: sorted(v)[1] for k, v in results.items()}
    lines = [
        f"### {label}: insert {rows:,} rows",
        "",
        "| variant | rows/s (median of 3, min-max) | vs " + baseline_name + " |",
        "|---|---|---|",
    ]
    for name, values in results.items():
        lines.append(
            f"| {name} | {med[name]:,.0f} ({min(values):,.0f}-{max(values):,.0f}) | "
            f"{med[name] / med[baseline_name]:.2f} |"
        )
    return "\n".join(lines) + "\n"


async def postgres(args: argparse.Namespace) -> str:
    dsn, drop = await _pg_database()
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2)
    try:

        async def raw(sql: str, params: list[object]) -> object:
            async with pool.acquire() as conn:
                return await conn.fetch(sql.replace("{p}", "$1"), *params)

        out = [
            await read_scenarios(url, raw, calls=args.calls, rounds=args.rounds, label="PostgreSQL")
        ]
        columns = ["name", "price_cents", "category", "created_at", "updated_at"]

        async def copy(data: list[dict[str, object]]) -> None:
            async with pool.acquire() as conn:
                await conn.copy_records_to_table(
                    "item", records=[tuple(r[c] for c in columns) for r in data], columns=columns
                )

        out.append(
            await bulk_scenario(
                url, copy, rows=args.rows, label="PostgreSQL", baseline_name="copy_records_to_table"
            )
        )
        return "\n".join(out)
    finally:
        await pool.close()
        await drop()


async def sqlite(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        url = f"sqlite+aiosqlite:///{path}"
        conn = await aiosqlite.connect(path)
        async with conn.execute("PRAGMA journal_mode=WAL"):
            pass  # close the cursor: an open statement would hold a read lock
        try:

            async def raw(sql: str, params: list[object]) -> object:
                async with conn.execute(sql.replace("{p}", "?"), params) as cur:
                    return await cur.fetchall()

            out = [
                await read_scenarios(url, raw, calls=args.calls, rounds=args.rounds, label="SQLite")
            ]
            columns = ["name", "price_cents", "category", "created_at", "updated_at"]

            async def executemany(data: list[dict[str, object]]) -> None:
                await conn.executemany(
                    f"INSERT INTO item ({', '.join(columns)}) VALUES (?, ?, ?, ?, ?)",
                    [
                        tuple(str(r[c]) if c.endswith("_at") else r[c] for c in columns)
                        for r in data
                    ],
                )
                await conn.commit()

            out.append(
                await bulk_scenario(
                    url, executemany, rows=args.rows, label="SQLite", baseline_name="executemany"
                )
            )
            return "\n".join(out)
        finally:
            await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--only", choices=["postgresql", "sqlite"])
    args = parser.parse_args()
    if args.only != "sqlite":
        print(await postgres(args))
    if args.only != "postgresql":
        print(await sqlite(args))


if __name__ == "__main__":
    asyncio.run(main())
