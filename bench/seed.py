"""S5: `agora seed` loading speed vs raw `asyncpg.copy_records_to_table` of the same rows.

Run through the harness: `uv run python -m bench s5`.

Each round loads the same plan (users, products, orders and, from them, order items and
credit transfers) into fresh migrated PostgreSQL databases, A B A B: **agora seed** is
`agora.seed.seed()` as the CLI runs it (planning pass, row generation, COPY, sequence reset,
one transaction); **raw COPY** sends the very same rows, generated beforehand and held in
memory (its time is the COPY alone), with `copy_records_to_table`, one call per table, in one
transaction. Rows/s counts every row written. Then the SQLite rows/s of `agora seed` alone.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from tests.support.databases import upgrade

from agora.db.engine import make_engine
from agora.seed import (
    COLUMNS,
    LOADERS,
    Batch,
    Context,
    SeedPlan,
    demo_password_hash,
    epoch_for,
    prepare,
    seed,
)
from bench.data_layer import _pg_database

HASH = demo_password_hash(1, memory_kib=19_456, time_cost=2, parallelism=1)


def plan_for(rows: int, seed_value: int = 1) -> SeedPlan:
    # ~ 1 user : 1 product : 2 orders, which gives ~5 items per user and ~4.5 transfers:
    # about 14.5 rows per user in all.
    users = max(2, int(rows / 14.5))
    return SeedPlan(users=users, products=users, orders=2 * users, seed=seed_value)


def generated_rows(plan: SeedPlan) -> dict[str, Batch]:
    """Every row `agora seed` writes into an empty database, in memory, per table."""
    ctx = Context(plan, dict.fromkeys(COLUMNS, 1), HASH, epoch_for(plan.seed))
    prepare(ctx)
    rows: dict[str, Batch] = {name: [] for name in COLUMNS}
    for loader in LOADERS:
        rows[loader.table].extend(loader.rows(ctx))
    return rows


async def _fresh_pg() -> tuple[str, Callable[[], Awaitable[None]]]:
    dsn, drop = await _pg_database()
    await upgrade(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    return dsn, drop


async def run_seed_pg(plan: SeedPlan) -> tuple[int, float]:
    dsn, drop = await _fresh_pg()
    engine = make_engine(dsn, statement_timeout_ms=0)
    try:
        t0 = time.perf_counter()
        written = await seed(engine, plan, password_hash=HASH)
        return sum(written.values()), time.perf_counter() - t0
    finally:
        await engine.dispose()
        await drop()


async def run_raw_pg(rows: dict[str, Batch]) -> tuple[int, float]:
    dsn, drop = await _fresh_pg()
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.perf_counter()
        async with conn.transaction():
            for table, records in rows.items():
                await conn.copy_records_to_table(table, records=records, columns=COLUMNS[table])
        return sum(map(len, rows.values())), time.perf_counter() - t0
    finally:
        await conn.close()
        await drop()


async def run_seed_sqlite(plan: SeedPlan) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'seed.db'}"
        await upgrade(url)
        engine = make_engine(url)
        try:
            t0 = time.perf_counter()
            written = await seed(engine, plan, password_hash=HASH)
            return sum(written.values()), time.perf_counter() - t0
        finally:
            await engine.dispose()


def _line(name: str, results: list[tuple[int, float]], base: float | None) -> str:
    rates = [n / s for n, s in results]
    median = statistics.median(rates)
    ratio = f"{median / base:.2f}" if base else "—"
    per_round = ", ".join(f"{r:,.0f}" for r in rates)
    return (
        f"| {name} | {results[0][0]:,} | {per_round} | {median:,.0f} ({min(rates):,.0f}-"
        f"{max(rates):,.0f}) | {ratio} |"
    )


@dataclass(frozen=True)
class SeedResult:
    lines: list[str]
    ratio: float  # agora seed / raw COPY, medians of rows/s (PostgreSQL)


async def scenario(rows: int, rounds: int) -> SeedResult:
    """S5: `agora seed` and raw COPY of the same plan, A B A B; then `agora seed` on SQLite."""
    plan = plan_for(rows)
    generated = generated_rows(plan)
    seeded: list[tuple[int, float]] = []
    raw: list[tuple[int, float]] = []
    for _ in range(rounds):  # A B A B ...
        seeded.append(await run_seed_pg(plan))
        raw.append(await run_raw_pg(generated))
    lite = [await run_seed_sqlite(plan) for _ in range(rounds)]
    base = statistics.median(n / s for n, s in raw)
    ratio = statistics.median(n / s for n, s in seeded) / base
    counts = ", ".join(f"{t} {len(r):,}" for t, r in generated.items())
    lines = [
        "Each round loads the same plan into two fresh migrated databases, A B A B: **agora "
        "seed** is `agora.seed.seed()` as the CLI runs it (planning, row generation, one "
        "streamed COPY per table, sequence reset, one transaction); **raw COPY** sends the "
        "very same rows, generated beforehand and held in memory, with "
        "`asyncpg.copy_records_to_table`, one call per table, one transaction. Every index "
        f"of the schema is in place. Rows per table: {counts}.",
        "",
        "| variant | rows | rows/s per round | rows/s median (min-max) | vs raw COPY |",
        "|---|---|---|---|---|",
        _line("raw copy_records_to_table (PostgreSQL)", raw, base),
        _line("agora seed (PostgreSQL)", seeded, base),
        _line("agora seed (SQLite, no baseline)", lite, None),
    ]
    return SeedResult(lines, ratio)
