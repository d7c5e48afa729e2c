"""Dialect-aware async engine factory.

One function, `make_engine`, builds an `AsyncEngine` for SQLite (aiosqlite) or PostgreSQL
(asyncpg) with the settings each needs to behave well under concurrency:

* SQLite: foreign keys on, WAL, `synchronous=NORMAL`, a busy timeout, and write transactions
  opened with `BEGIN IMMEDIATE`. The sqlite3 driver's legacy transaction mode is switched off
  (`isolation_level = None`) so that *we* emit BEGIN: a deferred BEGIN lets two writers both
  read, then fail at once with "database is locked" when they upgrade to a write lock, while
  `BEGIN IMMEDIATE` takes the write lock up front and waits on the busy timeout instead.
  See https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl
  Every connection also gets the Unicode-aware `lower()` that `agora.db.filters.contains`
  needs (`enable_sqlite_search`). Each statement makes one trip to aiosqlite's thread
  instead of SQLAlchemy's three or four (`agora.db.sqlite_driver`).
* Both (file databases): SQLAlchemy's asyncio queue pool with waiters served first come,
  first served (`agora.db.pool.FairAsyncQueuePool`).
* PostgreSQL: a queue pool of the configured size, `application_name`, and server-side
  `statement_timeout` / `lock_timeout` / `idle_in_transaction_session_timeout` sent in the
  startup packet (no extra round trip); opening a connection gives up after `connect_timeout`
  seconds. `lock_timeout` bounds the wait for a row or table lock on its own, so a request
  stuck behind another transaction's lock gives up (SQLSTATE 55P03) well before the
  statement timeout.
* PostgreSQL behind PgBouncer in transaction pooling mode (`pgbouncer=True`): consecutive
  transactions of one client connection may run on different server connections, so no
  named prepared statement may outlive its transaction. asyncpg's statement cache and
  SQLAlchemy's are switched off and every statement asyncpg still prepares gets a unique
  name (https://docs.sqlalchemy.org/en/20/dialects/postgresql.html#prepared-statement-name-with-pgbouncer).
  The three timeouts are *not* sent in the startup packet, which PgBouncer refuses ("unsupported
  startup parameter") unless listed in its `ignore_startup_parameters`; set them on the
  server instead (`ALTER ROLE ... SET statement_timeout = ...`), see docs/deploy.md.
  SQLAlchemy's asyncpg adapter prepares each statement, then executes it: two exchanges that
  PgBouncer may send to two different servers unless a transaction holds them together, so
  `autocommit_engine` of such an engine keeps transactions (BEGIN ... ROLLBACK: two more round
  trips per read-only unit of work; the price of transaction pooling on PgBouncer < 1.21).

`autocommit_engine(engine)` returns a view of the same pool whose connections run each
statement on its own, with no BEGIN/ROLLBACK around it: a read-only request then costs exactly
one round trip per statement.
"""

from __future__ import annotations

import uuid
import weakref
from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from agora.db.filters import enable_sqlite_search
from agora.db.pool import FairAsyncQueuePool
from agora.db.sqlite_driver import one_trip_dbapi

# Execution option read by the SQLite "begin" hook: when set, no BEGIN is emitted.
_SQLITE_AUTOCOMMIT = "agora_autocommit"

_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}
_SUPPORTED = {"postgresql+asyncpg", "sqlite+aiosqlite"}
# Dialects of engines made with `pgbouncer=True` (a dialect is shared by an engine's views).
_PGBOUNCER_DIALECTS: weakref.WeakSet[Dialect] = weakref.WeakSet()


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL and switch it to the async driver Agora uses.

    `postgres://` and `postgresql://` become `postgresql+asyncpg://`, `sqlite://` becomes
    `sqlite+aiosqlite://`. Anything else raises `ValueError` with a readable message.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception as exc:  # sqlalchemy raises ArgumentError for garbage
        raise ValueError(f"not a database URL: {url!r}") from exc
    name = parsed.drivername
    if name in _DRIVERS:
        parsed = parsed.set(drivername=_DRIVERS[name])
    if parsed.drivername not in _SUPPORTED:
        raise ValueError(
            f"unsupported database driver {name!r}: use a sqlite:// or postgresql:// URL"
        )
    return parsed


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def is_memory_sqlite(url: URL) -> bool:
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or "mode=memory" in str(url.query)
    )


def make_engine(
    url: str | URL,
    *,
    echo: bool = False,
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_timeout: float = 5.0,
    pool_recycle: int = 1800,
    pool_pre_ping: bool = False,
    statement_timeout_ms: int = 30_000,
    lock_timeout_ms: int = 0,
    idle_in_transaction_timeout_ms: int = 60_000,
    sqlite_busy_timeout_ms: int = 5_000,
    connect_timeout: float | None = 5.0,
    application_name: str = "agora",
    pgbouncer: bool = False,
    connect_args: dict[str, Any] | None = None,
    **engine_kwargs: Any,
) -> AsyncEngine:
    """Create an `AsyncEngine` configured for the URL's dialect (see module docstring)."""
    parsed = normalize_url(url)
    kwargs: dict[str, Any] = {"echo": echo, **engine_kwargs}
    args: dict[str, Any] = dict(connect_args or {})
    pool_kwargs: dict[str, Any] = {"pool_recycle": pool_recycle, "pool_pre_ping": pool_pre_ping}
    if "poolclass" not in engine_kwargs:  # sizes apply to the default queue pool only
        # SQLAlchemy's asyncio queue pool, serving waiters in arrival order (agora.db.pool).
        pool_kwargs.update(
            poolclass=FairAsyncQueuePool,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
        )
    if parsed.get_backend_name() == "sqlite":
        if is_memory_sqlite(parsed):
            # Every connection to ":memory:" is a new empty database: share one connection.
            kwargs["poolclass"] = StaticPool
            args.setdefault("check_same_thread", False)
        else:
            kwargs.update(pool_kwargs)
        # The pool's rollback-on-return costs a trip to aiosqlite's thread even when nothing
        # is open (always, for read-only autocommit work); the "reset" hook below rolls back
        # only a connection that is really inside a transaction.
        kwargs.setdefault("pool_reset_on_return", None)
        kwargs.setdefault("module", one_trip_dbapi())  # one thread trip per statement
        engine = create_async_engine(parsed, connect_args=args, **kwargs)
        _install_sqlite_hooks(
            engine, busy_timeout_ms=sqlite_busy_timeout_ms, wal=not is_memory_sqlite(parsed)
        )
        enable_sqlite_search(engine)  # Unicode-aware lower() for `filters.contains`
        return engine

    server_settings = dict(args.pop("server_settings", {}))
    server_settings.setdefault("application_name", application_name)
    if pgbouncer:
        args.setdefault("statement_cache_size", 0)  # asyncpg's own cache
        args.setdefault("prepared_statement_cache_size", 0)  # SQLAlchemy's asyncpg adapter
        args.setdefault("prepared_statement_name_func", _unique_statement_name)
    elif statement_timeout_ms:
        server_settings.setdefault("statement_timeout", str(statement_timeout_ms))
    if lock_timeout_ms and not pgbouncer:
        server_settings.setdefault("lock_timeout", str(lock_timeout_ms))
    if idle_in_transaction_timeout_ms and not pgbouncer:
        server_settings.setdefault(
            "idle_in_transaction_session_timeout", str(idle_in_transaction_timeout_ms)
        )
    args["server_settings"] = server_settings
    if connect_timeout is not None:
        # asyncpg waits 60 s by default for a server that accepts but does not answer (a
        # host gone behind a firewall): bound it so an outage gives a prompt 503, not a hang.
        args.setdefault("timeout", connect_timeout)
    engine = create_async_engine(parsed, connect_args=args, **pool_kwargs, **kwargs)
    if pgbouncer:
        _PGBOUNCER_DIALECTS.add(engine.dialect)
    return engine


def behind_pgbouncer(engine: AsyncEngine) -> bool:
    """Whether `engine` was made with `pgbouncer=True`."""
    return engine.dialect in _PGBOUNCER_DIALECTS


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4()}__"


def autocommit_engine(engine: AsyncEngine) -> AsyncEngine:
    """A view of `engine` (same pool) whose statements run without BEGIN/ROLLBACK.

    Use it for read-only work: a lone SELECT then costs one round trip instead of three.
    Behind PgBouncer (`pgbouncer=True`) it returns `engine` itself: see the module docstring.
    """
    if behind_pgbouncer(engine):
        return engine
    if is_sqlite(engine):
        return engine.execution_options(**{_SQLITE_AUTOCOMMIT: True})
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def _install_sqlite_hooks(engine: AsyncEngine, *, busy_timeout_ms: int, wal: bool) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver; the "begin" hook below emits BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if wal:
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(sync_engine, "reset")
    def _on_reset(dbapi_connection: Any, _record: Any, _state: Any) -> None:
        if dbapi_connection._connection.in_transaction:  # aiosqlite reads it in-thread
            dbapi_connection.rollback()

    # Closing a connection (every session's end) rolls its SQLAlchemy transaction back with
    # the driver's rollback(), a trip to aiosqlite's thread even when no BEGIN was emitted
    # (read-only units: one of five trips per read). Only a connection that is inside a
    # transaction needs it. `do_rollback` is the dialect's hook for exactly this call.
    rollback = sync_engine.dialect.do_rollback

    def _rollback_if_open(dbapi_connection: Any) -> None:
        if dbapi_connection._connection.in_transaction:
            rollback(dbapi_connection)

    sync_engine.dialect.do_rollback = _rollback_if_open  # type: ignore[method-assign]

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(_SQLITE_AUTOCOMMIT):
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE")
