"""Forum's use cases. Each write commits once, at the end; errors are domain errors."""

from __future__ import annotations

import secrets
from collections.abc import Collection

from agora.db.base import utcnow
from agora.db.pagination import CursorPage, CursorParams, Page, PageParams
from agora.db.uow import UnitOfWork
from agora.db.websearch import parse
from agora.forum.errors import (
    NotPostAuthor,
    PostNotFound,
    SearchIsOffsetPaged,
    SlugTaken,
    VersionMismatch,
)
from agora.forum.repository import PostFilter, PostRepository, TagRepository
from agora.forum.schemas import PostCreate, PostOrder, PostUpdate, TagRead
from agora.forum.slugs import slugify, with_suffix
from agora.models.forum import Post
from agora.models.user import User

# Under contention every round of attempts settles at least one racer, so k posts created at
# once with one title need at most k attempts each. Past the bound (a flood of identical
# titles), a random suffix, which cannot realistically collide.
SLUG_ATTEMPTS = 32


def can_edit(actor: User, post: Post) -> bool:
    return actor.id == post.author_id or actor.is_superuser


async def create_post(uow: UnitOfWork, *, author: User, data: PostCreate) -> Post:
    tags = await uow.repo(TagRepository).ensure(data.tags)
    post = Post(
        title=data.title,
        content=data.content,
        is_published=data.is_published,
        published_at=utcnow() if data.is_published else None,
        author=author,
        tags=tags,
    )
    await _insert_with_free_slug(uow, post, base=slugify(data.title))
    await uow.commit()
    return post


async def _insert_with_free_slug(uow: UnitOfWork, post: Post, *, base: str) -> None:
    """Insert `post` as `base`, `base-2`, `base-3`, ...: the first slug nobody holds.

    The look-up only suggests a number; the unique constraint decides. A post created
    concurrently with the same title makes the INSERT fail inside its savepoint, which undoes
    just that INSERT; the next attempt looks again (under READ COMMITTED, the winner's row is
    visible once it committed) and tries the next number.
    """
    posts = uow.repo(PostRepository)
    n = await posts.next_slug_number(base)
    for attempt in range(SLUG_ATTEMPTS + 1):
        last = attempt == SLUG_ATTEMPTS
        post.slug = f"{base}-{secrets.token_hex(4)}" if last else with_suffix(base, n)
        try:
            async with uow.savepoint():
                uow.session.add(post)
                await uow.session.flush()
            return
        except SlugTaken:
            if last:
                raise
            n = max(n + 1, await posts.next_slug_number(base))


async def list_posts(
    uow: UnitOfWork,
    *,
    params: PageParams | CursorParams,
    where: PostFilter,
    order: PostOrder,
    q: str | None = None,
) -> Page[Post] | CursorPage[Post]:
    """A page of the posts `where` lets the viewer see; with `q`, the most relevant first."""
    posts = uow.repo(PostRepository)
    if q is not None and q.strip():
        if isinstance(params, CursorParams):
            raise SearchIsOffsetPaged()
        query = parse(q)
        if query is None:  # nothing to look for (only punctuation or exclusions)
            return Page(items=[], total=0, offset=params.offset, limit=params.limit, has_more=False)
        return await posts.search_page(params, query=query, where=where)
    if isinstance(params, CursorParams):
        return await posts.list_cursor_page(params, where=where, order=order)
    return await posts.list_page(params, where=where, order=order)


async def get_post(uow: UnitOfWork, *, post_id: int, viewer: User | None) -> Post:
    post = await uow.repo(PostRepository).get_visible(post_id, viewer=viewer)
    if post is None:
        raise PostNotFound()
    return post


async def get_post_by_slug(uow: UnitOfWork, *, slug: str, viewer: User | None) -> Post:
    post = await uow.repo(PostRepository).get_visible_by_slug(slug, viewer=viewer)
    if post is None:
        raise PostNotFound()
    return post


async def _editable(
    uow: UnitOfWork, *, actor: User, post_id: int, if_match: Collection[int] | None
) -> Post:
    # A draft someone may not see is a 404, as on reads; a visible post of someone else 403.
    post = await get_post(uow, post_id=post_id, viewer=actor)
    if not can_edit(actor, post):
        raise NotPostAuthor()
    if if_match is not None and post.version not in if_match:
        raise VersionMismatch()
    return post


async def update_post(
    uow: UnitOfWork,
    *,
    actor: User,
    post_id: int,
    data: PostUpdate,
    if_match: Collection[int] | None = None,
) -> Post:
    """Partial update by the author or a superuser.

    `if_match`: the versions the client last saw (If-Match); another one is a 412. A writer
    that read the same version concurrently and commits first makes this commit fail on the
    version column (StaleData, 409): no update is ever lost.
    """
    post = await _editable(uow, actor=actor, post_id=post_id, if_match=if_match)
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        return post
    # Tags first: their statements would otherwise autoflush the other changes early, and
    # the row would be UPDATEd (and its version bumped) twice.
    tags = None if data.tags is None else await uow.repo(TagRepository).ensure(data.tags)
    for field in ("title", "content", "slug"):
        if field in changes:
            setattr(post, field, changes[field])
    if data.is_published is not None and data.is_published != post.is_published:
        post.is_published = data.is_published
        post.published_at = utcnow() if data.is_published else None
    if tags is not None:
        post.tags = tags
    # Always an UPDATE of the row, so the version (the ETag) moves even when only tags change.
    post.updated_at = utcnow()
    await uow.commit()
    return post


async def delete_post(
    uow: UnitOfWork, *, actor: User, post_id: int, if_match: Collection[int] | None = None
) -> None:
    """Soft delete by the author or a superuser; the slug stays taken."""
    post = await _editable(uow, actor=actor, post_id=post_id, if_match=if_match)
    await uow.repo(PostRepository).delete(post)
    await uow.commit()


async def list_tags(uow: UnitOfWork, *, params: PageParams) -> Page[TagRead]:
    return await uow.repo(TagRepository).counts_page(params)
