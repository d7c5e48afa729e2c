"""Offset and keyset pagination on both databases, cursors, and a Hypothesis walk."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import ColumnElement, delete, event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, QueryableAttribute, with_loader_criteria

from agora.db.cursors import CursorCodec, Position
from agora.db.errors import InvalidCursor, InvalidPagination
from agora.db.pagination import (
    CursorPage,
    PaginationConfig,
    paginate,
    paginate_keyset,
)
from agora.db.uow import UnitOfWork
from tests.db.models import Article, Author

CONFIG = PaginationConfig(secret="test-secret")
T0 = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
T1 = T0 + timedelta(microseconds=1)  # one microsecond apart: must not be lost in a cursor


async def make_author(session: AsyncSession) -> Author:
    author = Author(name="Ann", email=f"ann{id(session)}@example.com")
    session.add(author)
    await session.flush()
    return author


async def make_articles(session: AsyncSession, count: int, **fields: Any) -> list[Article]:
    author = await make_author(session)
    articles = [Article(title=f"t{i:03}", author_id=author.id, **fields) for i in range(count)]
    session.add_all(articles)
    await session.flush()
    return articles


async def walk(
    session: AsyncSession, order_by: Sequence[Any], *, limit: int
) -> list[CursorPage[Article]]:
    """Every page, first to last, following `next_cursor`."""
    pages = [await paginate_keyset(session, select(Article), cursor(limit), order_by=order_by)]
    while pages[-1].next_cursor:
        params = cursor(limit, pages[-1].next_cursor)
        pages.append(await paginate_keyset(session, select(Article), params, order_by=order_by))
    return pages


def cursor(limit: int, token: str | None = None) -> Any:
    return CONFIG.cursor_params(limit=limit, cursor=token)


def ids(pages: Sequence[CursorPage[Article]]) -> list[int]:
    return [a.id for page in pages for a in page.items]


async def sql_order(session: AsyncSession, order_by: Sequence[Any]) -> list[int]:
    return list(await session.scalars(select(Article.id).order_by(*order_by, Article.id)))


# --- offset -----------------------------------------------------------------------------------


async def test_offset_page_has_items_total_and_has_more(tk_uow: UnitOfWork) -> None:
    articles = await make_articles(tk_uow.session, 25)
    stmt = select(Article).order_by(Article.id)

    middle = await paginate(tk_uow.session, stmt, limit=10, offset=10)
    last = await paginate(tk_uow.session, stmt, limit=10, offset=20)
    beyond = await paginate(tk_uow.session, stmt, limit=10, offset=30)

    assert [a.id for a in middle.items] == [a.id for a in articles[10:20]]
    assert (middle.total, middle.offset, middle.limit, middle.has_more) == (25, 10, 10, True)
    assert ([a.id for a in last.items], last.total, last.has_more) == (
        [a.id for a in articles[20:]],
        25,
        False,
    )
    assert (beyond.items, beyond.total, beyond.has_more) == ([], 25, False)


async def test_offset_defaults_to_twenty_rows(tk_uow: UnitOfWork) -> None:
    await make_articles(tk_uow.session, 21)
    page = await paginate(tk_uow.session, select(Article.title).order_by(Article.title))
    assert (len(page.items), page.limit, page.total, page.has_more) == (20, 20, 21, True)
    assert page.items[0] == "t000"  # one-column statements page their values


@pytest.mark.parametrize(
    ("limit", "offset", "message"),
    [
        (0, 0, "limit must be between 1 and 100"),
        (101, 0, "limit must be between 1 and 100"),
        (10, -1, "offset must not be negative"),
        (10, 10_001, "page with the `cursor` parameter"),
    ],
)
async def test_offset_bounds_are_refused(
    tk_uow: UnitOfWork, limit: int, offset: int, message: str
) -> None:
    with pytest.raises(InvalidPagination) as caught:
        await paginate(tk_uow.session, select(Article), limit=limit, offset=offset)
    assert caught.value.status_code == 422
    assert message in str(caught.value.detail)


def test_configured_bounds_replace_the_defaults() -> None:
    config = PaginationConfig(secret="s", default_limit=5, max_limit=500, max_offset=50)
    assert config.page_params().limit == 5
    assert config.page_params(limit=500).limit == 500
    with pytest.raises(InvalidPagination, match="offset must be at most 50"):
        config.page_params(offset=51)
    with pytest.raises(InvalidPagination):
        config.cursor_params(limit=501)


@contextmanager
def hide_deleted(session: AsyncSession) -> Iterator[None]:
    """A soft-delete hook of the kind the repository installs (with_loader_criteria)."""

    def _criteria(state: ORMExecuteState) -> None:
        if state.is_select:
            state.statement = state.statement.options(
                with_loader_criteria(Article, Article.deleted_at.is_(None), include_aliases=True)
            )

    event.listen(session.sync_session, "do_orm_execute", _criteria)
    try:
        yield
    finally:
        event.remove(session.sync_session, "do_orm_execute", _criteria)


async def test_both_paginations_respect_orm_criteria_hooks(tk_uow: UnitOfWork) -> None:
    articles = await make_articles(tk_uow.session, 30)
    for article in articles[::2]:
        article.deleted_at = T0
    await tk_uow.flush()
    visible = [a.id for a in articles[1::2]]

    with hide_deleted(tk_uow.session):
        page = await paginate(tk_uow.session, select(Article).order_by(Article.id), limit=10)
        keyset = ids(await walk(tk_uow.session, [Article.id], limit=4))

    assert (page.total, [a.id for a in page.items]) == (15, visible[:10])  # count too
    assert keyset == visible


# --- keyset -----------------------------------------------------------------------------------


async def test_keyset_mixed_directions_with_ties_and_nulls(tk_uow: UnitOfWork) -> None:
    articles = await make_articles(tk_uow.session, 23)
    for i, article in enumerate(articles):
        article.score = i % 3
        article.published_at = None if i % 4 == 0 else (T0 if i % 2 else T1)
    await tk_uow.flush()
    order = [Article.score.desc(), Article.published_at.asc().nulls_first(), Article.title.desc()]

    pages = await walk(tk_uow.session, order, limit=4)

    assert ids(pages) == await sql_order(tk_uow.session, order)
    assert [len(p.items) for p in pages] == [4, 4, 4, 4, 4, 3]
    assert pages[0].prev_cursor is None
    assert pages[-1].next_cursor is None


async def test_nullable_keys_default_to_nulls_last_on_both_databases(tk_uow: UnitOfWork) -> None:
    articles = await make_articles(tk_uow.session, 6)
    articles[0].published_at = T1
    articles[3].published_at = T0
    await tk_uow.flush()
    for direction in (Article.published_at.asc(), Article.published_at.desc()):
        walked = ids(await walk(tk_uow.session, [direction], limit=2))
        assert walked[2:] == [articles[i].id for i in (1, 2, 4, 5)]  # NULLs last, by id


async def test_prev_cursor_returns_the_same_pages_backwards(tk_uow: UnitOfWork) -> None:
    articles = await make_articles(tk_uow.session, 11)
    for i, article in enumerate(articles):
        article.score = i % 2
    await tk_uow.flush()
    order: list[ColumnElement[Any]] = [Article.score.asc(), Article.created_at.desc()]
    forward = await walk(tk_uow.session, order, limit=3)

    backward = [forward[-1]]
    while backward[0].prev_cursor:
        params = cursor(3, backward[0].prev_cursor)
        page = await paginate_keyset(tk_uow.session, select(Article), params, order_by=order)
        backward.insert(0, page)

    assert [ids([p]) for p in backward] == [ids([p]) for p in forward]
    assert backward[0].prev_cursor is None


async def test_an_emptied_page_still_leads_back(tk_uow: UnitOfWork) -> None:
    articles = await make_articles(tk_uow.session, 6)
    first = await paginate_keyset(tk_uow.session, select(Article), cursor(3), order_by=[])
    assert first.next_cursor is not None
    await tk_uow.session.execute(
        delete(Article).where(Article.id.in_([a.id for a in articles[3:]]))
    )

    empty = await paginate_keyset(
        tk_uow.session, select(Article), cursor(3, first.next_cursor), order_by=[]
    )
    assert (empty.items, empty.next_cursor) == ([], None)
    assert empty.prev_cursor is not None
    back = await paginate_keyset(
        tk_uow.session, select(Article), cursor(3, empty.prev_cursor), order_by=[]
    )
    assert ids([back]) == [a.id for a in articles[:3]]  # the last row seen is not skipped


async def test_keyset_pages_one_column_statements(tk_uow: UnitOfWork) -> None:
    await make_articles(tk_uow.session, 5)
    params = cursor(2)
    page = await paginate_keyset(
        tk_uow.session, select(Article.title), params, order_by=[Article.title.desc()]
    )
    assert page.items == ["t004", "t003"]
    more = await paginate_keyset(
        tk_uow.session,
        select(Article.title),
        cursor(2, page.next_cursor),
        order_by=[Article.title.desc()],
    )
    assert more.items == ["t002", "t001"]


async def test_a_cursor_from_another_ordering_is_refused(tk_uow: UnitOfWork) -> None:
    await make_articles(tk_uow.session, 3)
    page = await paginate_keyset(
        tk_uow.session, select(Article), cursor(1), order_by=[Article.score.desc()]
    )
    assert page.next_cursor is not None
    for other in ([Article.score.asc()], [Article.title.desc()], [Author.name]):
        with pytest.raises(InvalidCursor, match="another listing"):
            await paginate_keyset(
                tk_uow.session, select(Article), cursor(1, page.next_cursor), order_by=other
            )


async def test_a_cursor_from_another_filter_is_refused(tk_uow: UnitOfWork) -> None:
    articles = await make_articles(tk_uow.session, 8, score=1)
    for article in articles[6:]:
        article.score = 2
    await tk_uow.flush()
    order = [Article.title]
    ones = select(Article).where(Article.score == 1)
    page = await paginate_keyset(tk_uow.session, ones, cursor(2), order_by=order)
    assert page.next_cursor is not None
    following = await paginate_keyset(
        tk_uow.session, ones, cursor(2, page.next_cursor), order_by=order
    )
    assert [a.score for a in following.items] == [1, 1]
    for other in (select(Article).where(Article.score == 2), select(Article)):
        with pytest.raises(InvalidCursor, match="another listing"):
            await paginate_keyset(
                tk_uow.session, other, cursor(2, page.next_cursor), order_by=order
            )


# --- cursors ----------------------------------------------------------------------------------


def test_cursor_values_round_trip_exactly() -> None:
    codec = CursorCodec("k")
    values = (
        None,
        True,
        -(2**70),
        0.1,
        "ünï\u2028code/+=&?",
        T0,
        datetime(2026, 1, 1, 12, 0, 0, 999999),  # naive stays naive
        datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=-5),
        date(2026, 2, 28),
        Decimal("1.10"),
        Decimal("-1E+3"),
        UUID("12345678-1234-5678-1234-567812345678"),
    )
    token = codec.encode(Position(values, backwards=True), "fp")
    assert token.isascii()
    assert not set(token) & set("/+=&?# ")  # URL-safe as is
    decoded = codec.decode(token, "fp", len(values))
    assert decoded == Position(values, backwards=True)
    assert [type(v) for v in decoded.values] == [type(v) for v in values]
    assert str(decoded.values[9]) == "1.10"  # the Decimal's exponent survives too


def tamperings(token: str) -> list[str]:
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    body = token[:5] + ("x" if token[5] != "x" else "y") + token[6:]
    return [flipped, body, token[:-6], token[: len(token) // 2], "", "garbage", "é" * 10, "." * 9]


@pytest.mark.parametrize("case", range(8))
def test_tampered_or_truncated_cursors_are_refused(case: int) -> None:
    codec = CursorCodec("k")
    token = codec.encode(Position((1, "a"), backwards=False), "fp")
    with pytest.raises(InvalidCursor) as caught:
        codec.decode(tamperings(token)[case], "fp", 2)
    assert caught.value.status_code == 400


def test_foreign_cursors_are_refused() -> None:
    token = CursorCodec("k").encode(Position((1,), backwards=False), "fp")
    for codec, fingerprint, width in (
        (CursorCodec("another secret"), "fp", 1),
        (CursorCodec("k", salt="another purpose"), "fp", 1),
        (CursorCodec("k"), "other ordering", 1),
        (CursorCodec("k"), "fp", 2),
    ):
        with pytest.raises(InvalidCursor):
            codec.decode(token, fingerprint, width)
    with pytest.raises(InvalidCursor, match="too long"):
        CursorCodec("k").decode("a" * 5000, "fp", 1)


def test_signed_payloads_of_the_wrong_shape_are_refused() -> None:
    codec = CursorCodec("k")
    for payload in (
        [1, 2],
        {"f": "fp", "b": False, "i": False, "k": [["dt", "not a date"]]},
        {"f": "fp", "b": False, "i": False, "k": [["i", "1"]]},
        {"f": "fp", "b": False, "i": False, "k": [["zz", 1]]},
        {"f": "fp", "b": "no", "i": False, "k": [["i", 1]]},
        {"f": "fp", "b": False, "i": False, "k": [["dec", "NaN?"]]},
    ):
        with pytest.raises(InvalidCursor):
            codec.decode(codec._serializer.dumps(payload), "fp", 1)


# --- property: walking while rows come and go -------------------------------------------------

TITLES = ("a", "B", "b", "é", "ab")
TIMES = (T0, T1, T0 + timedelta(days=1))
COLUMNS: dict[str, QueryableAttribute[Any]] = {
    "score": Article.score,
    "title": Article.title,
    "published_at": Article.published_at,
    "created_at": Article.created_at,
}

row_values = st.fixed_dictionaries(
    {
        "score": st.integers(0, 2),
        "title": st.sampled_from(TITLES),
        "published_at": st.sampled_from((None, *TIMES)),
        "created_at": st.sampled_from(TIMES),
    }
)


@st.composite
def orderings(draw: st.DrawFn) -> list[tuple[str, bool, bool]]:
    """(column, descending, nulls_first) triples; drawn as data so that failures read well."""
    names = draw(st.lists(st.sampled_from(sorted(COLUMNS)), min_size=1, max_size=3, unique=True))
    return [(name, draw(st.booleans()), draw(st.booleans())) for name in names]


def order_by(spec: list[tuple[str, bool, bool]]) -> list[ColumnElement[Any]]:
    order: list[ColumnElement[Any]] = []
    for name, descending, nulls_first in spec:
        key = COLUMNS[name].desc() if descending else COLUMNS[name].asc()
        if name == "published_at":  # explicit, so that the SQL order to compare with is known
            key = key.nulls_first() if nulls_first else key.nulls_last()
        order.append(key)
    return order


class Walk:
    """Rows added and deleted between pages, and which rows existed throughout."""

    def __init__(self, session: AsyncSession, data: st.DataObject, author_id: int) -> None:
        self.session, self.data, self.author_id = session, data, author_id
        self.stable: set[int] = set()
        self.insert_budget = 15  # bounded, so that a walk always reaches the end
        # Explicit ids: SQLite hands a deleted max id out again, and a new row must not
        # look like a row seen before.
        self.last_id = 0

    async def insert(self, values: dict[str, Any]) -> int:
        self.last_id += 1
        self.session.add(Article(id=self.last_id, author_id=self.author_id, **values))
        await self.session.flush()
        return self.last_id

    async def churn(self) -> None:
        existing = list(await self.session.scalars(select(Article.id)))
        doomed = self.data.draw(st.lists(st.sampled_from(existing), max_size=2)) if existing else []
        if doomed:
            await self.session.execute(delete(Article).where(Article.id.in_(doomed)))
            self.stable.difference_update(doomed)
        for values in self.data.draw(st.lists(row_values, max_size=min(2, self.insert_budget))):
            self.insert_budget -= 1
            await self.insert(values)

    async def page(self, order: list[ColumnElement[Any]], limit: int, token: str | None) -> Any:
        await self.churn()
        params = cursor(limit, token)
        return await paginate_keyset(self.session, select(Article), params, order_by=order)


async def check_walk(walk: Walk, seen: list[int], order: list[ColumnElement[Any]]) -> None:
    assert len(seen) == len(set(seen)), "a row was returned twice"
    assert walk.stable <= set(seen), "a row that existed throughout was skipped"
    final = await sql_order(walk.session, order)
    still_there = set(final)
    assert [i for i in seen if i in still_there] == [i for i in final if i in set(seen)]


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_keyset_walks_never_skip_or_repeat_rows(
    tk_uow: UnitOfWork, data: st.DataObject
) -> None:
    session = tk_uow.session
    savepoint = await session.begin_nested()  # each example starts from an empty table
    try:
        author = await make_author(session)
        walk = Walk(session, data, author.id)
        for values in data.draw(st.lists(row_values, min_size=0, max_size=40), label="rows"):
            walk.stable.add(await walk.insert(values))
        order = order_by(data.draw(orderings(), label="order"))
        limit = data.draw(st.integers(1, 8), label="limit")

        pages = [await walk.page(order, limit, None)]
        while pages[-1].next_cursor:
            pages.append(await walk.page(order, limit, pages[-1].next_cursor))
        await check_walk(walk, ids(pages), order)

        walk.stable &= set(await session.scalars(select(Article.id)))
        backward = [pages[-1]]
        while backward[0].prev_cursor:
            backward.insert(0, await walk.page(order, limit, backward[0].prev_cursor))
        await check_walk(walk, ids(backward), order)
    finally:
        await savepoint.rollback()
        session.expunge_all()
