"""`Repository[M]`: the SQL of one model, small and composable. It never commits.

    class ArticleRepository(Repository[Article]):
        model = Article
        not_found = ArticleNotFound          # optional: what `get_one` raises

        async def list_by_author(self, author_id: int) -> list[Article]:
            stmt = self.select_stmt(where=[Article.author_id == author_id])
            return await self.all(stmt.order_by(Article.id))

Reads return `None` (or an empty list) when nothing matches and hide soft-deleted rows unless
`include_deleted=True` (see `agora.db.softdelete`). Writes flush, so database errors surface at
the call as typed `agora.db.errors` exceptions, and ids are known; the service commits once.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Generic, Literal, TypeVar, overload

from sqlalchemy import Integer, Select, and_, func, insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper, QueryableAttribute, selectinload
from sqlalchemy.sql.base import ExecutableOption
from sqlalchemy.sql.dml import ReturningInsert
from sqlalchemy.sql.elements import ColumnElement

from agora.db.base import SoftDeleteMixin, utcnow
from agora.db.errors import NotFound, translating
from agora.db.pagination import (
    CursorPage,
    CursorParams,
    Page,
    PageParams,
    paginate,
    paginate_keyset,
)
from agora.db.pagination import OrderBy as KeysetOrder
from agora.db.softdelete import INCLUDE_DELETED, install_soft_delete
from agora.db.uow import UnitOfWork
from agora.db.upsert import UpsertInsert, upsert_statement

M = TypeVar("M")

# What `load=` accepts: loader options (`selectinload(...)`, `joinedload(...)`) or relationship
# attributes, which are loaded with `selectinload`.
Load = ExecutableOption | QueryableAttribute[Any]
Where = Iterable[ColumnElement[bool]]
OrderBy = Iterable[ColumnElement[Any] | QueryableAttribute[Any]]

# Every read through a repository must hide soft-deleted rows, whatever made the session.
install_soft_delete()


class Repository(Generic[M]):
    """Generic data access for the mapped class `model`; subclass and set `model`."""

    model: type[M]
    not_found: ClassVar[type[NotFound]] = NotFound
    # `UnitOfWork.repo` makes this class from the unit itself, not from its session (a
    # subclass whose `__init__` needs the session itself sets this to False).
    takes_unit: ClassVar[bool] = True

    def __init__(self, session: AsyncSession | UnitOfWork) -> None:
        # What `Prepared` statements take: given the unit, a read-only unit runs them without
        # ever opening its session (`agora.db.prepared`).
        self.unit_or_session = session

    @property
    def session(self) -> AsyncSession:
        """The session this repository's statements run in (the unit's, opened on first use)."""
        source = self.unit_or_session
        return source.session if isinstance(source, UnitOfWork) else source

    # --- statements: build, extend, then execute with `all` / `one_or_none` / `scalar` ----

    def select_stmt(
        self,
        *,
        where: Where = (),
        order_by: OrderBy = (),
        load: Iterable[Load] = (),
        limit: int | None = None,
        include_deleted: bool = False,
    ) -> Select[M]:
        """`SELECT model` with the given criteria; extend it with `.where()`, `.join()`, ..."""
        stmt = select(self.model).where(*where).order_by(*order_by)
        stmt = stmt.options(*_loader_options(load)).limit(limit)
        if include_deleted:
            stmt = stmt.execution_options(**{INCLUDE_DELETED: True})
        return stmt

    def pk_criteria(self, ident: Any) -> ColumnElement[bool]:
        """`pk = ident`; `ident` is a tuple for a composite primary key."""
        columns = self._mapper.primary_key
        values = ident if isinstance(ident, tuple) else (ident,)
        if len(values) != len(columns):
            raise ValueError(f"{self.model.__name__} key has {len(columns)} column(s): {ident!r}")
        clauses = [column == value for column, value in zip(columns, values, strict=True)]
        return clauses[0] if len(clauses) == 1 else and_(*clauses)

    async def all(self, stmt: Select[M]) -> builtins.list[M]:
        return builtins.list((await self.session.scalars(stmt)).all())

    async def one_or_none(self, stmt: Select[M]) -> M | None:
        return (await self.session.scalars(stmt)).one_or_none()

    async def scalar(self, stmt: Select[Any]) -> Any:
        return await self.session.scalar(stmt)

    # --- reads --------------------------------------------------------------------------

    async def get(
        self, ident: Any, *, load: Iterable[Load] = (), include_deleted: bool = False
    ) -> M | None:
        """The row with primary key `ident`, or None."""
        stmt = self.select_stmt(load=load, include_deleted=include_deleted)
        return await self.one_or_none(stmt.where(self.pk_criteria(ident)))

    async def get_one(
        self, ident: Any, *, load: Iterable[Load] = (), include_deleted: bool = False
    ) -> M:
        """Like `get`, but a missing row raises `not_found` (a 404)."""
        found = await self.get(ident, load=load, include_deleted=include_deleted)
        if found is None:
            raise self.not_found(f"{self.model.__name__} {ident!r} not found")
        return found

    async def get_by(self, **criteria: Any) -> M | None:
        """The one row whose attributes equal `criteria`, or None (several rows: an error)."""
        return await self.one_or_none(self.select_stmt().filter_by(**criteria))

    async def list(
        self,
        *,
        where: Where = (),
        order_by: OrderBy = (),
        load: Iterable[Load] = (),
        limit: int | None = None,
        include_deleted: bool = False,
    ) -> builtins.list[M]:
        stmt = self.select_stmt(
            where=where, order_by=order_by, load=load, limit=limit, include_deleted=include_deleted
        )
        return await self.all(stmt)

    async def page(
        self,
        params: PageParams,
        *,
        where: Where = (),
        order_by: OrderBy = (),
        load: Iterable[Load] = (),
    ) -> Page[M]:
        """An offset page (`items`, `total`, ...) of the rows matching `where`."""
        stmt = self.select_stmt(where=where, order_by=order_by, load=load)
        return await paginate(self.session, stmt, params)

    async def cursor_page(
        self,
        params: CursorParams,
        *,
        order_by: Sequence[KeysetOrder],
        where: Where = (),
        load: Iterable[Load] = (),
    ) -> CursorPage[M]:
        """A keyset page in `order_by` order, the primary key breaking ties; no count(*)."""
        stmt = self.select_stmt(where=where, load=load)
        return await paginate_keyset(self.session, stmt, params, order_by=order_by)

    async def count(self, *, where: Where = (), include_deleted: bool = False) -> int:
        stmt = select(func.count()).select_from(self.model).where(*where)
        if include_deleted:
            stmt = stmt.execution_options(**{INCLUDE_DELETED: True})
        return int(await self.scalar(stmt))

    async def exists(self, *, where: Where = (), include_deleted: bool = False) -> bool:
        pk = self._mapper.primary_key[0]
        stmt = select(pk).select_from(self.model).where(*where).limit(1)
        if include_deleted:
            stmt = stmt.execution_options(**{INCLUDE_DELETED: True})
        return await self.scalar(stmt) is not None

    # --- writes (flush, never commit) -----------------------------------------------------

    async def add(self, obj: M) -> M:
        """Add `obj` and flush: its primary key and defaults are set on return."""
        self.session.add(obj)
        await self.flush()
        return obj

    @overload
    async def add_many(
        self, rows: Iterable[Mapping[str, Any]], *, returning: Literal[True] = ...
    ) -> builtins.list[M]: ...

    @overload
    async def add_many(
        self, rows: Iterable[Mapping[str, Any]], *, returning: Literal[False]
    ) -> None: ...

    async def add_many(
        self, rows: Iterable[Mapping[str, Any]], *, returning: bool = True
    ) -> builtins.list[M] | None:
        """Insert `rows` (attribute -> value) in batches; return the new objects, in order.

        `returning=False` skips building ORM objects for the new rows (bulk loads): about
        twice as fast for large batches, and nothing is added to the session.

        One `INSERT ... VALUES (...), (...) RETURNING` per 1000 rows on both databases
        (SQLAlchemy's "insertmanyvalues"), where `session.add_all` + flush would send one
        INSERT per row on SQLite. Python-side defaults (timestamps, version) are applied.
        Rows with the same keys batch together; very wide rows make smaller batches, as each
        statement stays within the driver's bound-parameter limit.
        """
        params = [dict(row) for row in rows]
        for row in params:
            self._check_keys(row, columns_only=True)
        if not params:
            return [] if returning else None
        if not returning:
            with translating():
                await self.session.execute(insert(self.model), params)
            return None
        ordered = self._dialect_name != "sqlite"
        # PostgreSQL can batch and still return rows in parameter order. SQLite cannot promise
        # RETURNING order, so SQLAlchemy would fall back to one INSERT per row; there the rows
        # are re-sorted below by their rowid key, which SQLite assigns in VALUES order.
        stmt = insert(self.model).returning(self.model, sort_by_parameter_order=ordered)
        with translating():
            created = builtins.list((await self.session.scalars(stmt, params)).all())
        return created if ordered else self._in_rowid_order(created, params)

    async def update(self, obj: M, data: Mapping[str, Any]) -> M:
        """Set the attributes in `data` (a partial update) and flush; unknown keys raise."""
        self._check_keys(data, columns_only=False)
        for key, value in data.items():
            setattr(obj, key, value)
        await self.flush()
        return obj

    async def delete(self, obj: M, *, hard: bool = False) -> None:
        """Soft-delete (set `deleted_at`) when the model supports it, else delete the row."""
        if hard or not isinstance(obj, SoftDeleteMixin):
            await self.session.delete(obj)
        elif obj.deleted_at is None:  # deleting twice keeps the first deletion time
            obj.deleted_at = utcnow()
        await self.flush()

    async def restore(self, obj: M) -> M:
        """Undo a soft delete."""
        if not isinstance(obj, SoftDeleteMixin):
            raise TypeError(f"{self.model.__name__} has no soft delete to undo")
        obj.deleted_at = None
        await self.flush()
        return obj

    async def flush(self) -> None:
        with translating():
            await self.session.flush()

    # --- upserts ------------------------------------------------------------------------

    @overload
    async def upsert(
        self,
        values: Mapping[str, Any],
        *,
        on: Sequence[str] = ...,
        update: Sequence[str] | None = ...,
        returning: Literal[True] = ...,
    ) -> M: ...

    @overload
    async def upsert(
        self,
        values: Mapping[str, Any],
        *,
        on: Sequence[str] = ...,
        update: Sequence[str] | None = ...,
        returning: Literal[False],
    ) -> None: ...

    async def upsert(
        self,
        values: Mapping[str, Any],
        *,
        on: Sequence[str] = ("email",),
        update: Sequence[str] | None = None,
        returning: bool = True,
    ) -> M | None:
        """Insert `values`, or update the row that has the same `on` columns: one statement.

        `update=None` overwrites every given column but `on`; a tuple names the columns to
        overwrite; `()` leaves an existing row alone (DO NOTHING). With `returning`, the row
        as stored comes back (after DO NOTHING, the existing row is read back).
        Soft-deleted rows still hold their unique values, so an upsert updates them too; pass
        `deleted_at=None` in `values` to revive them.
        """
        self._check_keys(values, columns_only=True)
        stmt = self._upsert(keys=values.keys(), on=on, update=update).values(dict(values))
        if not returning:
            with translating():
                await self.session.execute(stmt)
            return None
        with translating():
            row: M | None = await self.session.scalar(self._returning(stmt))
        if row is None:  # DO NOTHING skipped an existing row: read it back
            key = {name: values[name] for name in on}
            existing = self.select_stmt(include_deleted=True).filter_by(**key)
            row = await self.one_or_none(existing.execution_options(populate_existing=True))
        return row

    async def upsert_many(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        on: Sequence[str],
        update: Sequence[str] | None = None,
    ) -> builtins.list[M]:
        """Upsert many rows in batched statements; return the rows written, in input order.

        Every row must carry the same keys. When one key appears twice the last row wins
        (PostgreSQL refuses to update a row twice in one statement). With `update=()` only
        newly inserted rows come back: existing ones were left alone.
        """
        params = _last_per_key([dict(row) for row in rows], on)
        if not params:
            return []
        keys = params[0].keys()
        for row in params:
            self._check_keys(row, columns_only=True)
            if row.keys() != keys:
                raise ValueError("upsert_many rows must all have the same keys")
        stmt = self._returning(self._upsert(keys=keys, on=on, update=update))
        with translating():
            written = builtins.list((await self.session.scalars(stmt, params)).all())
        return _in_key_order(written, params, on)

    # --- helpers ------------------------------------------------------------------------

    @property
    def _mapper(self) -> Mapper[M]:
        mapper: Mapper[M] = inspect(self.model)
        return mapper

    @property
    def _dialect_name(self) -> str:
        return self.session.get_bind(mapper=self._mapper).dialect.name

    def _upsert(
        self, *, keys: Iterable[str], on: Sequence[str], update: Sequence[str] | None
    ) -> UpsertInsert:
        return upsert_statement(
            self.model, dialect_name=self._dialect_name, keys=set(keys), on=on, update=update
        )

    def _returning(self, stmt: UpsertInsert) -> ReturningInsert[M]:
        # populate_existing: objects already in the session take the values now in the row.
        return stmt.returning(self.model).execution_options(populate_existing=True)

    def _check_keys(self, data: Mapping[str, Any], *, columns_only: bool) -> None:
        known = self._mapper.column_attrs if columns_only else self._mapper.attrs
        unknown = sorted(set(data) - set(known.keys()))
        if unknown:
            raise TypeError(f"{self.model.__name__} has no attribute(s) {unknown}")

    def _in_rowid_order(
        self, created: builtins.list[M], params: builtins.list[dict[str, Any]]
    ) -> builtins.list[M]:
        pk = self._mapper.primary_key
        rowid_keys = len(pk) == 1 and isinstance(pk[0].type, Integer)
        if not rowid_keys or any(pk[0].key in row for row in params):
            return created  # keys not assigned by SQLite: keep the order the database gave
        key = self._mapper.get_property_by_column(pk[0]).key
        return sorted(created, key=lambda obj: getattr(obj, key))


def _loader_options(load: Iterable[Load]) -> builtins.list[ExecutableOption]:
    return [selectinload(item) if isinstance(item, QueryableAttribute) else item for item in load]


def _row_key(row: Mapping[str, Any], on: Sequence[str]) -> tuple[Any, ...]:
    return tuple(row[name] for name in on)


def _last_per_key(
    rows: builtins.list[dict[str, Any]], on: Sequence[str]
) -> builtins.list[dict[str, Any]]:
    missing = [name for name in on if any(name not in row for row in rows)]
    if missing:
        raise ValueError(f"upsert rows lack the conflict column(s) {missing}")
    by_key = {_row_key(row, on): row for row in rows}  # later rows replace earlier ones
    return builtins.list(by_key.values())


def _in_key_order(
    written: builtins.list[M], params: builtins.list[dict[str, Any]], on: Sequence[str]
) -> builtins.list[M]:
    by_key = {tuple(getattr(obj, name) for name in on): obj for obj in written}
    ordered = [by_key.pop(_row_key(row, on)) for row in params if _row_key(row, on) in by_key]
    return ordered + builtins.list(by_key.values())  # values the database normalised
