"""Full-text search (`GET /posts?q=`): the same answers on PostgreSQL and SQLite."""

from __future__ import annotations

import pytest
from httpx import AsyncClient

from agora.db.uow import UnitOfWork
from agora.models.user import User
from tests.forum.builders import make_post

URL = "/api/v1/posts"


async def titles(
    client: AsyncClient, q: str, headers: dict[str, str] | None = None, **params: str | int
) -> list[str]:
    response = await client.get(URL, params={"q": q, "limit": 100, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return [post["title"] for post in response.json()["items"]]


@pytest.fixture
async def corpus(uow: UnitOfWork, alice: User) -> None:
    for title, content in [
        ("Async Rust", "Futures and executors; tokio is the usual runtime."),
        ("Rust ownership", "Borrowing rules explained without async."),
        ("Python asyncio", "Event loops and coroutines, compared with rust futures."),
        ("Green threads", "Goroutines are not async rust."),
        ("Gardening", "Tomatoes need sun."),
    ]:
        await make_post(uow, author=alice, title=title, content=content)


@pytest.mark.usefixtures("corpus")
async def test_words_are_all_required_case_insensitively(client: AsyncClient) -> None:
    assert set(await titles(client, "RUST Futures")) == {"Async Rust", "Python asyncio"}


@pytest.mark.usefixtures("corpus")
async def test_a_quoted_phrase_needs_the_words_in_order(client: AsyncClient) -> None:
    assert set(await titles(client, '"async rust"')) == {"Async Rust", "Green threads"}
    assert await titles(client, '"rust async"') == []


@pytest.mark.usefixtures("corpus")
async def test_excluded_words_and_phrases_remove_matches(client: AsyncClient) -> None:
    assert set(await titles(client, "rust -tokio")) == {
        "Rust ownership",
        "Python asyncio",
        "Green threads",
    }
    assert set(await titles(client, 'rust -"async rust"')) == {"Rust ownership", "Python asyncio"}


@pytest.mark.usefixtures("corpus")
async def test_or_gives_either(client: AsyncClient) -> None:
    assert set(await titles(client, "tomatoes or goroutines")) == {"Gardening", "Green threads"}
    assert set(await titles(client, "tomatoes OR borrowing rules")) == {
        "Gardening",
        "Rust ownership",
    }


@pytest.mark.usefixtures("corpus")
async def test_no_stemming_on_either_database(client: AsyncClient) -> None:
    assert await titles(client, "tomato") == []  # the content says "tomatoes"


async def test_a_title_match_ranks_above_a_content_match(
    client: AsyncClient, uow: UnitOfWork, alice: User
) -> None:
    # The title match is the older post: ties would put the newer one first.
    await make_post(uow, author=alice, title="Zebras", content="Something about notes here.")
    await make_post(uow, author=alice, title="Notes", content="Something about zebras here.")
    await make_post(uow, author=alice, title="Other notes", content="Nothing about it.")
    assert await titles(client, "zebras") == ["Zebras", "Notes"]


async def test_deleted_and_unpublished_posts_never_leak(
    client: AsyncClient,
    uow: UnitOfWork,
    alice: User,
    as_alice: dict[str, str],
    as_bob: dict[str, str],
    as_admin: dict[str, str],
) -> None:
    await make_post(uow, author=alice, title="Public platypus")
    draft = await make_post(uow, author=alice, title="Draft platypus", is_published=False)
    gone = await make_post(uow, author=alice, title="Deleted platypus")
    assert (await client.delete(f"{URL}/{gone.id}", headers=as_alice)).status_code == 204
    assert await titles(client, "platypus") == ["Public platypus"]
    assert await titles(client, "platypus", headers=as_bob) == ["Public platypus"]
    response = await client.get(URL, params={"q": "draft"}, headers=as_bob)
    assert response.json() == {"items": [], "total": 0, "offset": 0, "limit": 20, "has_more": False}
    # The author and superusers see the draft (as everywhere else); nobody sees the deleted.
    for headers in (as_alice, as_admin):
        found = await client.get(URL, params={"q": "platypus"}, headers=headers)
        assert {p["id"] for p in found.json()["items"]} >= {draft.id}
        assert gone.id not in {p["id"] for p in found.json()["items"]}


async def test_edits_and_deletes_reach_the_index(
    client: AsyncClient, uow: UnitOfWork, alice: User, as_alice: dict[str, str]
) -> None:
    post = await make_post(uow, author=alice, title="Before", content="walrus")
    edit = {"title": "After", "content": "narwhal"}
    assert (await client.patch(f"{URL}/{post.id}", json=edit, headers=as_alice)).status_code == 200
    assert await titles(client, "walrus") == []
    assert await titles(client, "narwhal") == ["After"]
    assert await titles(client, "after") == ["After"]


@pytest.mark.usefixtures("corpus")
@pytest.mark.parametrize(
    "q",
    [
        '"',
        '"unclosed',
        "NEAR(rust async)",
        "title:rust",
        "rust*",
        "^rust",
        "(rust",
        "rust AND",
        "NOT rust",
        "rust OR",
        "-",
        "--rust",
        "a'b\\c;--",
        "🦀 rust",
        "'); DROP TABLE post; --",
        "   ",
        "!!!",
        "-rust",
        "x" * 200,
    ],
)
async def test_hostile_queries_are_never_errors(client: AsyncClient, q: str) -> None:
    response = await client.get(URL, params={"q": q})
    assert response.status_code == 200, response.text


@pytest.mark.usefixtures("corpus")
async def test_only_exclusions_or_punctuation_find_nothing(client: AsyncClient) -> None:
    assert await titles(client, "-rust") == []
    assert await titles(client, "!!!") == []


async def test_search_length_and_nul_are_422(client: AsyncClient) -> None:
    assert (await client.get(URL, params={"q": "x" * 201})).status_code == 422
    assert (await client.get(URL, params={"q": "a\x00b"})).status_code == 422


async def test_search_pages_by_offset_through_every_result_once(
    client: AsyncClient, uow: UnitOfWork, alice: User
) -> None:
    for i in range(23):
        # Varying relevance: i extra occurrences of the word in the content.
        await make_post(uow, author=alice, title=f"Post {i}", content="otter " * (i % 4) + "x")
    await make_post(uow, author=alice, title="Unrelated", content="beaver")
    seen: list[int] = []
    offset = 0
    while True:
        response = await client.get(URL, params={"q": "otter", "limit": 5, "offset": offset})
        page = response.json()
        assert page["total"] == 17  # i % 4 == 0 has no otter
        seen += [post["id"] for post in page["items"]]
        if not page["has_more"]:
            break
        offset += 5
    assert len(seen) == len(set(seen)) == 17


async def test_search_refuses_cursor_paging(client: AsyncClient) -> None:
    response = await client.get(URL, params={"q": "rust", "cursor": ""})
    assert (response.status_code, response.json()["error"]) == (422, "SearchIsOffsetPaged")


async def test_search_combines_with_filters(
    client: AsyncClient, uow: UnitOfWork, alice: User, bob: User
) -> None:
    await make_post(uow, author=alice, title="Alice on llamas", tags=["animals"])
    await make_post(uow, author=bob, title="Bob on llamas")
    assert await titles(client, "llamas", author_id=bob.id) == ["Bob on llamas"]
    assert await titles(client, "llamas", tag="animals") == ["Alice on llamas"]
    user_posts = await client.get(f"/api/v1/users/{alice.id}/posts", params={"q": "llamas"})
    assert [p["title"] for p in user_posts.json()["items"]] == ["Alice on llamas"]
