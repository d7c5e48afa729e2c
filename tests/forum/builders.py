"""Data builders for the forum tests: plain async functions (users come from tests.members)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import timedelta

from agora.db.base import utcnow
from agora.db.uow import UnitOfWork
from agora.forum import service
from agora.forum.schemas import PostCreate
from agora.models.forum import Post
from agora.models.user import User

_seq = itertools.count(1)


async def make_post(
    uow: UnitOfWork,
    *,
    author: User,
    title: str | None = None,
    content: str = "",
    is_published: bool = True,
    tags: Sequence[str] = (),
    published_ago: timedelta | None = None,
) -> Post:
    """A post created through the service (slug, tags, published_at as in the API).

    `published_ago` backdates publication, for tests of the listing order.
    """
    data = PostCreate(
        title=title or f"Post number {next(_seq)}",
        content=content,
        is_published=is_published,
        tags=list(tags),
    )
    post = await service.create_post(uow, author=author, data=data)
    if published_ago is not None and is_published:
        post.published_at = utcnow() - published_ago
        await uow.commit()
    return post
