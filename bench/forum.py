"""S3: a page of 20 posts with authors and tags, on a large PostgreSQL forum.

Run through the harness: `uv run python -m bench s3 [--posts N]`. Builds (or reuses, see
`forum_database`) a database migrated with the real migrations and filled with COPY, then
measures `GET /api/v1/posts` through the whole application in-process (httpx + ASGI
transport: routing, dependencies, SQL, serialization; no sockets):

* the first page (cursor mode, no count) and the first page in offset mode (with its total);
* a cursor page at the deepest position (the last page of the listing);
* an offset page at depth 10 000 (the deepest offset the API allows).

Returns a Markdown table of medians and the ratio of each to the first page.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from alembic import command
from alembic.script import ScriptDirectory
from httpx import ASGITransport, AsyncClient
from itsdangerous import URLSafeSerializer
from sqlalchemy.engine import URL

from agora.app import create_app
from agora.config import Settings
from agora.db.cursors import CURSOR_SALT, CursorCodec, Position
from agora.db.engine import make_engine
from agora.db.session import Database
from agora.migrate import alembic_config

SECRET = "bench-secret-bench-secret-bench-secret"  # noqa: S105 - a throwaway database
PAGE = 20
OFFSET_DEPTH = 10_000
WORDS = [f"w{n:04d}" for n in range(3000)] + ["rust", "python", "async", "forum", "market"]


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


@dataclass(frozen=True)
class ForumResult:
    lines: list[str]
    deep_over_first: float


def report(results: dict[str, list[float]], *, posts: int, build: str) -> ForumResult:
    first = statistics.median(results["first page (cursor)"])
    lines = [
        f"{posts:,} posts ({build}), 20 per page with authors and tags. Timed in process "
        "(httpx + ASGI transport: routing, dependencies, SQL, serialization; no sockets, no "
        "wrk): what is compared is one page against another, not against a baseline.",
        "",
        "| page | median ms per round | median ms | min-max of round medians | vs first page |",
        "|---|---|---|---|---|",
    ]
    for name, values in results.items():
        median = statistics.median(values)
        per_round = ", ".join(f"{v * 1e3:.2f}" for v in values)
        lines.append(
            f"| {name} | {per_round} | {median * 1e3:.2f} | {min(values) * 1e3:.2f}-"
            f"{max(values) * 1e3:.2f} | {median / first:.2f}x |"
        )
    deep = statistics.median(results["deepest cursor page"])
    return ForumResult(lines, deep / first)


def _dsn(server: URL, database: str) -> str:
    return server.set(drivername="postgresql", database=database).render_as_string(
        hide_password=False
    )


def _fingerprint(posts: int, users: int, tags: int) -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    return f"agora-bench forum posts={posts} users={users} tags={tags} head={head} v1"


@asynccontextmanager
async def forum_database(
    server: URL, *, posts: int, users: int, tags: int, cache: bool
) -> AsyncIterator[tuple[str, str]]:
    """A migrated, filled forum database: (dsn, how it was obtained).

    With `cache`, the database `agora_bench_forum_<posts>` is kept and reused by the next run
    when its comment records the same parameters and migration head; otherwise it is
    rebuilt. Without, a throwaway database is built and dropped.
    """
    name = f"agora_bench_forum_{posts}" if cache else f"agora_bench_forum_{uuid.uuid4().hex[:8]}"
    fingerprint = _fingerprint(posts, users, tags)
    admin = await asyncpg.connect(_dsn(server, "postgres"))
    try:
        found = await admin.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            name,
        )
        reuse = cache and found == fingerprint
        if not reuse:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = _dsn(server, name)
    try:
        if reuse:
            how = "cached database reused"
        else:
            url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
            # env.py runs its own event loop: Alembic goes to a worker thread.
            await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
            seconds = await fill(dsn, posts=posts, users=users, tags=tags, tags_per_post=3)
            how = f"built with COPY in {seconds:.0f} s"
            if cache:
                admin = await asyncpg.connect(_dsn(server, "postgres"))
                try:
                    literal = fingerprint.replace("'", "''")
                    await admin.execute(f"COMMENT ON DATABASE \"{name}\" IS '{literal}'")
                finally:
                    await admin.close()
        yield dsn, how
    finally:
        if not cache:
            admin = await asyncpg.connect(_dsn(server, "postgres"))
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()


async def scenario(
    server: URL,
    *,
    posts: int,
    rounds: int,
    calls: int = 20,
    users: int = 1000,
    tags: int = 200,
    cache: bool = True,
) -> ForumResult:
    """S3: first page, deepest cursor page and offset 10 000 of `GET /api/v1/posts`."""
    if posts < PAGE + 1:
        raise ValueError(f"S3 needs more than {PAGE} posts")
    async with forum_database(server, posts=posts, users=users, tags=tags, cache=cache) as (
        dsn,
        how,
    ):
        url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
        settings = Settings(database_url=url, env="test", secret_key=SECRET)
        database = Database(make_engine(url, pool_size=5))
        app = create_app(settings, database=database)
        try:
            transport = ASGITransport(app=app)
            async with AsyncClient(transport=transport, base_url="http://bench") as http:
                results = await _measure_http(http, dsn, posts=posts, rounds=rounds, calls=calls)
        finally:
            await app.state.members.aclose()
            await database.dispose()
    return report(results, posts=posts, build=how)


async def _measure_http(
    http: AsyncClient, dsn: str, *, posts: int, rounds: int, calls: int
) -> dict[str, list[float]]:
    async def get(**params: str | int) -> None:
        response = await http.get("/api/v1/posts", params={"limit": PAGE, **params})
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == PAGE

    first = await http.get("/api/v1/posts", params={"limit": PAGE, "cursor": ""})
    deep = await deepest_cursor(dsn, first.json()["next_cursor"], posts=posts)
    depth = min(OFFSET_DEPTH, posts - PAGE)

    async def first_cursor() -> None:
        await get(cursor="")

    async def first_offset() -> None:
        await get(offset=0)

    async def deep_cursor() -> None:
        await get(cursor=deep)

    async def deep_offset() -> None:
        await get(offset=depth)

    return await measure(
        [
            ("first page (cursor)", first_cursor),
            ("first page (offset, with total)", first_offset),
            ("deepest cursor page", deep_cursor),
            (f"offset {depth:,} (with total)", deep_offset),
        ],
        rounds=rounds,
        calls=calls,
    )
