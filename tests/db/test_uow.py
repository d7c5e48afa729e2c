"""UnitOfWork: explicit commit, rollback by default, savepoints, retrying transactions."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError

from agora.db.errors import Duplicate
from agora.db.repository import Repository
from agora.db.session import Database
from agora.db.uow import UnitOfWork, retrying
from tests.db.models import Author, Counter


async def _count_authors(db: Database) -> int:
    async with db.uow(read_only=True) as uow:
        return int((await uow.session.execute(select(func.count(Author.id)))).scalar_one())


async def test_nothing_is_written_without_commit(committed_database: Database) -> None:
    async with committed_database.uow() as uow:
        uow.session.add(Author(name="Ann", email="ann@example.com"))
        await uow.flush()
    assert await _count_authors(committed_database) == 0

    async with committed_database.uow() as uow:
        uow.session.add(Author(name="Ann", email="ann@example.com"))
        await uow.commit()
    assert await _count_authors(committed_database) == 1


async def test_an_exception_rolls_back_the_whole_unit(committed_database: Database) -> None:
    with pytest.raises(RuntimeError):
        async with committed_database.uow() as uow:
            uow.session.add(Author(name="Ben", email="ben@example.com"))
            await uow.flush()
            raise RuntimeError("use case failed halfway")
    assert await _count_authors(committed_database) == 0


async def test_savepoint_undoes_only_the_nested_work(tk_uow: UnitOfWork) -> None:
    tk_uow.session.add(Author(name="Cat", email="cat@example.com"))
    await tk_uow.flush()
    with pytest.raises(Duplicate):
        async with tk_uow.savepoint():
            tk_uow.session.add(Author(name="Cat again", email="cat@example.com"))
    # The outer work survives the failed nested block and can still commit.
    tk_uow.session.add(Author(name="Dan", email="dan@example.com"))
    await tk_uow.commit()
    names = (await tk_uow.session.execute(select(Author.name).order_by(Author.name))).scalars()
    assert list(names) == ["Cat", "Dan"]


async def test_repositories_are_cached_per_unit(tk_uow: UnitOfWork) -> None:
    class Things:
        def __init__(self, session: object) -> None:
            self.session = session

    assert tk_uow.repo(Things) is tk_uow.repo(Things)
    assert tk_uow.repo(Things).session is tk_uow.session


class AuthorRepository(Repository[Author]):
    model = Author


class SessionAuthorRepository(AuthorRepository):
    takes_unit = False


async def test_a_repository_class_that_takes_the_unit_opens_its_session_only_when_used(
    committed_database: Database,
) -> None:
    async with committed_database.uow() as uow:
        authors = uow.repo(AuthorRepository)
        assert uow.opened_session is None  # made from the unit: no session yet
        await authors.add(Author(name="Eve", email="eve@example.com"))
        assert uow.opened_session is uow.session is authors.session
        await uow.commit()
    async with committed_database.uow() as uow:  # a subclass that asks for the session
        assert uow.repo(SessionAuthorRepository).unit_or_session is uow.opened_session
    async with committed_database.uow(read_only=True) as uow:
        assert [a.name for a in await uow.repo(AuthorRepository).list()] == ["Eve"]


async def test_uow_outside_its_block_is_an_error(committed_database: Database) -> None:
    uow = committed_database.uow()
    with pytest.raises(RuntimeError, match="outside"):
        _ = uow.session
    async with uow:
        pass
    with pytest.raises(RuntimeError, match="outside"):
        _ = uow.session
    with pytest.raises(RuntimeError, match="outside"):
        _ = uow.opened_session


async def _seed_counters(db: Database) -> None:
    async with db.uow() as uow:
        uow.session.add_all(
            [Counter(namespace="n", key="a", value=0), Counter(namespace="n", key="b", value=0)]
        )
        await uow.commit()


async def test_retrying_reruns_serialization_failures(
    committed_database: Database, backend: str
) -> None:
    """Write skew under SERIALIZABLE: two transactions read both rows, then each writes one.

    PostgreSQL aborts one with SQLSTATE 40001; `retrying` runs it again, so both land and the
    invariant (each increment saw the other's committed value) holds. On SQLite the writers
    are serialized by BEGIN IMMEDIATE and no retry is needed.
    """
    await _seed_counters(committed_database)
    both_read = asyncio.Barrier(2)
    attempts: list[str] = []

    async def bump(key: str) -> None:
        async def work() -> None:
            attempts.append(key)
            async with committed_database.uow() as uow:
                if backend == "postgresql":
                    await uow.session.execute(text("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"))
                total = (await uow.session.execute(select(func.sum(Counter.value)))).scalar_one()
                if len(attempts) <= 2 and backend == "postgresql":
                    await asyncio.wait_for(both_read.wait(), 5)  # force the overlap, once
                await uow.session.execute(
                    update(Counter).where(Counter.key == key).values(value=total + 1)
                )
                await uow.commit()

        await retrying(work, attempts=5)

    await asyncio.gather(bump("a"), bump("b"))
    async with committed_database.uow(read_only=True) as uow:
        values = sorted((await uow.session.execute(select(Counter.value))).scalars())
    assert values == [1, 2]  # serial order; [1, 1] would be the write-skew anomaly
    if backend == "postgresql":
        assert len(attempts) == 3  # one of the two was aborted and ran again


class _Deadlock(Exception):
    sqlstate = "40P01"


async def test_retrying_gives_up_after_the_bound() -> None:
    calls = 0

    async def always_deadlocks() -> None:
        nonlocal calls
        calls += 1
        raise DBAPIError("UPDATE ...", {}, _Deadlock("deadlock detected"))

    with pytest.raises(DBAPIError, match="deadlock detected"):
        await retrying(always_deadlocks, attempts=3, base_delay=0.001)
    assert calls == 3


async def test_retrying_does_not_rerun_other_errors(committed_database: Database) -> None:
    calls = 0

    async def duplicate() -> None:
        nonlocal calls
        calls += 1
        async with committed_database.uow() as uow:
            uow.session.add_all(
                [Author(name="E", email="e@example.com"), Author(name="F", email="e@example.com")]
            )
            await uow.commit()

    with pytest.raises(Duplicate):
        await retrying(duplicate, attempts=5)
    assert calls == 1
