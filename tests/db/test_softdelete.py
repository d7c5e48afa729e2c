"""Soft-deleted rows are hidden from every ORM read, relationship loads included."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import aliased, joinedload, selectinload

from agora.db.base import utcnow
from agora.db.session import Database
from agora.db.uow import UnitOfWork
from tests.db.models import Article, Author, Counter


async def _author_with_articles(uow: UnitOfWork, *titles: str, deleted: str = "") -> Author:
    """An author with one article per title; the article titled `deleted` is soft-deleted."""
    author = Author(name="Ann", email="ann@example.com")
    uow.session.add(author)
    await uow.flush()
    for title in titles:
        gone = utcnow() if title == deleted else None
        uow.session.add(Article(title=title, author_id=author.id, deleted_at=gone))
    await uow.flush()
    uow.session.expunge_all()  # later reads go to the database, not the identity map
    return author


async def test_plain_selects_and_counts_skip_deleted_rows(tk_uow: UnitOfWork) -> None:
    await _author_with_articles(tk_uow, "kept", "gone", deleted="gone")
    titles = (await tk_uow.session.scalars(select(Article.title))).all()
    assert titles == ["kept"]
    count = await tk_uow.session.scalar(select(func.count()).select_from(Article))
    assert count == 1


async def test_session_get_does_not_return_a_deleted_row(tk_uow: UnitOfWork) -> None:
    author = await _author_with_articles(tk_uow)
    author_row = await tk_uow.session.get(Author, author.id)
    assert author_row is not None
    author_row.deleted_at = utcnow()
    await tk_uow.flush()
    tk_uow.session.expunge_all()
    assert await tk_uow.session.get(Author, author.id) is None


async def test_eager_relationship_loads_skip_deleted_children(tk_uow: UnitOfWork) -> None:
    await _author_with_articles(tk_uow, "a", "b", "c", deleted="b")
    for option in (selectinload(Author.articles), joinedload(Author.articles)):
        tk_uow.session.expunge_all()
        stmt = select(Author).options(option)
        author = (await tk_uow.session.scalars(stmt)).unique().one()
        assert sorted(a.title for a in author.articles) == ["a", "c"], option


async def test_joins_and_aliases_skip_deleted_rows(tk_uow: UnitOfWork) -> None:
    await _author_with_articles(tk_uow, "gone", deleted="gone")
    joined = select(Author).join(Author.articles).where(Article.title == "gone")
    assert (await tk_uow.session.scalars(joined)).all() == []
    alias = aliased(Article)
    via_alias = select(alias.title)
    assert (await tk_uow.session.scalars(via_alias)).all() == []


async def test_include_deleted_opts_out_per_statement(tk_uow: UnitOfWork) -> None:
    await _author_with_articles(tk_uow, "kept", "gone", deleted="gone")
    stmt = select(Article.title).order_by(Article.title)
    everything = stmt.execution_options(include_deleted=True)
    assert (await tk_uow.session.scalars(everything)).all() == ["gone", "kept"]
    on_execute = await tk_uow.session.scalars(stmt, execution_options={"include_deleted": True})
    assert on_execute.all() == ["gone", "kept"]
    # The opt-out is per statement: the next plain read filters again.
    assert (await tk_uow.session.scalars(stmt)).all() == ["kept"]


async def test_opt_out_covers_the_statements_eager_loads(tk_uow: UnitOfWork) -> None:
    await _author_with_articles(tk_uow, "kept", "gone", deleted="gone")
    stmt = (
        select(Author)
        .options(selectinload(Author.articles))
        .execution_options(include_deleted=True)
    )
    author = (await tk_uow.session.scalars(stmt)).one()
    assert sorted(a.title for a in author.articles) == ["gone", "kept"]


async def test_refreshing_a_deleted_object_still_works(tk_uow: UnitOfWork) -> None:
    author = Author(name="Rae", email="rae@example.com")
    tk_uow.session.add(author)
    await tk_uow.flush()
    author.deleted_at = utcnow()
    await tk_uow.flush()
    # The object is in hand: a refresh must still reach its row.
    await tk_uow.session.refresh(author)
    assert author.name == "Rae"
    assert author.deleted_at is not None


async def test_models_without_the_mixin_are_untouched(tk_uow: UnitOfWork) -> None:
    tk_uow.session.add(Counter(namespace="n", key="k"))
    await tk_uow.flush()
    assert await tk_uow.session.scalar(select(func.count()).select_from(Counter)) == 1


async def test_sessions_of_a_real_database_filter_too(committed_database: Database) -> None:
    async with committed_database.uow() as uow:
        uow.session.add(Author(name="Old", email="old@example.com", deleted_at=utcnow()))
        uow.session.add(Author(name="New", email="new@example.com"))
        await uow.commit()
    for read_only in (False, True):
        async with committed_database.uow(read_only=read_only) as uow:
            names = (await uow.session.scalars(select(Author.name))).all()
            assert names == ["New"]


async def test_relationship_loads_of_unqueried_objects_skip_deleted(tk_uow: UnitOfWork) -> None:
    # `author` never came from a SELECT, so no loader criteria travel with it: the relationship
    # load must be filtered on its own.
    author = Author(name="Una", email="una@example.com")
    tk_uow.session.add(author)
    await tk_uow.flush()
    tk_uow.session.add_all(
        [
            Article(title="kept", author_id=author.id),
            Article(title="gone", author_id=author.id, deleted_at=utcnow()),
        ]
    )
    await tk_uow.flush()
    await tk_uow.session.refresh(author, ["articles"])
    assert [a.title for a in author.articles] == ["kept"]


async def test_a_core_select_over_the_table_says_its_own_where(tk_uow: UnitOfWork) -> None:
    # Loader criteria are an ORM feature: a statement over `Table` columns (the form hot
    # read paths use) is sent as written, so it must filter `deleted_at` itself.
    await _author_with_articles(tk_uow, "kept", "gone", deleted="gone")
    table = Article.__table__
    every = select(table.c.title).order_by(table.c.title)
    assert (await tk_uow.session.scalars(every)).all() == ["gone", "kept"]
    live = every.where(table.c.deleted_at.is_(None))
    assert (await tk_uow.session.scalars(live)).all() == ["kept"]
    # The ORM form of the same read is still filtered.
    assert (await tk_uow.session.scalars(select(Article.title))).all() == ["kept"]
