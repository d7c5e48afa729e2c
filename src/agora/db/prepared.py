"""`Prepared`: hot Core statements compiled once and run straight on the DBAPI connection.

    USER_BY_ID = Prepared(
        select(users.c.id, users.c.name)
        .where(users.c.id == bindparam("user_id"), users.c.deleted_at.is_(None))
    )
    row = await USER_BY_ID.one_or_none(uow, user_id=5)    # {"id": 5, "name": ...} or None
    rows = await USER_BY_ID.all(uow.session, user_id=5)     # a unit of work, or its session
    name = await NAME_BY_ID.scalar(repo.unit_or_session, user_id=5)   # in a Repository
    PAY = Prepared(update(users).values(credits=users.c.credits + bindparam("delta"),
                                        updated_at=bindparam("now")).returning(users.c.id))

Why: SQLAlchemy's per-execution machinery (a `Connection`'s execute, its execution context
and events, a `Result`, the ORM session around them) costs several times what the driver
does; profiled on `GET /users/{id}` it was about 40% of the request, and 60% of a credit
transfer's (bench/README.md, "Fifth round"). A `Prepared` statement keeps everything that
makes SQLAlchemy worth having -- the statement is built and compiled by SQLAlchemy for the
engine's dialect, its values go through the column types' bind and result processors (an
`Enum` column still comes back as the enum), connections come from the engine's pool and
transactions are the session's, and errors, disconnect detection and transaction state are
those of SQLAlchemy's DBAPI adapter (see asyncpg below) -- and drops only the per-execution
layers in between, in one `greenlet_spawn`:

* in a read-only unit of work of `Database` whose session holds no connection (each of its
  statements runs on its own, in autocommit), a connection is checked out of the pool, the
  statement runs, the connection goes back (a PostgreSQL one in its default isolation level).
  Given the unit itself rather than its session, a unit that has not created its session yet
  does not create one for this (`UnitOfWork.session` is made on first use);
* in a unit of work of `Database` otherwise, the statement runs on the session's connection,
  inside the session's transaction -- begun by `session.connection()` exactly as
  `session.execute()` would begin it -- so it commits or rolls back with the rest.

On asyncpg, once a statement's first run on an engine has told its columns' database types
(through the adapter's cursor: some types' result processing depends on them), it runs on
the driver's own `fetch` (asyncpg's statement cache) wherever asyncpg's transaction state is
already what the adapter would make it: outside any transaction for an autocommit read (so
no isolation level to set and reset), and inside the transaction once the adapter's BEGIN is
open on the server (`is_in_transaction()`; the adapter sends it with the transaction's first
statement, which therefore goes through the cursor). Driver errors are raised as the
adapter's DB-API classes, as its cursor raises them.

A Core statement run by `session.execute()` is not autoflushed either, so both ways see the
same data. The direct path is only taken where nobody listens to the engine's statement
events (`before_cursor_execute`, `after_cursor_execute`, `handle_error`: e.g.
`agora.db.testing.count_queries`, or an OpenTelemetry instrumentation), which it does not
fire -- except `agora.db.monitoring`, which registers with `observe_direct` and is told of
each direct statement itself. Anywhere else (a test's rollback session, a replica's session,
an engine behind PgBouncer, a session from another factory) the same statement goes through
`session.execute()`, with the same rows. Errors come out as SQLAlchemy's `DBAPIError`
subclasses either way, and a connection lost or cancelled mid-statement is invalidated.

What is refused when built (or first compiled for a dialect): ORM statements (an ORM entity
or attribute anywhere: they need the ORM, and soft delete hides deleted rows through it, so a
`Prepared` statement says its own `deleted_at IS NULL`); INSERT, UPDATE and DELETE without
RETURNING; expanding `IN` parameters (their SQL changes per call); and columns whose value
SQLAlchemy's execution would compute in Python (`default=` / `onupdate=` callables and
scalars, such as `TimestampMixin.updated_at`): give them explicit values.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import Executable, Select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.util.concurrency import await_only, greenlet_spawn

from agora.db.uow import UnitOfWork

# Key of `Session.info`: how this session's `Prepared` statements may run directly.
DIRECT = "agora.direct"
AUTOCOMMIT = "autocommit"  # each statement on its own (read-only units): a pooled connection
TRANSACTION = "transaction"  # on the session's connection, in its transaction (write units)


_EXPANDING = (
    "Prepared cannot hold expanding IN or literal-execute parameters (their SQL changes "
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


@dataclass
class _OnDialect:
    """What a `Prepared` statement needs on one dialect, worked out once."""

    dialect: Dialect
    sql: str
    bind_order: tuple[str, ...] | None  # positional dialects: the names in order
    bind_processors: Mapping[str, Callable[[Any], Any]]
    compiled: Any  # SQLCompiler: `construct_params` fills in the statement's own values
    observers: list[DirectObserver]  # the dialect's, live (see `observe_direct`)
    # Learned from the first run's cursor description (the result processors of some types
    # depend on the column's database type): until then, a run goes through the DBAPI cursor.
    results: list[Callable[[Any], Any] | None] | None = None
    # asyncpg: once `results` is known, the statement may run on the driver's own `fetch`
    # (outside a transaction, or inside one the adapter has begun on the server).
    on_driver: bool = False


class Prepared:
    """A Core SELECT, or INSERT / UPDATE / DELETE ... RETURNING, compiled once per dialect;
    see the module docstring."""

    def __init__(self, statement: Executable) -> None:
        # An ORM attribute anywhere (a column, a WHERE) makes it an ORM statement, which
        # the session would run through the ORM and its soft-delete hook.
        if statement._propagate_attrs.get("compile_state_plugin") == "orm":
            raise TypeError("Prepared takes Core statements (table columns), not ORM entities")
        if isinstance(statement, UpdateBase) and not statement._returning:
            raise TypeError("Prepared runs INSERT, UPDATE and DELETE with RETURNING only")
        if not isinstance(statement, Select | UpdateBase):
            raise TypeError(f"Prepared takes a SELECT or a DML statement, not {statement!r}")
        _check_compiled(statement.compile())  # the default dialect tells already
        self.statement = statement
        columns = statement.exported_columns
        self.keys = tuple(str(key) for key, _ in columns.items())
        self._types = [column.type for _, column in columns.items()]
        self._dialects: weakref.WeakKeyDictionary[Dialect, _OnDialect] = weakref.WeakKeyDictionary()
        # The last dialect used, looked up without building a weak reference: a statement
        # almost always runs on one engine's dialect.
        self._last: _OnDialect | None = None

    # --- the three ways to take the rows -----------------------------------------------------

    async def all(
        self, session: AsyncSession | UnitOfWork, /, **params: Any
    ) -> list[dict[str, Any]]:
        return await self._fetch(session, params)

    async def one_or_none(
        self, session: AsyncSession | UnitOfWork, /, **params: Any
    ) -> dict[str, Any] | None:
        """The only row, or None; `MultipleResultsFound` when there are more."""
        rows = await self._fetch(session, params)
        if len(rows) > 1:
            raise sa_exc.MultipleResultsFound(
                "Multiple rows were found when one or none was required"
            )
        return rows[0] if rows else None

    async def scalar(self, session: AsyncSession | UnitOfWork, /, **params: Any) -> Any:
        """The first column of the first row, or None."""
        rows = await self._fetch(session, params)
        return rows[0][self.keys[0]] if rows else None

    # --- how --------------------------------------------------------------------------------

    async def _fetch(
        self, target: AsyncSession | UnitOfWork, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        session = target.opened_session if isinstance(target, UnitOfWork) else target
        if session is not None:
            info, bind, in_transaction = session.info, session.bind, session.in_transaction()
        else:  # a unit without a session yet: decide as its session would
            factory = cast(UnitOfWork, target).session_factory
            kw: dict[str, Any] = getattr(factory, "kw", {})
            info, bind, in_transaction = kw.get("info") or {}, kw.get("bind"), False
        mode = info.get(DIRECT)
        if mode and bind is not None:
            # (An `AsyncSession`'s bind is an engine here: `Database` binds its factories so.)
            engine = bind.sync_engine
            on = self._on(engine.dialect)
            if _only_observed(engine, on.observers):
                if mode == AUTOCOMMIT and not in_transaction:
                    return await greenlet_spawn(self._run_pooled, engine, on, params)
                sync_session = _session_of(target, session).sync_session
                return await greenlet_spawn(self._run_in_session, sync_session, on, params)
        result = await _session_of(target, session).execute(self.statement, params)
        return [dict(row) for row in result.mappings()]

    def _run_pooled(
        self, engine: Engine, on: _OnDialect, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Check out, execute, return the connection (inside `greenlet_spawn`): a statement
        on its own, as a read-only unit's session would run it (autocommit)."""
        dialect = engine.dialect
        parameters = self._bound(engine, on, params)
        try:
            pooled = engine.raw_connection()
        except dialect.loaded_dbapi.Error as error:  # as `Connection` reports it
            lost = dialect.is_disconnect(error, None, None)
            raise _wrapped(engine, error, None, None, invalidated=lost) from error
        dbapi_connection: Any = pooled.dbapi_connection
        # asyncpg's own `fetch` outside a transaction is autocommit already; SQLite
        # connections here emit no BEGIN. Otherwise: the adapter, set to autocommit.
        driver_connection = pooled.driver_connection if on.on_driver else None
        autocommit = driver_connection is None and dialect.name != "sqlite"
        try:
            if autocommit:
                dialect.set_isolation_level(dbapi_connection, "AUTOCOMMIT")
            return self._execute(
                engine, on, dbapi_connection, pooled.invalidate, parameters, driver_connection
            )
        finally:
            try:
                if autocommit and pooled.is_valid:
                    dialect.reset_isolation_level(dbapi_connection)
            finally:
                pooled.close()

    def _run_in_session(
        self, session: Session, on: _OnDialect, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """On the session's connection, inside its transaction (begun here if need be, as
        `session.execute()` would begin it)."""
        connection = session.connection()
        parameters = self._bound(connection.engine, on, params)
        pooled = connection.connection
        dbapi_connection: Any = pooled.dbapi_connection
        driver_connection: Any = None
        if on.on_driver:
            # asyncpg: once the adapter's BEGIN is open on the server (it is sent with the
            # transaction's first statement), the driver's `fetch` runs inside it.
            driver_connection = pooled.driver_connection
            if not driver_connection.is_in_transaction():
                driver_connection = None
        return self._execute(
            connection.engine, on, dbapi_connection, connection.invalidate, parameters,
            driver_connection,
        )  # fmt: skip

    def _bound(self, engine: Engine, on: _OnDialect, params: dict[str, Any]) -> Any:
        try:
            return self._parameters(on, params)
        except Exception as error:  # a bind processor refused a value: as SQLAlchemy says it
            raise _wrapped(engine, error, on.sql, params, invalidated=False) from error

    def _execute(
        self,
        engine: Engine,
        on: _OnDialect,
        dbapi_connection: Any,
        invalidate: Callable[[BaseException | None], None],
        parameters: Any,
        driver_connection: Any = None,
    ) -> list[dict[str, Any]]:
        dialect = engine.dialect
        started = time.perf_counter()
        cursor = None
        description = None
        try:
            if driver_connection is not None:
                raw_rows = await_only(driver_connection.fetch(on.sql, *parameters))
            else:
                cursor = dbapi_connection.cursor()
                cursor.execute(on.sql, parameters)
                raw_rows = cursor.fetchall()
                description = cursor.description
                cursor.close()
        except BaseException as caught:
            error = caught
            if driver_connection is not None and isinstance(error, Exception):
                error = _adapted_error(dbapi_connection, error)
            lost = not isinstance(error, Exception) or (
                isinstance(error, dialect.loaded_dbapi.Error)
                and dialect.is_disconnect(error, dbapi_connection, cursor)
            )
            if lost:
                # Lost, or cancelled mid-statement (state unknown): never reused, as
                # SQLAlchemy's `Connection` does.
                invalidate(error)
            elapsed = time.perf_counter() - started
            for observer in on.observers:
                observer.direct_statement(on.sql, parameters, elapsed, error)
            if not isinstance(error, dialect.loaded_dbapi.Error):
                if error is caught:
                    raise
                raise error from caught
            raise _wrapped(engine, error, on.sql, parameters, lost) from error
        elapsed = time.perf_counter() - started
        for observer in on.observers:
            observer.direct_statement(on.sql, parameters, elapsed, None)
        processors = on.results
        if processors is None:
            processors = on.results = self._result_processors(dialect, description)
            on.on_driver = dialect.driver == "asyncpg"
        keys = self.keys
        rows = []
        for raw in raw_rows:
            values = [
                value if processor is None or value is None else processor(value)
                for processor, value in zip(processors, raw, strict=True)
            ]
            rows.append(dict(zip(keys, values, strict=True)))
        return rows

    def _on(self, dialect: Dialect) -> _OnDialect:
        on = self._last
        if on is not None and on.dialect is dialect:
            return on
        on = self._dialects.get(dialect)
        if on is None:
            compiled: Any = self.statement.compile(dialect=dialect)
            _check_compiled(compiled)
            processors = {}
            for name, bind in compiled.binds.items():
                processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if processor is not None:
                    processors[name] = processor
            order = tuple(compiled.positiontup) if compiled.positional else None
            on = self._dialects[dialect] = _OnDialect(
                dialect, compiled.string, order, processors, compiled,
                _observers.setdefault(dialect, []),
            )  # fmt: skip
        self._last = on
        return on

    def _parameters(self, on: _OnDialect, params: dict[str, Any]) -> Sequence[Any] | dict[str, Any]:
        values: dict[str, Any] = on.compiled.construct_params(params)
        for name, processor in on.bind_processors.items():
            if name in values:
                values[name] = processor(values[name])
        if on.bind_order is None:
            return values
        return tuple(values[name] for name in on.bind_order)

    def _result_processors(
        self, dialect: Dialect, description: Sequence[Any] | None
    ) -> list[Callable[[Any], Any] | None]:
        if description is None or len(description) != len(self._types):
            got = "no" if description is None else len(description)
            raise RuntimeError(f"{got} columns came back, {len(self._types)} expected")
        return [
            type_.dialect_impl(dialect).result_processor(dialect, column[1])
            for type_, column in zip(self._types, description, strict=True)
        ]


def _check_compiled(compiled: Any) -> None:
    if compiled.literal_execute_params or compiled.post_compile_params:
        raise ValueError(_EXPANDING)
    if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
        names = [c.name for c in [*compiled.insert_prefetch, *compiled.update_prefetch]]
        raise ValueError(
            f"column(s) {', '.join(names)} take Python-side defaults (default=, onupdate=), "
            "which SQLAlchemy's execution computes: give them explicit values"
        )


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


def _only_observed(engine: Engine, observers: list[DirectObserver]) -> bool:
    """Whether every statement listener of `engine` belongs to a registered observer."""
    expected = len(observers)
    dispatch = engine.dispatch  # an `execution_options()` view's counts its engine's too
    return (
        len(dispatch.before_cursor_execute) == expected
        and len(dispatch.after_cursor_execute) == expected
        and len(engine.dialect.dispatch.handle_error) == expected  # a dialect event
    )


def _session_of(target: AsyncSession | UnitOfWork, opened: AsyncSession | None) -> AsyncSession:
    """`opened`, or the session `target` (a unit of work that has none yet) creates now."""
    if opened is not None:
        return opened
    return target.session if isinstance(target, UnitOfWork) else target


def _adapted_error(dbapi_connection: Any, error: Exception) -> BaseException:
    """What SQLAlchemy's DBAPI adapter raises for a driver's `error` (asyncpg's exceptions
    as the adapter's DB-API classes), as its cursor would have raised it."""
    try:
        dbapi_connection._handle_exception(error)
    except BaseException as adapted:
        return adapted
    return error  # pragma: no cover - the adapter always raises
