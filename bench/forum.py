"""A page of 20 posts with authors and tags through HTTP, on a large PostgreSQL forum.

    uv run python -m bench.forum [--posts 200000] [--rounds 7] [--calls 20]

Builds a throwaway database (migrated with the real migrations, filled with COPY), then
measures `GET /api/v1/posts` through the whole application in-process (httpx + ASGI
transport: routing, dependencies, SQL, serialization; no sockets):

* the first page (cursor mode, no count) and the first page in offset mode (with its total);
* a cursor page at the deepest position (the last page of the listing);
* an offset page at depth 10 000 (the deepest offset the API allows).

Prints a Markdown table of medians and the ratio of each to the first page. The issue's
target is 1M posts (`--posts 1000000`, a few minutes to build); the default builds in well
under two minutes. Set `BENCH_POSTGRES_URL` to the server (default: local, user postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
from alembic import command
from httpx import ASGITransport, AsyncClient
from itsdangerous import URLSafeSerializer

from agora.app import create_app
from agora.config import Settings
from agora.db.cursors import CURSOR_SALT, CursorCodec, Position
from agora.db.engine import make_engine
from agora.db.session import Database
from agora.migrate import alembic_config

PG_SERVER = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "bench-secret-bench-secret-bench-secret"  # noqa: S105 - a throwaway database
PAGE = 20
OFFSET_DEPTH = 10_000
WORDS = [f"w{n:04d}" for n in range(3000)] + ["rust", "python", "async", "forum", "market"]


@asynccontextmanager
async def throwaway_database(server: str) -> AsyncIterator[str]:
    name = f"agora_bench_forum_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(server)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        conn = await asyncpg.connect(server)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def fill(dsn: str, *, posts: int, users: int, tags: int, tags_per_post: int) -> float:
    """COPY users, tags, posts and post_tag rows; return the seconds it took."""
    started = time.perf_counter()
    rng = random.Random(42)
    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "user",
            columns=[
                "username",
                "email",
                "full_name",
                "hashed_password",
                "created_at",
                "updated_at",
            ],
            records=[
                (f"user{i}", f"user{i}@example.com", f"User {i}", "x", now, now)
                for i in range(users)
            ],
        )
        await conn.copy_records_to_table(
            "tag", columns=["name"], records=[(f"tag{i}",) for i in range(tags)]
        )
        user_ids = [r[0] for r in await conn.fetch('SELECT id FROM "user" ORDER BY id')]
        tag_ids = [r[0] for r in await conn.fetch("SELECT id FROM tag ORDER BY id")]
        batch = 50_000
        for start in range(0, posts, batch):
            rows = []
            for i in range(start, min(posts, start + batch)):
                at = now - timedelta(seconds=posts - i)  # newest last inserted
                content = " ".join(rng.choices(WORDS, k=60))
                title = " ".join(rng.choices(WORDS, k=5))
                rows.append((title, f"post-{i}", content, True, at, rng.choice(user_ids), at, at))
            await conn.copy_records_to_table(
                "post",
                columns=[
                    "title",
                    "slug",
                    "content",
                    "is_published",
                    "published_at",
                    "author_id",
                    "created_at",
                    "updated_at",
                ],
                records=rows,
            )
        post_ids = [r[0] for r in await conn.fetch("SELECT id FROM post")]
        links = [
            (post_id, tag_id)
            for post_id in post_ids
            for tag_id in rng.sample(tag_ids, k=min(tags_per_post, len(tag_ids)))
        ]
        await conn.copy_records_to_table("post_tag", columns=["post_id", "tag_id"], records=links)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def deepest_cursor(dsn: str, first_page_cursor: str, *, posts: int) -> str:
    """A cursor whose next page is the listing's last page (as if every page was walked).

    It is signed like the server's: the fingerprint of the ordering is read from a real
    cursor, and the position is the row just before the last page.
    """
    fingerprint = URLSafeSerializer(SECRET, salt=CURSOR_SALT).loads(first_page_cursor)["f"]
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT published_at, id FROM post WHERE is_published AND deleted_at IS NULL "
            "ORDER BY published_at DESC NULLS FIRST, id DESC OFFSET $1 LIMIT 1",
            max(0, posts - PAGE - 1),
        )
    finally:
        await conn.close()
    assert row is not None
    values = (row["published_at"].astimezone(UTC), row["id"])
    return CursorCodec(SECRET).encode(Position(values, backwards=False), fingerprint)


async def measure(
    variants: list[tuple[str, Callable[[], Awaitable[None]]]], *, rounds: int, calls: int
) -> dict[str, list[float]]:
    """Per-call seconds, one median per round; variants interleaved so drift hits all alike."""
    results: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _name, fn in variants:  # warm up connections, caches and plans
        for _ in range(3):
            await fn()
    for _ in range(rounds):
        for name, fn in variants:
            timings = []
            for _ in range(calls):
                started = time.perf_counter()
                await fn()
                timings.append(time.perf_counter() - started)
            results[name].append(statistics.median(timings))
    return results


def report(results: dict[str, list[float]], *, posts: int, build_seconds: float) -> str:
    first = statistics.median(results["first page (cursor)"])
    lines = [
        f"### GET /api/v1/posts, {PAGE} posts with authors and tags, {posts:,} posts "
        f"(built in {build_seconds:.0f} s)",
        "",
        "| page | median ms | min-max of round medians | vs first page |",
        "|---|---|---|---|",
    ]
    for name, values in results.items():
        median = statistics.median(values)
        lines.append(
            f"| {name} | {median * 1e3:.2f} | {min(values) * 1e3:.2f}-{max(values) * 1e3:.2f} "
            f"| {median / first:.2f}x |"
        )
    deep = statistics.median(results["deepest cursor page"])
    lines += ["", f"deep cursor / first page: **{deep / first:.2f}x** (goal: <= 1.5x)"]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> str:
    async with throwaway_database(args.server) as dsn:
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        # env.py runs its own event loop: Alembic goes to a worker thread.
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
        build = await fill(dsn, posts=args.posts, users=args.users, tags=args.tags, tags_per_post=3)
        settings = Settings(database_url=url, env="test", secret_key=SECRET)
        database = Database(make_engine(url, pool_size=5))
        app = create_app(settings, database=database)
        try:
            transport = ASGITransport(app=app)
            async with AsyncClient(transport=transport, base_url="http://bench") as http:
                return await _measure_http(http, dsn, args, build)
        finally:
            await app.state.members.aclose()
            await database.dispose()


async def _measure_http(http: AsyncClient, dsn: str, args: argparse.Namespace, build: float) -> str:
    async def get(**params: str | int) -> None:
        response = await http.get("/api/v1/posts", params={"limit": PAGE, **params})
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == PAGE

    first = await http.get("/api/v1/posts", params={"limit": PAGE, "cursor": ""})
    deep = await deepest_cursor(dsn, first.json()["next_cursor"], posts=args.posts)
    depth = min(OFFSET_DEPTH, args.posts - PAGE)

    async def first_cursor() -> None:
        await get(cursor="")

    async def first_offset() -> None:
        await get(offset=0)

    async def deep_cursor() -> None:
        await get(cursor=deep)

    async def deep_offset() -> None:
        await get(offset=depth)

    results = await measure(
        [
            ("first page (cursor)", first_cursor),
            ("first page (offset, with total)", first_offset),
            ("deepest cursor page", deep_cursor),
            (f"offset {depth:,} (with total)", deep_offset),
        ],
        rounds=args.rounds,
        calls=args.calls,
    )
    return report(results, posts=args.posts, build_seconds=build)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--posts", type=int, default=200_000, help="posts to create (1M: the issue's target)"
    )
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20, help="requests per variant per round")
    parser.add_argument("--server", default=PG_SERVER, help="PostgreSQL server (any database)")
    args = parser.parse_args()
    if args.posts < PAGE + 1:
        parser.error(f"--posts must be more than {PAGE}")
    print(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
