"""Repository[M]: reads, writes, soft delete, batching, and composing statements."""

from __future__ import annotations

import math
from datetime import UTC

import pytest
from sqlalchemy import select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import selectinload

from agora.db.errors import Duplicate, NotFound
from agora.db.repository import Repository
from agora.db.testing import count_queries
from agora.db.uow import UnitOfWork
from tests.db.models import Article, Author, Counter, Setting


class AuthorNotFound(NotFound):
    pass


class AuthorRepository(Repository[Author]):
    model = Author
    not_found = AuthorNotFound

    # A domain query in a few lines: the generic statement, extended and executed.
    async def list_with_published_articles(self) -> list[Author]:
        stmt = self.select_stmt(order_by=[Author.name])
        stmt = stmt.join(Author.articles).where(Article.published_at.is_not(None)).distinct()
        return await self.all(stmt)


class ArticleRepository(Repository[Article]):
    model = Article


class CounterRepository(Repository[Counter]):
    model = Counter


class SettingRepository(Repository[Setting]):
    model = Setting


async def _authors(uow: UnitOfWork, *names: str) -> list[Author]:
    repo = uow.repo(AuthorRepository)
    return [await repo.add(Author(name=n, email=f"{n.lower()}@example.com")) for n in names]


async def test_get_returns_the_row_or_none(tk_uow: UnitOfWork) -> None:
    (ada,) = await _authors(tk_uow, "Ada")
    repo = tk_uow.repo(AuthorRepository)
    tk_uow.session.expunge_all()
    found = await repo.get(ada.id)
    assert found is not None
    assert found.email == "ada@example.com"
    assert await repo.get(ada.id + 1000) is None


async def test_get_one_raises_the_repositorys_not_found(tk_uow: UnitOfWork) -> None:
    with pytest.raises(AuthorNotFound, match="Author 424242 not found") as info:
        await tk_uow.repo(AuthorRepository).get_one(424242)
    assert info.value.status_code == 404
    with pytest.raises(NotFound, match="Counter 7 not found"):
        await tk_uow.repo(CounterRepository).get_one(7)


async def test_get_takes_a_composite_key(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(SettingRepository)
    await repo.add(Setting(scope="site", name="theme", value="dark"))
    found = await repo.get(("site", "theme"))
    assert found is not None
    assert found.value == "dark"
    assert await repo.get(("site", "other")) is None
    with pytest.raises(ValueError, match="2 column"):
        await repo.get("site")


async def test_get_loads_requested_relationships(tk_uow: UnitOfWork) -> None:
    (ada,) = await _authors(tk_uow, "Ada")
    await tk_uow.repo(ArticleRepository).add(Article(title="Notes", author_id=ada.id))
    repo = tk_uow.repo(AuthorRepository)
    for load in ([Author.articles], [selectinload(Author.articles)]):
        tk_uow.session.expunge_all()
        author = await repo.get_one(ada.id, load=load)
        assert [a.title for a in author.articles] == ["Notes"]
    tk_uow.session.expunge_all()
    bare = await repo.get_one(ada.id)
    with pytest.raises(InvalidRequestError, match="lazy='raise'"):
        _ = bare.articles


async def test_get_by_matches_attributes(tk_uow: UnitOfWork) -> None:
    await _authors(tk_uow, "Ada", "Bob")
    repo = tk_uow.repo(AuthorRepository)
    bob = await repo.get_by(email="bob@example.com")
    assert bob is not None
    assert bob.name == "Bob"
    assert await repo.get_by(email="nobody@example.com") is None
    with pytest.raises(InvalidRequestError, match="nickname"):
        await repo.get_by(nickname="Bob")


async def test_list_filters_orders_and_limits(tk_uow: UnitOfWork) -> None:
    await _authors(tk_uow, "Cy", "Ada", "Bob", "Di")
    repo = tk_uow.repo(AuthorRepository)
    names = [a.name for a in await repo.list(order_by=[Author.name.desc()], limit=3)]
    assert names == ["Di", "Cy", "Bob"]
    some = await repo.list(where=[Author.name.in_(["Ada", "Di"])], order_by=[Author.name])
    assert [a.name for a in some] == ["Ada", "Di"]


async def test_count_and_exists(tk_uow: UnitOfWork) -> None:
    await _authors(tk_uow, "Ada", "Bob", "Cy")
    repo = tk_uow.repo(AuthorRepository)
    assert await repo.count() == 3
    assert await repo.count(where=[Author.name < "C"]) == 2
    assert await repo.exists(where=[Author.email == "cy@example.com"])
    assert not await repo.exists(where=[Author.email == "zed@example.com"])


async def test_add_flushes_so_ids_and_errors_come_at_once(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(AuthorRepository)
    ada = await repo.add(Author(name="Ada", email="ada@example.com"))
    assert ada.id is not None
    assert ada.created_at is not None
    with pytest.raises(Duplicate) as info:
        await repo.add(Author(name="Ada 2", email="ada@example.com"))
    assert info.value.fields == ("email",)


async def test_update_is_partial_and_refuses_unknown_keys(tk_uow: UnitOfWork) -> None:
    (ada,) = await _authors(tk_uow, "Ada")
    repo = tk_uow.repo(AuthorRepository)
    before = ada.updated_at
    await repo.update(ada, {"karma": 5})
    tk_uow.session.expunge_all()
    stored = await repo.get_one(ada.id)
    assert (stored.name, stored.karma) == ("Ada", 5)
    assert stored.updated_at > before
    with pytest.raises(TypeError, match="nickname"):
        await repo.update(stored, {"name": "Changed", "nickname": "x"})
    assert stored.name == "Ada"  # nothing applied when a key is wrong


async def test_update_bumps_the_version(tk_uow: UnitOfWork) -> None:
    (ada,) = await _authors(tk_uow, "Ada")
    repo = tk_uow.repo(ArticleRepository)
    article = await repo.add(Article(title="Draft", author_id=ada.id))
    assert article.version == 1
    await repo.update(article, {"title": "Final"})
    assert article.version == 2


async def test_soft_delete_hides_and_restore_brings_back(tk_uow: UnitOfWork) -> None:
    ada, _bob = await _authors(tk_uow, "Ada", "Bob")
    repo = tk_uow.repo(AuthorRepository)
    await repo.delete(ada)
    assert ada.deleted_at is not None
    assert await repo.get(ada.id) is None
    assert [a.name for a in await repo.list()] == ["Bob"]
    assert await repo.count() == 1
    assert await repo.count(include_deleted=True) == 2
    assert not await repo.exists(where=[Author.id == ada.id])
    assert await repo.exists(where=[Author.id == ada.id], include_deleted=True)
    hidden = await repo.get(ada.id, include_deleted=True)
    assert hidden is ada

    await repo.restore(ada)
    tk_uow.session.expunge_all()
    back = await repo.get_one(ada.id)
    assert back.deleted_at is None


async def test_soft_delete_twice_keeps_the_first_time(tk_uow: UnitOfWork) -> None:
    (ada,) = await _authors(tk_uow, "Ada")
    repo = tk_uow.repo(AuthorRepository)
    await repo.delete(ada)
    first = ada.deleted_at
    await repo.delete(ada)
    assert ada.deleted_at == first


async def test_hard_delete_removes_the_row(tk_uow: UnitOfWork) -> None:
    (ada,) = await _authors(tk_uow, "Ada")
    repo = tk_uow.repo(AuthorRepository)
    await repo.delete(ada, hard=True)
    assert await repo.get(ada.id, include_deleted=True) is None


async def test_models_without_soft_delete_are_deleted(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(CounterRepository)
    counter = await repo.add(Counter(namespace="n", key="k"))
    await repo.delete(counter)
    assert await repo.count(include_deleted=True) == 0
    with pytest.raises(TypeError, match="no soft delete"):
        await repo.restore(counter)


async def test_domain_queries_compose_and_respect_soft_delete(tk_uow: UnitOfWork) -> None:
    ada, bob, cy = await _authors(tk_uow, "Ada", "Bob", "Cy")
    articles = tk_uow.repo(ArticleRepository)
    published = await articles.add(
        Article(title="a", author_id=ada.id, published_at=ada.created_at)
    )
    await articles.add(Article(title="b", author_id=bob.id, published_at=bob.created_at))
    await articles.add(Article(title="c", author_id=cy.id))  # a draft
    await articles.delete(published)  # Ada's only published article is gone
    found = await tk_uow.repo(AuthorRepository).list_with_published_articles()
    assert [a.name for a in found] == ["Bob"]


async def test_repositories_are_cached_per_unit_of_work(tk_uow: UnitOfWork) -> None:
    assert tk_uow.repo(AuthorRepository) is tk_uow.repo(AuthorRepository)
    assert tk_uow.repo(AuthorRepository).session is tk_uow.session


@pytest.mark.parametrize("n", [1, 999, 2500])
async def test_add_many_is_batched_and_returns_rows_in_order(tk_uow: UnitOfWork, n: int) -> None:
    rows = [{"name": f"n{i}", "email": f"user{i}@example.com"} for i in range(n)]
    repo = tk_uow.repo(AuthorRepository)
    async with count_queries(tk_uow.session.bind) as q:
        created = await repo.add_many(rows)
    # One INSERT per 1000 rows, plus at most the transaction's BEGIN / SAVEPOINT.
    assert q.count <= math.ceil(n / 1000) + 2, q.statements
    assert [a.email for a in created] == [r["email"] for r in rows]
    assert len({a.id for a in created}) == n
    assert all(a.created_at is not None and a.karma == 0 for a in created)
    assert await repo.count() == n


async def test_add_many_without_returning_is_batched_and_applies_defaults(
    tk_uow: UnitOfWork,
) -> None:
    (ada,) = await _authors(tk_uow, "Ada")
    rows = [{"title": f"t{i}", "author_id": ada.id} for i in range(2500)]
    repo = tk_uow.repo(ArticleRepository)
    async with count_queries(tk_uow.session.bind) as q:
        await repo.add_many(rows, returning=False)
    assert q.count <= 3 + 2, q.statements
    stored = (
        await tk_uow.session.execute(
            select(Article.title, Article.version, Article.created_at).order_by(Article.id)
        )
    ).all()
    assert [r.title for r in stored] == [r["title"] for r in rows]
    assert {r.version for r in stored} == {1}
    assert all(r.created_at.tzinfo is UTC for r in stored)


async def test_add_many_applies_python_defaults(tk_uow: UnitOfWork) -> None:
    (ada,) = await _authors(tk_uow, "Ada")
    made = await tk_uow.repo(ArticleRepository).add_many(
        [{"title": "one", "author_id": ada.id}, {"title": "two", "author_id": ada.id}]
    )
    assert [(a.title, a.version) for a in made] == [("one", 1), ("two", 1)]
    assert all(a.created_at.tzinfo is UTC and a.created_at >= ada.created_at for a in made)
    tk_uow.session.expunge_all()
    stored = await tk_uow.session.scalars(select(Article.version))
    assert stored.all() == [1, 1]


async def test_add_many_with_given_keys_and_edge_cases(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(SettingRepository)
    made = await repo.add_many(
        [{"scope": "s", "name": "b", "value": "2"}, {"scope": "s", "name": "a", "value": "1"}]
    )
    assert [s.name for s in made] == ["b", "a"]
    assert await repo.add_many([]) == []
    with pytest.raises(TypeError, match="colour"):
        await repo.add_many([{"scope": "s", "name": "c", "value": "3", "colour": "red"}])


async def test_add_many_duplicates_raise_a_typed_error(tk_uow: UnitOfWork) -> None:
    rows = [{"name": "x", "email": "same@example.com"}] * 2
    with pytest.raises(Duplicate):
        await tk_uow.repo(AuthorRepository).add_many(rows)
