"""Database errors come out of flush/commit as typed errors, the same on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from agora.db import errors
from agora.db.errors import (
    CheckViolation,
    Conflict,
    Duplicate,
    ForeignKeyViolation,
    IntegrityViolation,
    InvalidData,
    NotNullViolation,
    StaleData,
    on_constraint,
)
from agora.db.session import Database
from agora.db.uow import UnitOfWork
from tests.db.models import Article, Author, Counter, Reading


class EmailTaken(Conflict):
    default_detail = "That email is already registered"


class KeyTaken(Conflict):
    pass


@pytest.fixture
def constraint_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Domain mappings registered by a test are forgotten after it."""
    monkeypatch.setattr(errors, "_constraint_errors", dict(errors._constraint_errors))


async def _author(uow: UnitOfWork, email: str = "ada@example.com") -> Author:
    author = Author(name="Ada", email=email)
    uow.session.add(author)
    await uow.flush()
    return author


async def test_unique_violation_is_a_duplicate(tk_uow: UnitOfWork) -> None:
    await _author(tk_uow)
    tk_uow.session.add(Author(name="Other", email="ada@example.com"))
    with pytest.raises(Duplicate) as info:
        await tk_uow.flush()
    error = info.value
    assert error.status_code == 409
    assert error.constraint == "uq_author_email"
    assert error.fields == ("email",)
    assert error.table == "author"
    assert error.detail == "email already taken"


async def test_composite_unique_violation_names_every_field(tk_uow: UnitOfWork) -> None:
    tk_uow.session.add(Counter(namespace="n", key="k"))
    await tk_uow.flush()
    tk_uow.session.add(Counter(namespace="n", key="k"))
    with pytest.raises(Duplicate) as info:
        await tk_uow.commit()
    assert info.value.constraint == "uq_counter_namespace_key"
    assert info.value.fields == ("namespace", "key")


async def test_foreign_key_violation(tk_uow: UnitOfWork) -> None:
    tk_uow.session.add(Article(title="orphan", author_id=424242))
    with pytest.raises(ForeignKeyViolation) as info:
        await tk_uow.flush()
    assert info.value.status_code == 409


async def test_check_violation_names_the_constraint(tk_uow: UnitOfWork) -> None:
    tk_uow.session.add(Author(name="Neg", email="neg@example.com", karma=-1))
    with pytest.raises(CheckViolation) as info:
        await tk_uow.commit()
    assert info.value.status_code == 422
    assert info.value.constraint == "ck_author_karma_nonnegative"


async def test_not_null_violation_names_the_column(tk_uow: UnitOfWork) -> None:
    tk_uow.session.add(Author(name=None, email="anon@example.com"))
    with pytest.raises(NotNullViolation) as info:
        await tk_uow.flush()
    assert info.value.status_code == 422
    assert info.value.fields == ("name",)
    assert info.value.table == "author"


async def test_a_named_constraint_maps_to_a_domain_error(
    tk_uow: UnitOfWork, constraint_registry: None
) -> None:
    on_constraint("uq_author_email", EmailTaken)
    await _author(tk_uow)
    tk_uow.session.add(Author(name="Other", email="ada@example.com"))
    with pytest.raises(EmailTaken, match="already registered"):
        await tk_uow.commit()


async def test_a_factory_receives_the_violation(
    tk_uow: UnitOfWork, constraint_registry: None
) -> None:
    def key_taken(violation: IntegrityViolation) -> KeyTaken:
        return KeyTaken(f"taken: {', '.join(violation.fields)}")

    on_constraint("uq_counter_namespace_key", key_taken)
    tk_uow.session.add(Counter(namespace="n", key="k"))
    await tk_uow.flush()
    tk_uow.session.add(Counter(namespace="n", key="k"))
    with pytest.raises(KeyTaken, match="taken: namespace, key"):
        await tk_uow.flush()


async def test_unmapped_constraints_stay_generic(
    tk_uow: UnitOfWork, constraint_registry: None
) -> None:
    on_constraint("uq_counter_namespace_key", KeyTaken)
    await _author(tk_uow)
    tk_uow.session.add(Author(name="Other", email="ada@example.com"))
    with pytest.raises(Duplicate):
        await tk_uow.flush()


async def test_errors_inside_a_savepoint_are_typed_and_contained(tk_uow: UnitOfWork) -> None:
    await _author(tk_uow)
    with pytest.raises(Duplicate):
        async with tk_uow.savepoint():
            tk_uow.session.add(Author(name="Other", email="ada@example.com"))
    # The outer transaction survives: it can still write and commit.
    await _author(tk_uow, email="bo@example.com")
    await tk_uow.commit()
    count = len((await tk_uow.session.scalars(select(Author))).all())
    assert count == 2


async def test_a_row_deleted_under_an_update_is_stale_data(committed_database: Database) -> None:
    async with committed_database.uow() as uow:
        author = await _author(uow)
        await uow.commit()
    async with committed_database.uow(read_only=True) as reader:
        mine = await reader.session.get(Author, author.id)
    async with committed_database.uow() as other:
        await other.session.execute(delete(Author).where(Author.id == author.id))
        await other.commit()
    async with committed_database.uow() as uow:
        assert mine is not None
        uow.session.add(mine)
        mine.name = "Too late"
        with pytest.raises(StaleData) as info:
            await uow.commit()
        assert info.value.status_code == 409


async def test_nul_byte_in_text(tk_uow: UnitOfWork, backend: str) -> None:
    tk_uow.session.add(Author(name="nul\x00byte", email="nul@example.com"))
    if backend == "sqlite":  # SQLite stores the text as given
        await tk_uow.flush()
        stored = await tk_uow.session.scalar(select(Author.name))
        assert stored == "nul\x00byte"
        return
    with pytest.raises(InvalidData) as info:
        await tk_uow.flush()
    assert info.value.status_code == 422
    assert "NUL" in info.value.detail


INT64 = range(-(2**63), 2**63)


@pytest.mark.parametrize(
    ("model", "value"),
    [(Counter, 2**31), (Counter, -(2**31) - 1), (Reading, 2**63), (Reading, -(2**63) - 1)],
)
async def test_integers_out_of_range(
    tk_uow: UnitOfWork, backend: str, model: type[Counter | Reading], value: int
) -> None:
    # PostgreSQL INTEGER is 32 bits and BIGINT 64; SQLite stores any 64-bit integer.
    row = (
        Counter(namespace="n", key="k", value=value) if model is Counter else Reading(amount=value)
    )
    tk_uow.session.add(row)
    if backend == "sqlite" and value in INT64:
        await tk_uow.flush()
        tk_uow.session.expunge_all()
        assert (await tk_uow.session.scalars(select(model))).one() is not None
        return
    with pytest.raises(InvalidData, match="out of range") as info:
        await tk_uow.flush()
    assert info.value.status_code == 422
