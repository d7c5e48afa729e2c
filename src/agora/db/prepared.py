"""`PreparedSelect`: a hot Core read compiled once and run straight on the pooled connection.

    USER_BY_ID = PreparedSelect(
        select(users.c.id, users.c.name)
        .where(users.c.id == bindparam("user_id"), users.c.deleted_at.is_(None))
    )
    row = await USER_BY_ID.one_or_none(session, user_id=5)    # {"id": 5, "name": ...} or None
    rows = await USER_BY_ID.all(session, user_id=5)
    name = await NAME_BY_ID.scalar(session, user_id=5)

Why: on a one-query read, SQLAlchemy's execution machinery (a `Connection`, its execution
context and events, a `Result`, and the ORM session around them) costs several times what
the driver does; profiled on `GET /users/{id}`, it was about 40% of the request
(bench/README.md, "Fifth round"). A `PreparedSelect` keeps everything that makes
SQLAlchemy worth having -- the statement is built and compiled by SQLAlchemy for the
engine's dialect, its values go through the column types' bind and result processors (an
`Enum` column still comes back as the enum), the connection comes from the engine's pool
and goes through SQLAlchemy's DBAPI adapter (so asyncpg's prepared-statement cache, error
classes and disconnect detection are SQLAlchemy's) -- and drops only the per-execution
layers in between: one `greenlet_spawn` checks a connection out, runs the statement on its
cursor and returns the connection.

The direct path is taken only where it means exactly what `session.execute()` would:

* the session is one of `Database`'s read-only sessions (each statement in autocommit:
  nothing to join) and holds no connection yet (`in_transaction()` false), and
* nobody listens to the engine's statement events (`before_cursor_execute`,
  `after_cursor_execute`, `handle_error`: e.g. `agora.db.testing.count_queries`, or an
  OpenTelemetry instrumentation), which the direct path does not fire -- except
  `agora.db.monitoring`, which registers with `observe_direct` and is told of each direct
  statement itself (its counters and slow-statement log see every read).

Anywhere else (a write unit of work, a test's rollback session, a replica's session, an
engine behind PgBouncer) the same statement goes through `session.execute()`, with the same
result. Errors come out as SQLAlchemy's `DBAPIError` subclasses either way, and a connection
the driver reports lost is invalidated, not returned to the pool.

Only Core statements against tables are accepted: ORM entities need the ORM (and soft delete
hides their deleted rows through it), so a `PreparedSelect` says its own
`deleted_at IS NULL`. Expanding `IN` parameters are refused (their SQL changes per call).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.util.concurrency import greenlet_spawn

DIRECT_READS = "agora.direct_reads"  # key of `Session.info`: this session may read directly


_EXPANDING = (
    "PreparedSelect cannot hold expanding IN or literal-execute parameters (their SQL changes "
    "per call): run the statement with session.execute()"
)


class DirectObserver(Protocol):
    """Told of every statement the direct path runs (see `observe_direct`)."""

    def direct_statement(
        self, statement: str, parameters: Any, elapsed: float, error: BaseException | None
    ) -> None: ...


# Per dialect (shared by an engine and its `execution_options()` views, kept across
# `dispose()`): the observers standing in for their own statement listeners.
_observers: weakref.WeakKeyDictionary[Dialect, list[DirectObserver]] = weakref.WeakKeyDictionary()


def observe_direct(engine: Engine, observer: DirectObserver) -> Callable[[], None]:
    """Register `observer`, which has attached exactly one listener for each of
    `before_cursor_execute`, `after_cursor_execute` and `handle_error` to `engine`, as
    accounting for direct statements itself. Returns the function that unregisters it
    (call it when detaching those listeners)."""
    observers = _observers.setdefault(engine.dialect, [])
    observers.append(observer)
    return lambda: observers.remove(observer)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    bind_order: tuple[str, ...] | None  # positional dialects: the names in order
    bind_processors: Mapping[str, Callable[[Any], Any]]
    compiled: Any  # SQLCompiler: `construct_params` fills in the statement's own values


class PreparedSelect:
    """A Core SELECT, compiled once per dialect; see the module docstring."""

    def __init__(self, statement: Select[Any]) -> None:
        # An ORM attribute anywhere (a column, a WHERE) makes it an ORM statement, which
        # the session would run through the ORM and its soft-delete hook.
        if statement._propagate_attrs.get("compile_state_plugin") == "orm":
            raise TypeError(
                "PreparedSelect takes Core statements (table columns), not ORM entities"
            )
        if statement.compile().post_compile_params:  # the default dialect tells already
            raise ValueError(_EXPANDING)
        self.statement = statement
        self.keys = tuple(statement.selected_columns.keys())
        self._types = [column.type for column in statement.selected_columns]
        self._compiled: weakref.WeakKeyDictionary[Dialect, _Compiled] = weakref.WeakKeyDictionary()
        self._results: weakref.WeakKeyDictionary[Dialect, list[Callable[[Any], Any] | None]] = (
            weakref.WeakKeyDictionary()
        )

    # --- the three reads ---------------------------------------------------------------------

    async def all(self, session: AsyncSession, /, **params: Any) -> list[dict[str, Any]]:
        return await self._fetch(session, params)

    async def one_or_none(self, session: AsyncSession, /, **params: Any) -> dict[str, Any] | None:
        """The only row, or None; `MultipleResultsFound` when there are more."""
        rows = await self._fetch(session, params)
        if len(rows) > 1:
            raise sa_exc.MultipleResultsFound(
                "Multiple rows were found when one or none was required"
            )
        return rows[0] if rows else None

    async def scalar(self, session: AsyncSession, /, **params: Any) -> Any:
        """The first column of the first row, or None."""
        rows = await self._fetch(session, params)
        return rows[0][self.keys[0]] if rows else None

    # --- how --------------------------------------------------------------------------------

    async def _fetch(self, session: AsyncSession, params: dict[str, Any]) -> list[dict[str, Any]]:
        bind = session.bind
        if (
            session.info.get(DIRECT_READS)
            and not session.in_transaction()
            and bind is not None
            and _only_observed(bind.sync_engine)
        ):
            return await greenlet_spawn(self._run, bind.sync_engine, params)
        result = await session.execute(self.statement, params)
        return [dict(row) for row in result.mappings()]

    def _prepare(self, dialect: Dialect) -> _Compiled:
        prepared = self._compiled.get(dialect)
        if prepared is None:
            compiled: Any = self.statement.compile(dialect=dialect)
            if compiled.literal_execute_params or compiled.post_compile_params:
                raise ValueError(_EXPANDING)
            processors = {}
            for name, bind in compiled.binds.items():
                processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if processor is not None:
                    processors[name] = processor
            order = tuple(compiled.positiontup) if compiled.positional else None
            prepared = self._compiled[dialect] = _Compiled(
                compiled.string, order, processors, compiled
            )
        return prepared

    def _parameters(
        self, prepared: _Compiled, params: dict[str, Any]
    ) -> Sequence[Any] | dict[str, Any]:
        values: dict[str, Any] = prepared.compiled.construct_params(params)
        for name, processor in prepared.bind_processors.items():
            if name in values:
                values[name] = processor(values[name])
        if prepared.bind_order is None:
            return values
        return tuple(values[name] for name in prepared.bind_order)

    def _run(self, engine: Engine, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Check out, execute, fetch, return the connection (inside `greenlet_spawn`)."""
        dialect = engine.dialect
        prepared = self._prepare(dialect)
        try:
            parameters = self._parameters(prepared, params)
        except Exception as error:  # a bind processor refused a value: as SQLAlchemy says it
            raise _wrapped(engine, error, prepared.sql, params, invalidated=False) from error
        observers = _observers.get(dialect, ())
        started = time.perf_counter()
        try:
            pooled = engine.raw_connection()
        except dialect.loaded_dbapi.Error as error:  # as `Connection` reports it
            raise _wrapped(engine, error, None, None, invalidated=False) from error
        dbapi_connection: Any = pooled.dbapi_connection
        cursor = None
        autocommit = dialect.name != "sqlite"  # SQLite connections here emit no BEGIN
        try:
            if autocommit:
                dialect.set_isolation_level(dbapi_connection, "AUTOCOMMIT")
            cursor = dbapi_connection.cursor()
            cursor.execute(prepared.sql, parameters)
            raw_rows = cursor.fetchall()
            description = cursor.description
            cursor.close()
        except BaseException as error:
            if not isinstance(error, Exception) or (
                isinstance(error, dialect.loaded_dbapi.Error)
                and dialect.is_disconnect(error, dbapi_connection, cursor)
            ):
                # Lost, or cancelled mid-statement (state unknown): never reused, as
                # SQLAlchemy's `Connection` does.
                pooled.invalidate(error)
            elapsed = time.perf_counter() - started
            for observer in observers:
                observer.direct_statement(prepared.sql, parameters, elapsed, error)
            if not isinstance(error, dialect.loaded_dbapi.Error):
                raise
            invalidated = not pooled.is_valid
            raise _wrapped(engine, error, prepared.sql, parameters, invalidated) from error
        finally:
            try:
                if autocommit and pooled.is_valid:
                    dialect.reset_isolation_level(dbapi_connection)
            finally:
                pooled.close()
        elapsed = time.perf_counter() - started
        for observer in observers:
            observer.direct_statement(prepared.sql, parameters, elapsed, None)
        processors = self._results.get(dialect)
        if processors is None:
            processors = self._results[dialect] = self._result_processors(dialect, description)
        keys = self.keys
        rows = []
        for raw in raw_rows:
            values = [
                value if processor is None or value is None else processor(value)
                for processor, value in zip(processors, raw, strict=True)
            ]
            rows.append(dict(zip(keys, values, strict=True)))
        return rows

    def _result_processors(
        self, dialect: Dialect, description: Sequence[Any]
    ) -> list[Callable[[Any], Any] | None]:
        if len(description) != len(self._types):
            raise RuntimeError(f"{len(description)} columns came back, {len(self._types)} expected")
        return [
            type_.dialect_impl(dialect).result_processor(dialect, column[1])
            for type_, column in zip(self._types, description, strict=True)
        ]


def _wrapped(
    engine: Engine, error: Exception, sql: str | None, parameters: Any, invalidated: bool
) -> BaseException:
    dialect = engine.dialect
    return sa_exc.DBAPIError.instance(
        sql,
        parameters,
        error,
        dialect.loaded_dbapi.Error,
        hide_parameters=engine.hide_parameters,
        connection_invalidated=invalidated,
        dialect=dialect,
        ismulti=False,
    )


def _only_observed(engine: Engine) -> bool:
    """Whether every statement listener of `engine` belongs to a registered observer."""
    expected = len(_observers.get(engine.dialect, ()))
    dispatch = engine.dispatch  # an `execution_options()` view's counts its engine's too
    return (
        len(dispatch.before_cursor_execute) == expected
        and len(dispatch.after_cursor_execute) == expected
        and len(engine.dialect.dispatch.handle_error) == expected  # a dialect event
    )
