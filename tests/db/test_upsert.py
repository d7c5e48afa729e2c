"""Native upserts: INSERT ... ON CONFLICT, one statement, race-free."""

from __future__ import annotations

import asyncio
import math

import pytest
from sqlalchemy import select

from agora.db.repository import Repository
from agora.db.session import Database
from agora.db.testing import count_queries
from agora.db.uow import UnitOfWork
from tests.db.models import Article, Author, Counter, Setting


class CounterRepository(Repository[Counter]):
    model = Counter


class AuthorRepository(Repository[Author]):
    model = Author


class ArticleRepository(Repository[Article]):
    model = Article


class SettingRepository(Repository[Setting]):
    model = Setting


ON = ("namespace", "key")


async def _rows(uow: UnitOfWork) -> list[tuple[object, ...]]:
    stmt = select(Counter.namespace, Counter.key, Counter.value, Counter.label)
    return [tuple(row) for row in await uow.session.execute(stmt.order_by(Counter.key))]


async def test_upsert_inserts_then_updates_in_one_statement(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(CounterRepository)
    first = await repo.upsert({"namespace": "n", "key": "k", "value": 1}, on=ON)
    async with count_queries(tk_uow.session.bind) as q:
        second = await repo.upsert({"namespace": "n", "key": "k", "value": 2}, on=ON)
    inserts = [s for s in q.statements if s.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == len(q.statements) == 1, q.statements
    sql = " ".join(inserts[0].split()).upper().replace('"', "")  # SQLite quotes "key"
    assert "ON CONFLICT (NAMESPACE, KEY) DO UPDATE SET" in sql
    assert "RETURNING" in sql
    assert second.id == first.id
    assert await _rows(tk_uow) == [("n", "k", 2, None)]


async def test_update_names_the_columns_to_overwrite(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(CounterRepository)
    await repo.upsert({"namespace": "n", "key": "k", "value": 1, "label": "old"}, on=ON)
    row = await repo.upsert(
        {"namespace": "n", "key": "k", "value": 9, "label": "new"}, on=ON, update=("value",)
    )
    assert (row.value, row.label) == (9, "old")
    assert await _rows(tk_uow) == [("n", "k", 9, "old")]


async def test_do_nothing_keeps_the_existing_row_and_returns_it(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(CounterRepository)
    original = await repo.upsert({"namespace": "n", "key": "k", "value": 1}, on=ON)
    tk_uow.session.expunge_all()
    async with count_queries(tk_uow.session.bind) as q:
        again = await repo.upsert({"namespace": "n", "key": "k", "value": 5}, on=ON, update=())
    assert "DO NOTHING" in q.statements[0].upper()
    assert (again.id, again.value) == (original.id, 1)
    assert await _rows(tk_uow) == [("n", "k", 1, None)]


async def test_returning_false_still_writes(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(CounterRepository)
    await repo.upsert({"namespace": "n", "key": "k", "value": 3}, on=ON, returning=False)
    assert await _rows(tk_uow) == [("n", "k", 3, None)]


async def test_objects_in_the_session_reflect_the_stored_row(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(CounterRepository)
    held = await repo.add(Counter(namespace="n", key="k", value=1))
    returned = await repo.upsert({"namespace": "n", "key": "k", "value": 7}, on=ON)
    assert returned is held  # same identity, refreshed by populate_existing
    assert held.value == 7


async def test_update_moves_updated_at_and_keeps_created_at(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(AuthorRepository)
    first = await repo.upsert({"name": "Ada", "email": "ada@example.com"})
    created, updated = first.created_at, first.updated_at
    second = await repo.upsert({"name": "Ada L.", "email": "ada@example.com"})
    assert second.name == "Ada L."
    assert second.created_at == created
    assert second.updated_at > updated


async def test_update_bumps_the_version(tk_uow: UnitOfWork) -> None:
    author = await tk_uow.repo(AuthorRepository).upsert({"name": "A", "email": "a@example.com"})
    repo = tk_uow.repo(ArticleRepository)
    article = await repo.add(Article(title="v1", author_id=author.id))
    assert article.version == 1
    values = {"id": article.id, "title": "v2", "author_id": author.id}
    again = await repo.upsert(values, on=("id",))
    assert (again.title, again.version) == ("v2", 2)


async def test_upsert_on_a_composite_primary_key(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(SettingRepository)
    await repo.upsert({"scope": "s", "name": "theme", "value": "light"}, on=("scope", "name"))
    stored = await repo.upsert(
        {"scope": "s", "name": "theme", "value": "dark"}, on=("scope", "name")
    )
    assert stored.value == "dark"
    assert await repo.count() == 1


async def test_upsert_updates_soft_deleted_rows_and_can_revive_them(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(AuthorRepository)
    ada = await repo.upsert({"name": "Ada", "email": "ada@example.com"})
    await repo.delete(ada)
    still_gone = await repo.upsert({"name": "Ada 2", "email": "ada@example.com"})
    assert still_gone.is_deleted
    assert await repo.get(ada.id) is None
    revived = await repo.upsert({"name": "Ada 3", "email": "ada@example.com", "deleted_at": None})
    assert not revived.is_deleted
    assert (await repo.get_one(ada.id)).name == "Ada 3"


async def test_bad_arguments_are_refused(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(CounterRepository)
    with pytest.raises(ValueError, match="conflict column"):
        await repo.upsert({"namespace": "n", "value": 1}, on=ON)
    with pytest.raises(TypeError, match="colour"):
        await repo.upsert({"namespace": "n", "key": "k", "colour": "red"}, on=ON)
    with pytest.raises(TypeError, match="colour"):
        await repo.upsert({"namespace": "n", "key": "k"}, on=ON, update=("colour",))
    assert await _rows(tk_uow) == []


async def test_upsert_many_is_batched_and_in_input_order(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(CounterRepository)
    await repo.add_many(
        [{"namespace": "n", "key": f"k{i:05}", "value": -1} for i in range(0, 2500, 2)]
    )
    rows = [{"namespace": "n", "key": f"k{i:05}", "value": i} for i in reversed(range(2500))]
    async with count_queries(tk_uow.session.bind) as q:
        written = await repo.upsert_many(rows, on=ON)
    assert q.count <= math.ceil(2500 / 1000) + 2, q.statements
    assert [c.key for c in written] == [r["key"] for r in rows]
    assert all(c.value == int(c.key[1:]) for c in written)
    assert await repo.count() == 2500


async def test_upsert_many_last_duplicate_wins(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(CounterRepository)
    rows = [
        {"namespace": "n", "key": "a", "value": 1},
        {"namespace": "n", "key": "b", "value": 2},
        {"namespace": "n", "key": "a", "value": 3},
    ]
    written = await repo.upsert_many(rows, on=ON)
    assert [(c.key, c.value) for c in written] == [("a", 3), ("b", 2)]
    assert await _rows(tk_uow) == [("n", "a", 3, None), ("n", "b", 2, None)]


async def test_upsert_many_do_nothing_returns_only_new_rows(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(CounterRepository)
    await repo.upsert({"namespace": "n", "key": "a", "value": 1}, on=ON)
    rows = [{"namespace": "n", "key": k, "value": 9} for k in ("a", "b")]
    written = await repo.upsert_many(rows, on=ON, update=())
    assert [(c.key, c.value) for c in written] == [("b", 9)]
    assert await _rows(tk_uow) == [("n", "a", 1, None), ("n", "b", 9, None)]


async def test_upsert_many_rows_must_share_keys(tk_uow: UnitOfWork) -> None:
    repo = tk_uow.repo(CounterRepository)
    rows: list[dict[str, object]] = [
        {"namespace": "n", "key": "a", "value": 1},
        {"namespace": "n", "key": "b"},
    ]
    with pytest.raises(ValueError, match="same keys"):
        await repo.upsert_many(rows, on=ON)
    assert await repo.upsert_many([], on=ON) == []


async def test_concurrent_upserts_of_one_key_make_one_row(committed_database: Database) -> None:
    async def upsert(i: int) -> int:
        async with committed_database.uow() as uow:
            row = await uow.repo(CounterRepository).upsert(
                {"namespace": "race", "key": "k", "value": i, "label": f"task {i}"}, on=ON
            )
            await uow.commit()
            return row.id

    results = await asyncio.gather(*(upsert(i) for i in range(50)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    assert len(set(results)) == 1  # every task saw the same row
    async with committed_database.uow(read_only=True) as uow:
        rows = (await uow.session.execute(select(Counter.value, Counter.label))).all()
    assert len(rows) == 1
    value, label = rows[0]
    assert label == f"task {value}"  # one task's write, not a mix of two
