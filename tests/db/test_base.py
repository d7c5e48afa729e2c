"""Base and mixins: timestamps, optimistic locking, naming convention, lazy='raise'."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import InvalidRequestError

from agora.db.errors import StaleData
from agora.db.session import Database
from agora.db.uow import UnitOfWork
from tests.db.models import Article, Author, ToolkitBase


async def test_timestamps_are_aware_utc_and_move_on_update(tk_uow: UnitOfWork) -> None:
    author = Author(name="Ada", email="ada@example.com")
    tk_uow.session.add(author)
    await tk_uow.commit()
    created = author.created_at
    assert created.tzinfo is UTC
    assert author.updated_at >= created

    author.name = "Ada L."
    await tk_uow.commit()
    tk_uow.session.expunge_all()
    again = (await tk_uow.session.execute(select(Author))).scalar_one()
    assert again.created_at == created
    assert again.created_at.tzinfo is UTC
    assert again.updated_at > created


async def test_naive_datetimes_are_refused(tk_uow: UnitOfWork) -> None:
    author = Author(name="Bo", email="bo@example.com")
    tk_uow.session.add(author)
    await tk_uow.flush()
    tk_uow.session.add(Article(title="t", author_id=author.id, published_at=datetime(2026, 1, 1)))
    with pytest.raises(Exception, match="naive datetime"):
        await tk_uow.flush()


async def test_version_column_detects_a_concurrent_update(
    committed_database: Database,
) -> None:
    async with committed_database.uow() as uow:
        author = Author(name="Cy", email="cy@example.com")
        uow.session.add(author)
        await uow.flush()
        uow.session.add(Article(title="v1", author_id=author.id))
        await uow.commit()

    # Reader 2 loads the row (like a GET that hands out an ETag), then reader 1 updates it.
    async with committed_database.uow(read_only=True) as second:
        stale = (await second.session.execute(select(Article))).scalar_one()
    async with committed_database.uow() as first:
        fresh = (await first.session.execute(select(Article))).scalar_one()
        assert fresh.version == stale.version == 1
        fresh.title = "first wins"
        await first.commit()
        assert fresh.version == 2
    # Writer 2 now saves its copy, still at version 1: refused, nothing overwritten.
    async with committed_database.uow() as second:
        second.session.add(stale)
        stale.title = "second is stale"
        with pytest.raises(StaleData):
            await second.commit()

    async with committed_database.uow(read_only=True) as uow:
        stored = (await uow.session.execute(select(Article))).scalar_one()
        assert (stored.title, stored.version) == ("first wins", 2)


async def test_relationships_refuse_implicit_loads(tk_uow: UnitOfWork) -> None:
    author = Author(name="Di", email="di@example.com")
    tk_uow.session.add(author)
    await tk_uow.flush()
    tk_uow.session.add(Article(title="x", author_id=author.id))
    await tk_uow.commit()
    tk_uow.session.expunge_all()
    article = (await tk_uow.session.execute(select(Article))).scalar_one()
    with pytest.raises(InvalidRequestError, match="lazy='raise'"):
        _ = article.author


def test_constraints_get_conventional_names() -> None:
    names = {c.name for c in ToolkitBase.metadata.tables["counter"].constraints}
    assert "uq_counter_namespace_key" in names
    assert "pk_counter" in names
    fk_names = {c.name for c in ToolkitBase.metadata.tables["article"].foreign_key_constraints}
    assert fk_names == {"fk_article_author_id_author"}
