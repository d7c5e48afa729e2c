"""Filter helpers on both databases: equality, IN, ranges, datetimes, and escaped search."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import ColumnElement, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.asyncio import AsyncEngine

from agora.db.engine import make_engine
from agora.db.errors import InvalidFilter, SearchTooLong
from agora.db.filters import (
    after,
    before,
    between,
    contains,
    enable_sqlite_search,
    eq,
    given,
    one_of,
)
from agora.db.testing import rollback_session_factory
from agora.db.uow import UnitOfWork
from tests.db.models import Article, Author

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
async def search_engine(toolkit_engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """An engine on the toolkit database with the search function enabled from the start."""
    engine = make_engine(toolkit_engine.url, pool_size=2)
    enable_sqlite_search(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def uow(search_engine: AsyncEngine) -> AsyncIterator[UnitOfWork]:
    async with search_engine.connect() as conn:
        outer = await conn.begin()
        try:
            async with UnitOfWork(rollback_session_factory(conn)) as unit:
                yield unit
        finally:
            await outer.rollback()


async def add_articles(uow: UnitOfWork, *titles: str) -> None:
    author = Author(name="Ann", email="ann@example.com")
    uow.session.add(author)
    await uow.flush()
    uow.session.add_all(
        Article(title=title, score=i, author_id=author.id, published_at=T0 + timedelta(days=i))
        for i, title in enumerate(titles)
    )
    await uow.flush()


async def titles(uow: UnitOfWork, *conditions: ColumnElement[bool] | None) -> set[str]:
    stmt = select(Article.title).where(*given(*conditions))
    return set(await uow.session.scalars(stmt))


ESCAPING = ("50% off", "500 off", "50 percent", "a_c", "abc", "a\\c", "a\\\\c", "100%_\\")


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("50%", {"50% off"}),
        ("%", {"50% off", "100%_\\"}),
        ("a_c", {"a_c"}),
        ("_", {"a_c", "100%_\\"}),
        ("a\\c", {"a\\c"}),
        ("\\", {"a\\c", "a\\\\c", "100%_\\"}),
        ("\\\\", {"a\\\\c"}),
        ("%_\\", {"100%_\\"}),
        ("0 ", {"500 off", "50 percent"}),
    ],
)
async def test_contains_takes_wildcards_and_the_escape_literally(
    uow: UnitOfWork, search: str, expected: set[str]
) -> None:
    await add_articles(uow, *ESCAPING)
    assert await titles(uow, contains(Article.title, search)) == expected


async def test_contains_ignores_case_beyond_ascii_on_both_databases(uow: UnitOfWork) -> None:
    await add_articles(uow, "École Normale", "ÉCOLE", "ecole", "Straße", "ΣΟΦΊΑ", "Hello")
    assert await titles(uow, contains(Article.title, "école")) == {"École Normale", "ÉCOLE"}
    assert await titles(uow, contains(Article.title, "ÉCO")) == {"École Normale", "ÉCOLE"}
    assert await titles(uow, contains(Article.title, "STRASSE")) == set()  # no ß -> ss
    assert await titles(uow, contains(Article.title, "straße")) == {"Straße"}
    assert await titles(uow, contains(Article.title, "σοφία")) == {"ΣΟΦΊΑ"}
    assert await titles(uow, contains(Article.title, "hELLo")) == {"Hello"}


async def test_search_length_is_bounded(uow: UnitOfWork) -> None:
    await add_articles(uow, "x" * 100)
    assert await titles(uow, contains(Article.title, "x" * 100)) == {"x" * 100}
    with pytest.raises(SearchTooLong) as caught:
        contains(Article.title, "x" * 101)
    assert caught.value.status_code == 422


def test_search_too_long_for_a_custom_bound() -> None:
    with pytest.raises(SearchTooLong, match="limited to 3 characters"):
        contains(Article.title, "abcd", max_length=3)


def test_blank_or_missing_inputs_filter_nothing() -> None:
    assert (
        given(
            contains(Article.title, None),
            contains(Article.title, "   "),
            eq(Article.score, None),
            one_of(Article.score, None),
            between(Article.score),
            before(Article.published_at, None),
            after(Article.published_at, None),
        )
        == []
    )


def test_sqlite_search_without_the_function_fails_loudly() -> None:
    stmt = select(Article).where(given(contains(Article.title, "x"))[0])
    with pytest.raises(CompileError, match="enable_sqlite_search"):
        stmt.compile(dialect=sqlite.dialect())


async def test_equality_in_and_ranges(uow: UnitOfWork) -> None:
    await add_articles(uow, "s0", "s1", "s2", "s3", "s4")
    assert await titles(uow, eq(Article.score, 2)) == {"s2"}
    assert await titles(uow, one_of(Article.score, [1, 3, 9])) == {"s1", "s3"}
    assert await titles(uow, one_of(Article.score, [])) == set()
    assert await titles(uow, between(Article.score, 1, 3)) == {"s1", "s2", "s3"}
    assert await titles(uow, between(Article.score, low=3)) == {"s3", "s4"}
    assert await titles(uow, between(Article.score, high=0)) == {"s0"}
    assert await titles(uow, eq(Article.score, 4), contains(Article.title, "S")) == {"s4"}


def test_bad_ranges_and_lists_are_422() -> None:
    with pytest.raises(InvalidFilter, match="lower bound"):
        between(Article.score, 5, 1)
    with pytest.raises(InvalidFilter, match="at most 2 values"):
        one_of(Article.score, [1, 2, 3], max_values=2)


async def test_before_and_after_with_aware_datetimes(uow: UnitOfWork) -> None:
    await add_articles(uow, "d0", "d1", "d2", "d3")  # published T0 + 0..3 days
    day2 = T0 + timedelta(days=2)
    assert await titles(uow, before(Article.published_at, day2)) == {"d0", "d1"}
    assert await titles(uow, before(Article.published_at, day2, inclusive=True)) == {
        "d0",
        "d1",
        "d2",
    }
    assert await titles(uow, after(Article.published_at, day2)) == {"d3"}
    with pytest.raises(InvalidFilter, match="timezone"):
        after(Article.published_at, day2.replace(tzinfo=None))
    # 14:00 at UTC+1 is 13:00 UTC, an hour after d2: compared as instants, not wall clocks.
    plus_one = datetime(2026, 3, 3, 14, 0, tzinfo=timezone(timedelta(hours=1)))
    assert await titles(uow, after(Article.published_at, plus_one, inclusive=True)) == {"d3"}
