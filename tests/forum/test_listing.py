"""Listings: visibility, filters, order, offset and cursor pages, tags, and no N+1."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncConnection

from agora.db.pytest_plugin import CountQueries
from agora.db.uow import UnitOfWork
from agora.models.forum import Post
from agora.models.user import User
from tests.forum.builders import make_post
from tests.members.builders import make_user

URL = "/api/v1/posts"


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.text
    return [post["id"] for post in response.json()["items"]]


@pytest.fixture
async def posts(uow: UnitOfWork, alice: User, bob: User) -> dict[str, Post]:
    return {
        "alice_public": await make_post(uow, author=alice, tags=["news"]),
        "alice_draft": await make_post(uow, author=alice, is_published=False, tags=["news"]),
        "bob_public": await make_post(uow, author=bob),
        "bob_draft": await make_post(uow, author=bob, is_published=False),
    }


async def test_drafts_are_visible_to_their_author_and_superusers_only(
    client: AsyncClient,
    posts: dict[str, Post],
    alice: User,
    as_alice: dict[str, str],
    as_bob: dict[str, str],
    as_admin: dict[str, str],
) -> None:
    draft = posts["alice_draft"]
    for path in (f"{URL}/{draft.id}", f"{URL}/by-slug/{draft.slug}"):
        assert (await client.get(path)).status_code == 404
        assert (await client.get(path, headers=as_bob)).json()["error"] == "PostNotFound"
        assert (await client.get(path, headers=as_alice)).status_code == 200
        assert (await client.get(path, headers=as_admin)).status_code == 200
    # Writing to a draft one cannot see is a 404 too: its existence is not revealed.
    assert (await client.patch(f"{URL}/{draft.id}", json={}, headers=as_bob)).status_code == 404
    assert (await client.delete(f"{URL}/{draft.id}", headers=as_bob)).status_code == 404

    public = {posts["alice_public"].id, posts["bob_public"].id}
    assert set(ids(await client.get(URL))) == public
    assert set(ids(await client.get(URL, headers=as_bob))) == public | {posts["bob_draft"].id}
    assert set(ids(await client.get(URL, headers=as_admin))) == {p.id for p in posts.values()}
    user_posts = f"/api/v1/users/{alice.id}/posts"
    assert ids(await client.get(user_posts)) == [posts["alice_public"].id]
    assert set(ids(await client.get(user_posts, headers=as_alice))) == {
        posts["alice_public"].id,
        draft.id,
    }


async def test_filters(
    client: AsyncClient, posts: dict[str, Post], bob: User, as_alice: dict[str, str]
) -> None:
    assert ids(await client.get(URL, params={"author_id": bob.id})) == [posts["bob_public"].id]
    news = await client.get(URL, params={"tag": "NEWS"}, headers=as_alice)
    assert set(ids(news)) == {posts["alice_public"].id, posts["alice_draft"].id}
    drafts = await client.get(URL, params={"published": False}, headers=as_alice)
    assert ids(drafts) == [posts["alice_draft"].id]
    assert ids(await client.get(URL, params={"published": False})) == []
    assert ids(await client.get(URL, params={"tag": "nothing"})) == []


@pytest.mark.parametrize(
    "params",
    [
        {"author_id": 0},
        {"author_id": 2**31},
        {"tag": "has space"},
        {"tag": "x" * 51},
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"offset": 10_001},
        {"offset": 0, "cursor": ""},
        {"order_by": "title"},
    ],
)
async def test_bad_query_parameters_are_422(client: AsyncClient, params: dict[str, Any]) -> None:
    assert (await client.get(URL, params=params)).status_code == 422


async def test_a_forged_cursor_is_400(client: AsyncClient) -> None:
    response = await client.get(URL, params={"cursor": "not-a-cursor"})
    assert (response.status_code, response.json()["error"]) == (400, "InvalidCursor")


async def test_newest_first_by_publication_and_drafts_on_top_for_their_author(
    client: AsyncClient, uow: UnitOfWork, alice: User, as_alice: dict[str, str]
) -> None:
    old = await make_post(uow, author=alice, published_ago=timedelta(days=3))
    new = await make_post(uow, author=alice, published_ago=timedelta(days=1))
    middle = await make_post(uow, author=alice, published_ago=timedelta(days=2))
    draft = await make_post(uow, author=alice, is_published=False)
    assert ids(await client.get(URL)) == [new.id, middle.id, old.id]
    assert ids(await client.get(URL, headers=as_alice)) == [draft.id, new.id, middle.id, old.id]
    oldest = await client.get(URL, params={"order_by": "published_at"}, headers=as_alice)
    assert ids(oldest) == [old.id, middle.id, new.id, draft.id]
    created = await client.get(URL, params={"order_by": "-created_at"})
    assert ids(created) == [middle.id, new.id, old.id]


@pytest.mark.parametrize("order_by", ["-published_at", "published_at", "-created_at"])
async def test_offset_and_cursor_pages_agree(
    client: AsyncClient,
    uow: UnitOfWork,
    alice: User,
    as_alice: dict[str, str],
    order_by: str,
) -> None:
    for i in range(12):
        await make_post(uow, author=alice, is_published=i % 3 != 0, published_ago=timedelta(i % 5))
    everything = ids(
        await client.get(URL, params={"limit": 100, "order_by": order_by}, headers=as_alice)
    )
    assert len(everything) == 12
    by_cursor: list[int] = []
    cursor = ""
    while cursor is not None:
        params: dict[str, str | int] = {"limit": 5, "cursor": cursor, "order_by": order_by}
        page = (await client.get(URL, params=params, headers=as_alice)).json()
        assert set(page) == {"items", "next_cursor", "prev_cursor", "limit"}
        by_cursor += [post["id"] for post in page["items"]]
        cursor = page["next_cursor"]
    assert by_cursor == everything
    by_offset: list[int] = []
    for offset in range(0, 12, 5):
        params = {"limit": 5, "offset": offset, "order_by": order_by}
        page = (await client.get(URL, params=params, headers=as_alice)).json()
        assert page["total"] == 12
        by_offset += [post["id"] for post in page["items"]]
    assert by_offset == everything


@pytest.mark.parametrize("paging", [{"offset": 0}, {"cursor": ""}], ids=["offset", "cursor"])
async def test_a_page_of_100_posts_with_authors_and_tags_is_3_statements(
    client: AsyncClient,
    uow: UnitOfWork,
    connection: AsyncConnection,
    count_queries: CountQueries,
    paging: dict[str, Any],
) -> None:
    authors = [await make_user(uow) for _ in range(5)]
    for i in range(105):  # more than a page: the offset listing must also count
        author = authors[i % 5]
        await make_post(uow, author=author, tags=[f"t{i % 7}", f"u{i % 3}", "all"])
    async with count_queries(connection) as q:
        response = await client.get(URL, params={"limit": 100, **paging})
    assert response.status_code == 200
    items = response.json()["items"]
    assert len(items) == 100
    assert all(post["author"]["username"] and len(post["tags"]) == 3 for post in items)
    assert q.count <= 3, q.statements


async def test_tags_count_visible_posts_most_used_first(
    client: AsyncClient, uow: UnitOfWork, alice: User, as_alice: dict[str, str]
) -> None:
    await make_post(uow, author=alice, tags=["python", "sql"])
    await make_post(uow, author=alice, tags=["python"])
    await make_post(uow, author=alice, tags=["python", "secret"], is_published=False)
    gone = await make_post(uow, author=alice, tags=["python", "sql", "deleted"])
    assert (await client.delete(f"{URL}/{gone.id}", headers=as_alice)).status_code == 204
    page = (await client.get("/api/v1/tags")).json()
    assert page["items"] == [{"name": "python", "post_count": 2}, {"name": "sql", "post_count": 1}]
    assert page["total"] == 2
    second = (await client.get("/api/v1/tags", params={"limit": 1, "offset": 1})).json()
    assert (second["items"], second["total"], second["has_more"]) == (
        [{"name": "sql", "post_count": 1}],
        2,
        False,
    )
    assert (await client.get("/api/v1/tags", params={"limit": 500})).status_code == 422


async def test_user_posts_of_an_unknown_user_is_404(client: AsyncClient) -> None:
    response = await client.get("/api/v1/users/999999/posts")
    assert (response.status_code, response.json()["error"]) == (404, "UserNotFound")
    assert (await client.get("/api/v1/users/0/posts")).status_code == 422
