"""Offset pages and keyset (cursor) pages over ORM `select()` statements.

Offset, for small listings and admin screens that want a total::

    page = await paginate(session, select(Article).order_by(Article.id), limit=20, offset=40)
    page.items, page.total, page.has_more

Keyset, for long or live listings (no `count(*)`, no skipped or repeated rows when rows are
inserted or deleted between requests)::

    params = config.cursor_params(limit=20, cursor=request_cursor)
    page = await paginate_keyset(
        session, select(Article), params, order_by=(Article.score.desc(), Article.created_at)
    )
    page.items, page.next_cursor, page.prev_cursor

The ordering may mix directions; the entity's primary key is appended as the tie-breaker so
the order is total. Nullable sort columns are ordered NULLS LAST (or as asked with
`.nulls_first()`) on both databases and handled in the keyset predicate. Cursors are signed
with the application secret and carry a fingerprint of the ordering and of the filters: a
tampered, truncated or foreign cursor, or one from a listing sorted or filtered otherwise, is
an `InvalidCursor` (400), never a 500 (see `agora.db.cursors`).

Both functions run the statement through the ORM session, so `do_orm_execute` hooks (soft
delete criteria) apply to the rows and to the count.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Generic, TypeVar, cast

from fastapi import Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import Select, and_, false, func, inspect, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import BindParameter, ColumnElement, UnaryExpression

from agora.db.cursors import CURSOR_SALT, CursorCodec, Position
from agora.db.errors import InvalidPagination

T = TypeVar("T")
M = TypeVar("M")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_OFFSET = 10_000

OrderBy = ColumnElement[Any] | QueryableAttribute[Any]


# --- results and parameters -----------------------------------------------------------------


class Page(BaseModel, Generic[T]):
    """One offset page. `has_more` is true when rows exist past this page."""

    items: list[T]
    total: int
    offset: int
    limit: int
    has_more: bool


class CursorPage(BaseModel, Generic[T]):
    """One keyset page. Pass `next_cursor` / `prev_cursor` back as `?cursor=` to move on."""

    items: list[T]
    next_cursor: str | None
    prev_cursor: str | None
    limit: int


@dataclass(frozen=True, slots=True)
class PageParams:
    limit: int = DEFAULT_LIMIT
    offset: int = 0


@dataclass(frozen=True, slots=True)
class CursorParams:
    limit: int
    cursor: str | None
    codec: CursorCodec = field(repr=False)


@dataclass(frozen=True)
class PaginationConfig:
    """What an application sets once (`app.state.pagination`): the secret and the bounds."""

    secret: str = field(repr=False)
    default_limit: int = DEFAULT_LIMIT
    max_limit: int = MAX_LIMIT
    max_offset: int = MAX_OFFSET
    salt: str = CURSOR_SALT

    @cached_property
    def codec(self) -> CursorCodec:
        return CursorCodec(self.secret, salt=self.salt)

    def page_params(self, *, limit: int | None = None, offset: int | None = None) -> PageParams:
        """Checked offset parameters; out-of-range values raise `InvalidPagination` (422)."""
        return _checked_page(limit, offset, self)

    def cursor_params(self, *, limit: int | None = None, cursor: str | None = None) -> CursorParams:
        limit = _checked_limit(limit, self.default_limit, self.max_limit)
        return CursorParams(limit=limit, cursor=cursor or None, codec=self.codec)


def _checked_limit(limit: int | None, default: int, maximum: int) -> int:
    if limit is None:
        return default
    if not 1 <= limit <= maximum:
        raise InvalidPagination(f"limit must be between 1 and {maximum}")
    return limit


def _checked_page(
    limit: int | None, offset: int | None, bounds: PaginationConfig | None
) -> PageParams:
    default, max_limit, max_offset = (
        (bounds.default_limit, bounds.max_limit, bounds.max_offset)
        if bounds
        else (DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET)
    )
    offset = offset or 0
    if offset < 0:
        raise InvalidPagination("offset must not be negative")
    if offset > max_offset:
        # Deep offsets make the database read and discard every skipped row.
        raise InvalidPagination(
            f"offset must be at most {max_offset}; to go further, page with the `cursor` "
            "parameter (keyset pagination) instead of `offset`"
        )
    return PageParams(limit=_checked_limit(limit, default, max_limit), offset=offset)


# --- offset pagination ----------------------------------------------------------------------


async def paginate(
    session: AsyncSession,
    stmt: Select[M],
    params: PageParams | None = None,
    *,
    limit: int | None = None,
    offset: int | None = None,
) -> Page[M]:
    """One offset page of `stmt` (one entity or one column), with the total row count.

    Pass `params` from `PaginationConfig.page_params` / the `PageQuery` dependency, or
    `limit`/`offset` checked against the default bounds (limit <= 100, offset <= 10 000).
    """
    if params is None:
        params = _checked_page(limit, offset, None)
    query = stmt.limit(params.limit).offset(params.offset)
    result = await session.execute(query)
    items = list((result.unique() if _selects_entity(stmt) else result).scalars())
    if len(items) < params.limit and (items or params.offset == 0):
        total = params.offset + len(items)  # a short page is the last one: no count needed
    else:
        counted = select(func.count()).select_from(stmt.order_by(None).subquery())
        total = (await session.execute(counted)).scalar_one()
    return Page(
        items=items,
        total=total,
        offset=params.offset,
        limit=params.limit,
        has_more=params.offset + len(items) < total,
    )


# --- keyset pagination ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SortKey:
    expr: ColumnElement[Any]
    descending: bool
    nulls_last: bool
    nullable: bool

    def order(self, reverse: bool) -> ColumnElement[Any]:
        clause = self.expr.desc() if self.descending != reverse else self.expr.asc()
        if not self.nullable:
            return clause
        return clause.nulls_last() if self.nulls_last != reverse else clause.nulls_first()

    def equal(self, value: Any) -> ColumnElement[bool]:
        return self.expr.is_(None) if value is None else self.expr == value

    def beyond(self, value: Any, reverse: bool) -> ColumnElement[bool] | None:
        """Rows strictly past `value` in this key's (possibly reversed) order; None: none."""
        nulls_last = self.nullable and self.nulls_last != reverse
        if value is None:
            return None if nulls_last else self.expr.is_not(None)
        past = self.expr < value if self.descending != reverse else self.expr > value
        return or_(past, self.expr.is_(None)) if nulls_last else past

    def describe(self) -> str:
        return f"{self.expr} {'desc' if self.descending else 'asc'} nulls-{self.nulls_last}"


def _sort_key(arg: OrderBy) -> _SortKey:
    expr: Any = arg.__clause_element__() if isinstance(arg, QueryableAttribute) else arg
    descending, nulls_last = False, True
    while isinstance(expr, UnaryExpression) and expr.modifier is not None:
        if expr.modifier is operators.desc_op:
            descending = True
        elif expr.modifier is operators.nulls_first_op:
            nulls_last = False
        elif expr.modifier not in (operators.asc_op, operators.nulls_last_op):
            break
        expr = expr.element
    nullable = bool(getattr(expr, "nullable", True))  # expressions other than columns: maybe
    return _SortKey(expr, descending, nulls_last, nullable)


def _sort_keys(stmt: Select[Any], order_by: Sequence[OrderBy]) -> list[_SortKey]:
    """The requested ordering plus the entity's primary key as tie-breaker (a total order)."""
    keys = [_sort_key(arg) for arg in order_by]
    seen = {str(k.expr) for k in keys}
    entity = stmt.column_descriptions[0].get("entity")
    if entity is None:
        raise ValueError("keyset pagination needs a select() of a mapped entity or its columns")
    mapper = inspect(entity).mapper
    for column in mapper.primary_key:
        key = _sort_key(getattr(entity, mapper.get_property_by_column(column).key))
        if str(key.expr) not in seen:
            keys.append(key)
    return keys


def _fingerprint(keys: Sequence[_SortKey], stmt: Select[Any]) -> str:
    """The ordering and the filters (the WHERE clause and its bound values): a cursor is
    refused by a listing sorted or filtered otherwise, e.g. another search term or another
    user's history, instead of silently continuing a different listing from its position."""
    parts = [key.describe() for key in keys]
    where = stmt.whereclause
    if where is not None:
        parts.append(str(where))  # the structure (lenient compiler: any dialect's constructs)
        values = [
            b.effective_value for b in visitors.iterate(where) if isinstance(b, BindParameter)
        ]
        parts.append(repr(values))
    text = "|".join(parts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _beyond(
    keys: Sequence[_SortKey], values: Sequence[Any], *, reverse: bool, inclusive: bool
) -> ColumnElement[bool]:
    """The keyset predicate, as an OR of ANDs so that each key keeps its own direction.

    (a, b) > (x, y) as a row value only works when every key sorts the same way; the
    expanded form `a > x OR (a = x AND b > y)` works for any mix, and for NULLs.
    """
    terms: list[ColumnElement[bool]] = []
    for i, key in enumerate(keys):
        past = key.beyond(values[i], reverse)
        if past is not None:
            terms.append(and_(*(k.equal(v) for k, v in zip(keys[:i], values, strict=False)), past))
    if inclusive:
        terms.append(and_(*(k.equal(v) for k, v in zip(keys, values, strict=True))))
    return or_(*terms) if terms else false()  # e.g. past the last NULL in NULLS LAST order


async def paginate_keyset(
    session: AsyncSession,
    stmt: Select[M],
    params: CursorParams,
    *,
    order_by: Sequence[OrderBy],
) -> CursorPage[M]:
    """One keyset page of `stmt` (one entity, or one of its columns) in `order_by` order.

    `stmt`'s own ORDER BY is replaced. Sort values are read back from the database (added as
    extra columns), so any expression of the entity can be a sort key.
    """
    keys = _sort_keys(stmt, order_by)
    fingerprint = _fingerprint(keys, stmt)
    at = params.codec.decode(params.cursor, fingerprint, len(keys)) if params.cursor else None
    reverse = at is not None and at.backwards
    query = stmt.order_by(None).order_by(*(key.order(reverse) for key in keys))
    if at is not None:
        query = query.where(_beyond(keys, at.values, reverse=reverse, inclusive=at.inclusive))
    labels = [key.expr.label(f"_keyset_{i}") for i, key in enumerate(keys)]
    result = await session.execute(query.add_columns(*labels).limit(params.limit + 1))
    rows = list(result.unique())
    more, rows = len(rows) > params.limit, rows[: params.limit]
    if reverse:
        rows.reverse()  # fetched walking backwards; hand them out in the listing's order
    items = [cast(M, row[0]) for row in rows]
    first = tuple(rows[0][1:]) if rows else None
    last = tuple(rows[-1][1:]) if rows else None
    cursor = _Cursors(params.codec, fingerprint)
    return CursorPage(
        items=items,
        next_cursor=cursor.next(at, last, more=more and not reverse),
        prev_cursor=cursor.prev(at, first, more=more and reverse),
        limit=params.limit,
    )


@dataclass(frozen=True, slots=True)
class _Cursors:
    codec: CursorCodec
    fingerprint: str

    def next(self, at: Position | None, last: tuple[Any, ...] | None, *, more: bool) -> str | None:
        if last is not None and (more or (at is not None and at.backwards)):
            return self.codec.encode(Position(last, backwards=False), self.fingerprint)
        if last is None and at is not None and at.backwards:
            # Nothing before the cursor's row: "next" is that row's page again, inclusive.
            return self.codec.encode(Position(at.values, False, inclusive=True), self.fingerprint)
        return None

    def prev(self, at: Position | None, first: tuple[Any, ...] | None, *, more: bool) -> str | None:
        if first is not None and (more or (at is not None and not at.backwards)):
            return self.codec.encode(Position(first, backwards=True), self.fingerprint)
        if first is None and at is not None and not at.backwards:
            return self.codec.encode(Position(at.values, True, inclusive=True), self.fingerprint)
        return None


def _selects_entity(stmt: Select[Any]) -> bool:
    description = stmt.column_descriptions[0]
    return description.get("entity") is not None and description["expr"] is description["entity"]


# --- FastAPI dependencies -------------------------------------------------------------------


def get_pagination_config(request: Request) -> PaginationConfig:
    config = getattr(request.app.state, "pagination", None)
    if not isinstance(config, PaginationConfig):
        raise RuntimeError("set app.state.pagination = PaginationConfig(secret=...) at startup")
    return config


def page_params(
    request: Request,
    limit: Annotated[int | None, Query(description="Rows per page")] = None,
    offset: Annotated[int, Query(description="Rows to skip (bounded; use a cursor beyond)")] = 0,
) -> PageParams:
    """`?limit&offset`, checked against the application's bounds."""
    return get_pagination_config(request).page_params(limit=limit, offset=offset)


def cursor_params(
    request: Request,
    limit: Annotated[int | None, Query(description="Rows per page")] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` or `prev_cursor`")] = None,
) -> CursorParams:
    """`?limit&cursor`; the cursor itself is verified when the page is read."""
    return get_pagination_config(request).cursor_params(limit=limit, cursor=cursor)


PageQuery = Annotated[PageParams, Depends(page_params)]
CursorQuery = Annotated[CursorParams, Depends(cursor_params)]
