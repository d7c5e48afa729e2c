"""SQL of the forum: posts (visibility, listings, search, slugs) and tags. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.sql.elements import ColumnElement

from agora.db.filters import eq, given
from agora.db.pagination import CursorPage, CursorParams, Page, PageParams, paginate
from agora.db.repository import Repository
from agora.db.websearch import SearchQuery
from agora.forum.errors import PostNotFound
from agora.forum.schemas import PostOrder, TagRead
from agora.forum.search import apply_search
from agora.forum.slugs import suffix_of
from agora.models.forum import Post, Tag, post_tag
from agora.models.user import User

# Everything a `PostRead` shows in two statements whatever the page size: the posts with their
# authors (a many-to-one LEFT JOIN), then all of the page's tags (selectin, one IN query).
POST_LOAD = (joinedload(Post.author), selectinload(Post.tags))

_ORDERS: dict[PostOrder, tuple[ColumnElement[Any], ...]] = {
    # Descending with NULLS FIRST and ascending with NULLS LAST are the two directions of
    # one plain (published_at, id) index on PostgreSQL, so either order reads the index
    # instead of sorting. Drafts (published_at NULL) are at the top of "newest first".
    PostOrder.published_at_desc: (Post.published_at.desc().nulls_first(), Post.id.desc()),
    PostOrder.published_at: (Post.published_at.asc().nulls_last(), Post.id.asc()),
    PostOrder.created_at_desc: (Post.created_at.desc(), Post.id.desc()),
    PostOrder.created_at: (Post.created_at.asc(), Post.id.asc()),
}


def visible_to(viewer: User | None) -> ColumnElement[bool] | None:
    """Published posts for everyone; drafts too for their author; everything for superusers.

    (Soft-deleted posts are hidden from every read by agora.db.)
    """
    if viewer is None:
        return Post.is_published.is_(True)
    if viewer.is_superuser:
        return None
    return Post.is_published.is_(True) | (Post.author_id == viewer.id)


@dataclass(frozen=True, slots=True)
class PostFilter:
    viewer: User | None
    author_id: int | None = None
    tag: str | None = None
    published: bool | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        return given(
            visible_to(self.viewer),
            eq(Post.author_id, self.author_id),
            eq(Post.is_published, self.published),
            None if self.tag is None else Post.tags.any(Tag.name == self.tag),
        )


class PostRepository(Repository[Post]):
    model = Post
    not_found = PostNotFound

    async def get_visible(self, post_id: int, *, viewer: User | None) -> Post | None:
        stmt = self.select_stmt(where=given(visible_to(viewer)), load=POST_LOAD)
        return await self.one_or_none(stmt.where(Post.id == post_id))

    async def get_visible_by_slug(self, slug: str, *, viewer: User | None) -> Post | None:
        stmt = self.select_stmt(where=given(visible_to(viewer)), load=POST_LOAD)
        return await self.one_or_none(stmt.where(Post.slug == slug))

    async def list_page(
        self, params: PageParams, *, where: PostFilter, order: PostOrder
    ) -> Page[Post]:
        return await self.page(
            params, where=where.conditions(), order_by=_ORDERS[order], load=POST_LOAD
        )

    async def list_cursor_page(
        self, params: CursorParams, *, where: PostFilter, order: PostOrder
    ) -> CursorPage[Post]:
        return await self.cursor_page(
            params, where=where.conditions(), order_by=_ORDERS[order], load=POST_LOAD
        )

    async def search_page(
        self, params: PageParams, *, query: SearchQuery, where: PostFilter
    ) -> Page[Post]:
        """Posts matching `query`, most relevant first (offset pages: a rank is no keyset)."""
        stmt = self.select_stmt(where=where.conditions(), load=POST_LOAD)
        ranked = apply_search(stmt, query, dialect=self._dialect_name)
        return await paginate(self.session, ranked.stmt.order_by(*ranked.order_by), params)

    async def next_slug_number(self, base: str) -> int:
        """The first free n for `with_suffix(base, n)`, judging by the slugs in use.

        Deleted posts keep their slugs (the unique constraint still holds them).
        """
        stmt = (
            select(Post.slug)
            .where((Post.slug == base) | Post.slug.startswith(base + "-", autoescape=True))
            .execution_options(include_deleted=True)
        )
        taken = [suffix_of(slug, base) for slug in await self.session.scalars(stmt)]
        return max((n for n in taken if n is not None), default=0) + 1


class TagRepository(Repository[Tag]):
    model = Tag

    async def ensure(self, names: Sequence[str]) -> list[Tag]:
        """The tags called `names`, created when missing, in the order given.

        `INSERT ... ON CONFLICT DO NOTHING` then a SELECT: concurrent requests creating
        the same tag never fail or duplicate it (no select-then-insert race).
        """
        if not names:
            return []
        await self.upsert_many([{"name": name} for name in names], on=("name",), update=())
        by_name = {tag.name: tag for tag in await self.list(where=[Tag.name.in_(names)])}
        return [by_name[name] for name in names]

    def _counts(self) -> Select[str, int]:
        count = func.count(Post.id).label("post_count")
        return (
            select(Tag.name, count)
            .join(post_tag, post_tag.c.tag_id == Tag.id)
            .join(Post, Post.id == post_tag.c.post_id)
            .where(Post.is_published.is_(True), Post.deleted_at.is_(None))
            .group_by(Tag.id, Tag.name)
        )

    async def counts_page(self, params: PageParams) -> Page[TagRead]:
        """Tags carrying at least one published post, most used first, with their counts."""
        stmt = self._counts().order_by(func.count(Post.id).desc(), Tag.name.asc())
        rows = (await self.session.execute(stmt.limit(params.limit).offset(params.offset))).all()
        items = [TagRead(name=name, post_count=count) for name, count in rows]
        if len(items) < params.limit and (items or params.offset == 0):
            total = params.offset + len(items)
        else:
            total = int(
                await self.scalar(select(func.count()).select_from(self._counts().subquery()))
            )
        return Page(
            items=items,
            total=total,
            offset=params.offset,
            limit=params.limit,
            has_more=params.offset + len(items) < total,
        )
