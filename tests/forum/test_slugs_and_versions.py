"""Slugs (generation, collisions) and optimistic locking (ETag / If-Match, version column)."""

from __future__ import annotations

import re

import pytest
from httpx import AsyncClient

from agora.db.errors import StaleData
from agora.db.session import Database
from agora.db.uow import UnitOfWork
from agora.forum import service
from agora.forum.repository import PostRepository
from agora.forum.router import if_match_versions
from agora.forum.schemas import PostUpdate
from agora.forum.slugs import slugify, suffix_of
from agora.models.user import User
from tests.forum.builders import make_post

URL = "/api/v1/posts"


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Hello, World!", "hello-world"),
        ("  Crème brûlée à la maison ", "creme-brulee-a-la-maison"),
        ("C++ & Rust: 2 languages", "c-rust-2-languages"),
        ("日本語のタイトル", "post"),
        ("🦀", "post"),
        ("a" * 300, "a" * 208),
    ],
)
def test_slugify(title: str, slug: str) -> None:
    assert slugify(title) == slug


def test_suffix_of() -> None:
    assert suffix_of("post", "post") == 1
    assert suffix_of("post-7", "post") == 7
    assert suffix_of("post-x", "post") is None
    assert suffix_of("poster", "post") is None


async def test_same_titles_get_numbered_slugs(uow: UnitOfWork, alice: User, bob: User) -> None:
    slugs = [
        (await make_post(uow, author=author, title="Same Title")).slug
        for author in (alice, bob, alice)
    ]
    assert slugs == ["same-title", "same-title-2", "same-title-3"]
    other = await make_post(uow, author=alice, title="Same title 2")  # its own base is taken
    assert other.slug == "same-title-2-2"


async def test_a_slug_taken_between_look_up_and_insert_gets_the_next_number(
    uow: UnitOfWork, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_post(uow, author=alice, title="Racy")
    await make_post(uow, author=alice, title="Racy")

    # As if the look-up had run before those two committed: it suggests a taken slug, the
    # unique constraint refuses it inside the savepoint, and the next number is tried.
    async def stale(self: PostRepository, base: str) -> int:
        return 1

    monkeypatch.setattr(PostRepository, "next_slug_number", stale)
    assert (await make_post(uow, author=alice, title="Racy")).slug == "racy-3"
    monkeypatch.setattr(service, "SLUG_ATTEMPTS", 1)
    random_suffix = (await make_post(uow, author=alice, title="Racy")).slug
    assert re.fullmatch(r"racy-[0-9a-f]{8}", random_suffix)


async def test_if_match_with_the_current_version_updates_and_a_stale_one_is_412(
    client: AsyncClient, uow: UnitOfWork, alice: User, as_alice: dict[str, str]
) -> None:
    post = await make_post(uow, author=alice)
    etag = (await client.get(f"{URL}/{post.id}")).headers["ETag"]
    first = await client.patch(
        f"{URL}/{post.id}", json={"title": "v2"}, headers={**as_alice, "If-Match": etag}
    )
    assert (first.status_code, first.headers["ETag"]) == (200, '"2"')
    stale = await client.patch(
        f"{URL}/{post.id}", json={"title": "lost"}, headers={**as_alice, "If-Match": etag}
    )
    assert (stale.status_code, stale.json()["error"]) == (412, "VersionMismatch")
    delete = await client.delete(f"{URL}/{post.id}", headers={**as_alice, "If-Match": etag})
    assert delete.status_code == 412
    current = await client.get(f"{URL}/{post.id}")
    assert (current.json()["title"], current.headers["ETag"]) == ("v2", '"2"')


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("*", None),
        ('"3"', {3}),
        ('"1", "3"', {1, 3}),
        ('W/"3"', set()),
        ("3", set()),
        ('"x"', set()),
        ('"99999999999"', set()),
    ],
)
def test_if_match_parsing(header: str | None, expected: set[int] | None) -> None:
    assert if_match_versions(header) == expected


async def test_a_write_racing_an_http_edit_is_refused_by_the_version_column(
    client: AsyncClient,
    database: Database,
    uow: UnitOfWork,
    alice: User,
    as_alice: dict[str, str],
) -> None:
    post = await make_post(uow, author=alice, title="Original")
    # A writer reads version 1; an HTTP edit commits version 2 meanwhile (no If-Match, so no
    # 412 can save it); the first writer's UPDATE ... WHERE version = 1 matches no row.
    async with database.uow() as slow:
        loaded = await service.get_post(slow, post_id=post.id, viewer=alice)
        edit = await client.patch(f"{URL}/{post.id}", json={"title": "HTTP"}, headers=as_alice)
        assert edit.status_code == 200
        loaded.title = "Slow writer"
        with pytest.raises(StaleData) as caught:
            await slow.commit()
        assert caught.value.status_code == 409
    # What is stored afterwards is checked with real commits in test_concurrency.py: here,
    # the refused unit of work's rollback also undoes the nested savepoint of the HTTP edit.


async def test_a_stale_service_update_is_409_even_without_if_match(
    database: Database, uow: UnitOfWork, alice: User
) -> None:
    post = await make_post(uow, author=alice)
    async with database.uow() as slow:
        loaded = await service.get_post(slow, post_id=post.id, viewer=alice)
        async with database.uow() as fast:
            await service.update_post(
                fast, actor=alice, post_id=post.id, data=PostUpdate(title="fast")
            )
        loaded.title = "slow"
        with pytest.raises(StaleData):
            await slow.commit()
