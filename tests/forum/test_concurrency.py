"""Races decided by the database: same-title posts, shared new tags, concurrent edits.

Real separate connections and real commits (not the rolled-back test transaction), on the
migrated test database of each backend; the rows are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agora.app import create_app
from agora.config import Settings
from agora.db.session import Database
from agora.models.forum import Post, Tag
from agora.models.user import User
from tests.members.builders import auth, make_user
from tests.support.databases import committed_database as real_database

RACERS = 12
URL = "/api/v1/posts"


async def _cleanup(conn: AsyncConnection) -> None:  # posts, post_tag go by ON DELETE CASCADE
    await conn.execute(delete(User).where(User.username.like("forumracer%")))
    await conn.execute(delete(Tag).where(Tag.name.like("race-%")))


@pytest.fixture
async def committed_database(database_url: str) -> AsyncIterator[Database]:
    async with real_database(database_url, cleanup=_cleanup, connections=RACERS) as db:
        yield db


@pytest.fixture
async def racer(committed_database: Database) -> User:
    async with committed_database.uow() as uow:
        return await make_user(uow, username=f"forumracer{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def http(settings: Settings, committed_database: Database) -> AsyncIterator[AsyncClient]:
    app = create_app(settings, database=committed_database)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        yield client


async def test_concurrent_posts_with_one_title_all_get_distinct_slugs(
    http: AsyncClient, settings: Settings, racer: User
) -> None:
    headers = auth(settings, racer)
    title = f"Race {uuid.uuid4().hex[:6]}"

    async def create(_: int) -> tuple[int, str]:
        response = await http.post(URL, json={"title": title}, headers=headers)
        return response.status_code, response.json().get("slug", response.text)

    results = await asyncio.gather(*(create(n) for n in range(RACERS)))
    assert Counter(status for status, _ in results) == {201: RACERS}
    base = title.lower().replace(" ", "-")
    assert sorted(slug for _, slug in results) == sorted(
        [base] + [f"{base}-{n}" for n in range(2, RACERS + 1)]
    )


async def test_concurrent_posts_creating_the_same_new_tags_share_them(
    http: AsyncClient, settings: Settings, racer: User, committed_database: Database
) -> None:
    headers = auth(settings, racer)
    names = [f"race-{uuid.uuid4().hex[:6]}" for _ in range(3)]

    async def create(n: int) -> int:
        body = {"title": f"Tagged {n}", "tags": names[n % 3 :] + names[: n % 3]}
        return (await http.post(URL, json=body, headers=headers)).status_code

    assert await asyncio.gather(*(create(n) for n in range(RACERS))) == [201] * RACERS
    async with committed_database.uow(read_only=True) as uow:
        stored = await uow.session.scalar(select(func.count()).where(Tag.name.in_(names)))
    assert stored == 3
    listed = await http.get("/api/v1/tags", params={"limit": 100})
    counts = {t["name"]: t["post_count"] for t in listed.json()["items"] if t["name"] in names}
    assert counts == dict.fromkeys(names, RACERS)


async def test_concurrent_edits_with_one_etag_keep_exactly_one(
    http: AsyncClient, settings: Settings, racer: User, committed_database: Database
) -> None:
    headers = auth(settings, racer)
    created = await http.post(URL, json={"title": "Contended"}, headers=headers)
    post_id, etag = created.json()["id"], created.headers["ETag"]

    async def edit(n: int) -> int:
        body = {"title": f"Edit {n}"}
        response = await http.patch(
            f"{URL}/{post_id}", json=body, headers={**headers, "If-Match": etag}
        )
        return response.status_code

    statuses = await asyncio.gather(*(edit(n) for n in range(RACERS)))
    # One wins; the others saw version 1 either before (409 from the version column) or
    # after (412 from If-Match) the winner committed.
    assert statuses.count(200) == 1
    assert set(statuses) <= {200, 409, 412}
    async with committed_database.uow(read_only=True) as uow:
        post = await uow.session.get_one(Post, post_id)
    assert post.version == 2
    winner = statuses.index(200)
    assert post.title == f"Edit {winner}"
