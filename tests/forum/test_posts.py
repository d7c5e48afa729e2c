"""Posts through HTTP: create, read, update, delete, validation and authorization."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from agora.db.uow import UnitOfWork
from agora.models.forum import CONTENT_MAX, TITLE_MAX
from agora.models.user import User
from tests.forum.builders import make_post

URL = "/api/v1/posts"


async def test_create_returns_the_post_with_slug_tags_author_and_etag(
    client: AsyncClient, alice: User, as_alice: dict[str, str]
) -> None:
    body = {"title": "  Héllo, World!  ", "content": "Body", "tags": ["Python", "sql", "python"]}
    response = await client.post(URL, json=body, headers=as_alice)
    assert response.status_code == 201, response.text
    post = response.json()
    assert post["title"] == "Héllo, World!"
    assert post["slug"] == "hello-world"
    assert post["tags"] == ["python", "sql"]  # lower case, once each, by name
    assert post["author"] == {
        "id": alice.id,
        "username": alice.username,
        "full_name": alice.full_name,
    }
    assert post["is_published"] is True
    assert post["published_at"] is not None
    assert post["version"] == 1
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"{URL}/{post['id']}"


async def test_a_draft_has_no_publication_time(
    client: AsyncClient, as_alice: dict[str, str]
) -> None:
    response = await client.post(
        URL, json={"title": "Draft", "is_published": False}, headers=as_alice
    )
    assert response.status_code == 201
    assert response.json()["published_at"] is None


async def test_creating_needs_a_token(client: AsyncClient) -> None:
    response = await client.post(URL, json={"title": "Anonymous"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "body",
    [
        {"title": ""},
        {"title": "   "},
        {"title": "x" * (TITLE_MAX + 1)},
        {"title": "nul\x00"},
        {"title": "ok", "content": "x" * (CONTENT_MAX + 1)},
        {"title": "ok", "content": "a\x00b"},
        {"title": "ok", "tags": ["has space"]},
        {"title": "ok", "tags": ["x" * 51]},
        {"title": "ok", "tags": [""]},
        {"title": "ok", "tags": [f"t{i}" for i in range(11)]},
        {"title": "ok", "author_id": 1},
        {"title": "ok", "slug": "chosen"},
        {"title": "ok", "version": 7},
    ],
    ids=[
        "empty-title",
        "blank-title",
        "long-title",
        "nul-title",
        "long-content",
        "nul-content",
        "tag-with-space",
        "long-tag",
        "empty-tag",
        "eleven-tags",
        "author-id",
        "slug",
        "version",
    ],
)
async def test_invalid_bodies_are_422(
    client: AsyncClient, as_alice: dict[str, str], body: dict[str, Any]
) -> None:
    response = await client.post(URL, json=body, headers=as_alice)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "ValidationError"


async def test_the_longest_content_is_accepted(
    client: AsyncClient, as_alice: dict[str, str]
) -> None:
    body = {"title": "Long", "content": "é" * CONTENT_MAX}
    response = await client.post(URL, json=body, headers=as_alice)
    assert response.status_code == 201
    assert len(response.json()["content"]) == CONTENT_MAX


async def test_read_by_id_and_by_slug(client: AsyncClient, uow: UnitOfWork, alice: User) -> None:
    post = await make_post(uow, author=alice, title="Read me", tags=["a"])
    by_id = await client.get(f"{URL}/{post.id}")
    by_slug = await client.get(f"{URL}/by-slug/read-me")
    assert by_id.status_code == by_slug.status_code == 200
    assert by_id.json() == by_slug.json()
    assert by_id.headers["ETag"] == '"1"'
    assert (await client.get(f"{URL}/by-slug/nope")).status_code == 404
    assert (await client.get(f"{URL}/999999")).json()["error"] == "PostNotFound"


@pytest.mark.parametrize("post_id", ["0", "-1", str(2**31), "99999999999999999999", "abc"])
async def test_ids_outside_the_column_range_are_422(client: AsyncClient, post_id: str) -> None:
    assert (await client.get(f"{URL}/{post_id}")).status_code == 422


async def test_a_slug_path_with_odd_characters_is_422_not_500(client: AsyncClient) -> None:
    for slug in ("UPPER", "a%00b", "x" * 221, "a b"):
        assert (await client.get(f"{URL}/by-slug/{slug}")).status_code == 422


async def test_author_updates_fields_and_the_slug_stays(
    client: AsyncClient, uow: UnitOfWork, alice: User, as_alice: dict[str, str]
) -> None:
    post = await make_post(uow, author=alice, title="First title", tags=["old"])
    response = await client.patch(
        f"{URL}/{post.id}",
        json={"title": "Second title", "content": "new", "tags": ["New", "other"]},
        headers=as_alice,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["title"], body["content"], body["slug"]) == ("Second title", "new", "first-title")
    assert body["tags"] == ["new", "other"]
    assert body["version"] == 2
    assert response.headers["ETag"] == '"2"'


async def test_changing_only_tags_moves_the_version(
    client: AsyncClient, uow: UnitOfWork, alice: User, as_alice: dict[str, str]
) -> None:
    post = await make_post(uow, author=alice, tags=["a"])
    response = await client.patch(f"{URL}/{post.id}", json={"tags": []}, headers=as_alice)
    assert (response.json()["tags"], response.json()["version"]) == ([], 2)


async def test_the_slug_changes_when_asked_and_must_be_free(
    client: AsyncClient, uow: UnitOfWork, alice: User, as_alice: dict[str, str]
) -> None:
    post = await make_post(uow, author=alice, title="One")
    await make_post(uow, author=alice, title="Two")
    renamed = await client.patch(f"{URL}/{post.id}", json={"slug": "uno"}, headers=as_alice)
    assert renamed.json()["slug"] == "uno"
    taken = await client.patch(f"{URL}/{post.id}", json={"slug": "two"}, headers=as_alice)
    assert (taken.status_code, taken.json()["error"]) == (409, "SlugTaken")
    bad = await client.patch(f"{URL}/{post.id}", json={"slug": "Not A Slug"}, headers=as_alice)
    assert bad.status_code == 422


async def test_publishing_sets_and_unpublishing_clears_published_at(
    client: AsyncClient, uow: UnitOfWork, alice: User, as_alice: dict[str, str]
) -> None:
    post = await make_post(uow, author=alice, is_published=False)
    published = await client.patch(
        f"{URL}/{post.id}", json={"is_published": True}, headers=as_alice
    )
    assert published.json()["published_at"] is not None
    hidden = await client.patch(f"{URL}/{post.id}", json={"is_published": False}, headers=as_alice)
    assert hidden.json()["published_at"] is None


@pytest.mark.parametrize("body", [{"title": None}, {"tags": None}, {"id": 3}, {"author_id": 2}])
async def test_update_refuses_nulls_and_unknown_fields(
    client: AsyncClient,
    uow: UnitOfWork,
    alice: User,
    as_alice: dict[str, str],
    body: dict[str, Any],
) -> None:
    post = await make_post(uow, author=alice)
    assert (await client.patch(f"{URL}/{post.id}", json=body, headers=as_alice)).status_code == 422


async def test_others_cannot_update_or_delete_but_a_superuser_can(
    client: AsyncClient,
    uow: UnitOfWork,
    alice: User,
    as_bob: dict[str, str],
    as_admin: dict[str, str],
) -> None:
    post = await make_post(uow, author=alice, title="Alice's")
    refused = await client.patch(f"{URL}/{post.id}", json={"title": "Bob's"}, headers=as_bob)
    assert (refused.status_code, refused.json()["error"]) == (403, "NotPostAuthor")
    assert (await client.delete(f"{URL}/{post.id}", headers=as_bob)).status_code == 403
    assert (await client.patch(f"{URL}/{post.id}", json={"title": "x"})).status_code == 401
    assert (await client.get(f"{URL}/{post.id}")).json()["title"] == "Alice's"
    admin = await client.patch(f"{URL}/{post.id}", json={"title": "Moderated"}, headers=as_admin)
    assert admin.status_code == 200
    assert admin.json()["author"]["id"] == alice.id
    assert (await client.delete(f"{URL}/{post.id}", headers=as_admin)).status_code == 204


async def test_delete_is_soft_and_the_slug_stays_taken(
    client: AsyncClient, uow: UnitOfWork, alice: User, as_alice: dict[str, str]
) -> None:
    post = await make_post(uow, author=alice, title="Gone soon")
    response = await client.delete(f"{URL}/{post.id}", headers=as_alice)
    assert response.status_code == 204
    assert (await client.get(f"{URL}/{post.id}")).status_code == 404
    assert (await client.get(f"{URL}/by-slug/gone-soon")).status_code == 404
    assert (await client.delete(f"{URL}/{post.id}", headers=as_alice)).status_code == 404
    again = await client.post(URL, json={"title": "Gone soon"}, headers=as_alice)
    assert again.json()["slug"] == "gone-soon-2"


async def test_a_deleted_authors_posts_show_no_author(
    client: AsyncClient,
    uow: UnitOfWork,
    alice: User,
    as_alice: dict[str, str],
) -> None:
    post = await make_post(uow, author=alice)
    assert (await client.delete(f"/api/v1/users/{alice.id}", headers=as_alice)).status_code == 204
    response = await client.get(f"{URL}/{post.id}")
    assert response.status_code == 200
    assert (response.json()["author"], response.json()["author_id"]) == (None, alice.id)
    assert (await client.get(f"/api/v1/users/{alice.id}/posts")).status_code == 404
