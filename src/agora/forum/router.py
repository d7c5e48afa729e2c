"""Forum's HTTP API: posts, tags and a user's posts (mounted under /api/v1)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status

from agora.db.api import ReadUoW, WriteUoW
from agora.db.errors import Invalid
from agora.db.pagination import (
    CursorPage,
    CursorParams,
    Page,
    PageParams,
    PageQuery,
    get_pagination_config,
)
from agora.forum import service
from agora.forum.errors import OffsetAndCursor
from agora.forum.repository import PostFilter
from agora.forum.schemas import (
    MAX_ID,
    SEARCH_MAX,
    PostCreate,
    PostOrder,
    PostRead,
    PostUpdate,
    TagRead,
)
from agora.members.deps import CurrentUserForWrite, OptionalUser
from agora.members.service import get_user
from agora.models.forum import SLUG_MAX, TAG_MAX, Post
from agora.openapi import errors
from agora.routing import PrefixRouter

router = APIRouter()
posts = PrefixRouter(prefix="/posts", tags=["forum"])

PostId = Annotated[int, Path(ge=1, le=MAX_ID, description="A post's id")]
UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="A user's id")]
IfMatch = Annotated[
    str | None,
    Header(max_length=1000, description='`"<version>"` from the ETag; another version: 412'),
]
PostPage = Page[PostRead] | CursorPage[PostRead]


def _paging(
    request: Request,
    limit: Annotated[int | None, Query(description="Rows per page (1-100, default 20)")] = None,
    offset: Annotated[
        int | None, Query(description="Rows to skip (0-10000); not with `cursor`")
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            max_length=2048,
            description="Keyset paging: empty for the first page, then `next_cursor` / "
            "`prev_cursor`; not with `offset` or `q`",
        ),
    ] = None,
) -> PageParams | CursorParams:
    """`?limit&offset` (offset pages, the default) or `?limit&cursor` (keyset pages)."""
    config = get_pagination_config(request)
    if cursor is None:
        return config.page_params(limit=limit, offset=offset)
    if offset is not None:
        raise OffsetAndCursor()
    return config.cursor_params(limit=limit, cursor=cursor)


Paging = Annotated[PageParams | CursorParams, Depends(_paging)]
Search = Annotated[
    str | None,
    Query(
        max_length=SEARCH_MAX,
        description='Full-text search: words, "a phrase", -excluded, `or`; most relevant first',
    ),
]
TagFilter = Annotated[
    str | None,
    Query(max_length=TAG_MAX, pattern=r"^[A-Za-z0-9_+#.-]+$", description="Tag name (any case)"),
]
Published = Annotated[bool | None, Query(description="Only published (true) or drafts (false)")]


def _no_nul(**values: str | None) -> None:
    for name, value in values.items():
        if value is not None and "\x00" in value:
            raise Invalid(f"{name}: no NUL characters")


def _tag(name: str | None) -> str | None:
    return None if name is None else name.lower()  # stored lower case


def _read(post: Post, response: Response) -> PostRead:
    response.headers["ETag"] = f'"{post.version}"'
    return PostRead.model_validate(post)


def _page(page: Page[Post] | CursorPage[Post]) -> PostPage:
    items = [PostRead.model_validate(post) for post in page.items]
    if isinstance(page, Page):
        return Page[PostRead](
            items=items,
            total=page.total,
            offset=page.offset,
            limit=page.limit,
            has_more=page.has_more,
        )
    return CursorPage[PostRead](
        items=items, next_cursor=page.next_cursor, prev_cursor=page.prev_cursor, limit=page.limit
    )


def if_match_versions(header: str | None) -> set[int] | None:
    """The versions an If-Match header names; None when there is no precondition (absent or
    `*`). Weak and malformed tags match nothing (RFC 9110 compares If-Match strongly)."""
    if header is None or header.strip() == "*":
        return None
    versions = set()
    for part in header.split(","):
        tag = part.strip()
        inner = tag[1:-1] if len(tag) >= 2 and tag[0] == tag[-1] == '"' else ""
        if inner.isascii() and inner.isdigit() and len(inner) < 10:
            versions.add(int(inner))
    return versions


@posts.post("", status_code=status.HTTP_201_CREATED, response_model=PostRead)
async def create_post(
    data: PostCreate, uow: WriteUoW, author: CurrentUserForWrite, response: Response
) -> PostRead:
    """Write a post (published unless `is_published` is false); tags are created as needed."""
    post = await service.create_post(uow, author=author, data=data)
    response.headers["Location"] = f"/api/v1/posts/{post.id}"
    return _read(post, response)


@posts.get("", response_model=PostPage)
async def list_posts(
    uow: ReadUoW,
    viewer: OptionalUser,
    paging: Paging,
    q: Search = None,
    author_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    tag: TagFilter = None,
    published: Published = None,
    order_by: PostOrder = PostOrder.published_at_desc,
) -> Any:
    """Posts the caller may see, newest first; with `q`, most relevant first (offset pages)."""
    _no_nul(q=q)
    where = PostFilter(viewer=viewer, author_id=author_id, tag=_tag(tag), published=published)
    page = await service.list_posts(uow, params=paging, where=where, order=order_by, q=q)
    return _page(page)


@posts.get("/by-slug/{slug}", response_model=PostRead, responses=errors(404))
async def read_post_by_slug(
    slug: Annotated[str, Path(max_length=SLUG_MAX, pattern=r"^[a-z0-9-]+$")],
    uow: ReadUoW,
    viewer: OptionalUser,
    response: Response,
) -> PostRead:
    """A post by its slug; drafts only for their author and superusers (404 otherwise)."""
    return _read(await service.get_post_by_slug(uow, slug=slug, viewer=viewer), response)


@posts.get("/{post_id}", response_model=PostRead, responses=errors(404))
async def read_post(
    post_id: PostId, uow: ReadUoW, viewer: OptionalUser, response: Response
) -> PostRead:
    """A post, with `ETag: "<version>"`; drafts only for their author and superusers."""
    return _read(await service.get_post(uow, post_id=post_id, viewer=viewer), response)


@posts.patch(
    "/{post_id}",
    response_model=PostRead,
    responses=errors(403, 404, 412),
)
async def update_post(
    post_id: PostId,
    data: PostUpdate,
    uow: WriteUoW,
    actor: CurrentUserForWrite,
    response: Response,
    if_match: IfMatch = None,
) -> PostRead:
    """Change some fields (author or superuser); send `If-Match` to refuse stale edits."""
    post = await service.update_post(
        uow, actor=actor, post_id=post_id, data=data, if_match=if_match_versions(if_match)
    )
    return _read(post, response)


@posts.delete("/{post_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403, 404, 412))
async def delete_post(
    post_id: PostId, uow: WriteUoW, actor: CurrentUserForWrite, if_match: IfMatch = None
) -> Response:
    """Delete a post (soft; author or superuser)."""
    await service.delete_post(
        uow, actor=actor, post_id=post_id, if_match=if_match_versions(if_match)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/tags", tags=["forum"], response_model=Page[TagRead])
async def list_tags(uow: ReadUoW, page: PageQuery) -> Page[TagRead]:
    """Tags of published posts with their post counts, most used first (offset pages)."""
    return await service.list_tags(uow, params=page)


@router.get(
    "/users/{user_id}/posts", tags=["forum"], response_model=PostPage, responses=errors(404)
)
async def list_user_posts(
    user_id: UserId,
    uow: ReadUoW,
    viewer: OptionalUser,
    paging: Paging,
    q: Search = None,
    tag: TagFilter = None,
    published: Published = None,
    order_by: PostOrder = PostOrder.published_at_desc,
) -> Any:
    """A user's posts the caller may see (the same parameters as `GET /posts`)."""
    _no_nul(q=q)
    await get_user(uow, user_id=user_id)  # 404 for an absent or deleted user
    where = PostFilter(viewer=viewer, author_id=user_id, tag=_tag(tag), published=published)
    page = await service.list_posts(uow, params=paging, where=where, order=order_by, q=q)
    return _page(page)


# Included one by one by the app (`routers`), not nested: FastAPI matches a nested router's
# routes once per level (bench/README.md, "Fourth round").
routers = (router, posts)
