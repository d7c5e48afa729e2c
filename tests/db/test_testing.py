"""The statement counter that proves listings free of N+1 queries."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import selectinload

from agora.db.pytest_plugin import CountQueries
from agora.db.uow import UnitOfWork
from tests.db.models import Article, Author


async def _ten_articles(uow: UnitOfWork) -> None:
    for i in range(10):
        author = Author(name=f"a{i}", email=f"a{i}@example.com")
        uow.session.add(author)
        await uow.flush()
        uow.session.add(Article(title=f"t{i}", author_id=author.id))
    await uow.commit()
    uow.session.expunge_all()


async def test_counter_tells_n_plus_1_from_eager_loading(
    tk_uow: UnitOfWork, tk_connection: AsyncConnection, count_queries: CountQueries
) -> None:
    await _ten_articles(tk_uow)
    session = tk_uow.session

    async with count_queries(tk_connection) as eager:
        stmt = select(Article).options(selectinload(Article.author))
        articles = (await session.execute(stmt)).scalars().all()
        assert sorted(a.author.name for a in articles) == [f"a{i}" for i in range(10)]
    session.expunge_all()

    async with count_queries(tk_connection) as naive:
        articles = (await session.execute(select(Article))).scalars().all()
        for article in articles:
            await session.get(Author, article.author_id)

    assert eager.count == 2, eager.statements
    assert naive.count == 11, naive.statements
    assert naive.statements[0].lstrip().upper().startswith("SELECT")


async def test_counter_stops_counting_after_the_block(
    tk_uow: UnitOfWork, tk_connection: AsyncConnection, count_queries: CountQueries
) -> None:
    async with count_queries(tk_connection) as q:
        await tk_uow.session.execute(select(Author))
    await tk_uow.session.execute(select(Author))
    assert q.count == 1
