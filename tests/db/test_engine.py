"""The engine factory: SQLite pragmas and locking, PostgreSQL session settings, round trips."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from agora.db.engine import make_engine, normalize_url
from agora.db.session import Database
from tests.support.pgproxy import RoundTripProxy


def test_normalize_url_rejects_unknown_drivers() -> None:
    with pytest.raises(ValueError, match="unsupported database driver"):
        normalize_url("mysql://x/y")
    assert normalize_url("sqlite:///a.db").drivername == "sqlite+aiosqlite"


async def test_sqlite_pragmas_are_in_effect_on_app_connections(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}", sqlite_busy_timeout_ms=4321)
    try:
        async with Database(engine).uow(read_only=True) as uow:
            session = uow.session
            assert (await session.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await session.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await session.execute(text("PRAGMA synchronous"))).scalar() == 1  # NORMAL
            assert (await session.execute(text("PRAGMA busy_timeout"))).scalar() == 4321
    finally:
        await engine.dispose()


async def test_in_memory_sqlite_shares_one_database() -> None:
    engine = make_engine("sqlite+aiosqlite://")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 1
    finally:
        await engine.dispose()


async def test_sqlite_concurrent_writers_wait_and_lose_no_update(tmp_path: Path) -> None:
    """40 read-modify-write transactions on 8 connections: no 'database is locked', no lost
    update. A deferred BEGIN would fail here; BEGIN IMMEDIATE serializes the writers."""
    engine = make_engine(
        f"sqlite:///{tmp_path / 'c.db'}", pool_size=8, max_overflow=0, pool_timeout=30
    )
    db = Database(engine)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
            await conn.execute(text("INSERT INTO counter VALUES (1, 0)"))

        async def bump() -> None:
            async with db.uow() as uow:
                n = (await uow.session.execute(text("SELECT n FROM counter"))).scalar_one()
                await asyncio.sleep(0.001)  # let the others run between read and write
                await uow.session.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
                await uow.commit()

        await asyncio.gather(*(bump() for _ in range(40)))
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT n FROM counter"))).scalar() == 40
    finally:
        await engine.dispose()


async def test_sqlite_foreign_keys_are_enforced(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fk.db'}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE p (id INTEGER PRIMARY KEY)"))
            await conn.execute(
                text(
                    "CREATE TABLE c (id INTEGER PRIMARY KEY, "
                    "p_id INTEGER NOT NULL REFERENCES p(id))"
                )
            )
        with pytest.raises(Exception, match="FOREIGN KEY"):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO c VALUES (1, 42)"))
    finally:
        await engine.dispose()


async def test_postgres_session_settings(pg_database_url: str) -> None:
    engine = make_engine(
        pg_database_url,
        statement_timeout_ms=1234,
        lock_timeout_ms=345,
        idle_in_transaction_timeout_ms=5678,
    )
    try:
        async with engine.connect() as conn:
            shown = {
                name: (await conn.execute(text(f"SHOW {name}"))).scalar()
                for name in (
                    "application_name",
                    "statement_timeout",
                    "lock_timeout",
                    "idle_in_transaction_session_timeout",
                )
            }
        assert shown == {
            "application_name": "agora",
            "statement_timeout": "1234ms",
            "lock_timeout": "345ms",
            "idle_in_transaction_session_timeout": "5678ms",
        }
        assert engine.pool.size() == 10  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def _round_trips_sqlite(engine: AsyncEngine, *, read_only: bool) -> list[str]:
    seen: list[str] = []
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.set_trace_callback(seen.append)  # type: ignore[union-attr]
    async with Database(engine).uow(read_only=read_only) as uow:
        await uow.session.execute(text("SELECT 1"))
    return seen


async def test_read_only_unit_of_work_costs_one_round_trip(backend: str, database_url: str) -> None:
    """A read-only request's lone SELECT reaches the server alone: no BEGIN, no ROLLBACK."""
    if backend == "sqlite":
        engine = make_engine(database_url, pool_size=1, max_overflow=0)
        try:
            assert await _round_trips_sqlite(engine, read_only=True) == ["SELECT 1"]
            # The same work in a write unit of work is wrapped in a transaction.
            assert await _round_trips_sqlite(engine, read_only=False) == [
                "BEGIN IMMEDIATE",
                "SELECT 1",
                "ROLLBACK",
            ]
        finally:
            await engine.dispose()
        return

    server = make_url(database_url)
    proxy = RoundTripProxy(server.host or "127.0.0.1", server.port or 5432)
    async with proxy.running():
        url = server.set(host="127.0.0.1", port=proxy.port)
        engine = make_engine(url, pool_size=1, max_overflow=0, connect_args={"ssl": False})
        db = Database(engine)
        try:
            for read_only in (True, False):  # warm up: connect, prepare the statement
                async with db.uow(read_only=read_only) as uow:
                    await uow.session.execute(text("SELECT 1"))
            counts = {}
            for read_only in (True, False):
                before = proxy.round_trips
                async with db.uow(read_only=read_only) as uow:
                    await uow.session.execute(text("SELECT 1"))
                counts[read_only] = proxy.round_trips - before
        finally:
            await engine.dispose()
    assert counts[True] == 1
    assert counts[False] == 3  # BEGIN, SELECT, ROLLBACK: what read-only mode avoids


async def test_sqlite_pool_rolls_back_a_connection_returned_mid_transaction(
    tmp_path: Path,
) -> None:
    """The pool skips the no-op rollback for idle connections, but still rolls back one that
    comes back inside a transaction, so its write lock is released and nothing leaks."""
    engine = make_engine(
        f"sqlite:///{tmp_path / 'r.db'}", pool_size=2, max_overflow=0, sqlite_busy_timeout_ms=200
    )
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            await driver.execute("BEGIN IMMEDIATE")
            await driver.execute("INSERT INTO t VALUES (1)")
            assert driver.in_transaction
        async with engine.begin() as conn:  # would wait on the lock, then fail, if leaked
            await conn.execute(text("INSERT INTO t VALUES (2)"))
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT x FROM t"))).scalars().all() == [2]
    finally:
        await engine.dispose()


async def test_sqlite_units_roll_back_only_what_they_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing a read-only unit costs no trip to aiosqlite's thread for a no-op rollback;
    a write unit left without commit is still rolled back (the row is not kept)."""
    rollbacks: list[bool] = []
    real_rollback = aiosqlite.Connection.rollback

    async def counted(self: aiosqlite.Connection) -> None:
        rollbacks.append(self.in_transaction)
        await real_rollback(self)

    monkeypatch.setattr(aiosqlite.Connection, "rollback", counted)
    engine = make_engine(f"sqlite:///{tmp_path / 'u.db'}", pool_size=1, max_overflow=0)
    db = Database(engine)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        rollbacks.clear()
        for _ in range(3):
            async with db.uow(read_only=True) as uow:
                await uow.session.execute(text("SELECT count(*) FROM t"))
        assert rollbacks == []
        async with db.uow() as uow:
            await uow.session.execute(text("INSERT INTO t VALUES (1)"))
        assert rollbacks == [True]  # the open transaction, rolled back once
        async with db.uow(read_only=True) as uow:
            assert (await uow.session.execute(text("SELECT count(*) FROM t"))).scalar() == 0
    finally:
        await engine.dispose()


async def test_sqlite_statements_make_one_trip_to_the_driver_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each statement is one call on aiosqlite's thread (SQLAlchemy's adapter makes three or
    four), and what SQLAlchemy reads back -- rows, rowcount, lastrowid, errors, streamed
    results -- is unchanged."""
    trips = 0
    real_execute: Any = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal trips
        trips += 1
        return await real_execute(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    engine = make_engine(f"sqlite:///{tmp_path / 'trips.db'}", pool_size=1, max_overflow=0)
    db = Database(engine)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER UNIQUE)"))
        trips = 0
        async with db.uow(read_only=True) as uow:
            result = await uow.session.execute(text("SELECT count(*), 'a' AS label FROM t"))
            assert result.one()._asdict() == {"count(*)": 0, "label": "a"}
        assert trips == 1  # the SELECT alone: no cursor to open or close, no BEGIN

        trips = 0
        async with db.uow() as uow:
            run = uow.session.execute
            inserted = cast(
                CursorResult[Any], await run(text("INSERT INTO t (x) VALUES (10), (20)"))
            )
            assert inserted.rowcount == 2
            one = cast(CursorResult[Any], await run(text("INSERT INTO t (x) VALUES (30)")))
            assert one.lastrowid == 3
            updated = cast(
                CursorResult[Any], await run(text("UPDATE t SET x = x + 1 WHERE x < 25"))
            )
            assert updated.rowcount == 2
            await uow.commit()
        assert trips == 5  # BEGIN IMMEDIATE, three statements, COMMIT

        async with engine.connect() as conn:
            streamed = await conn.stream(text("SELECT x FROM t ORDER BY x"))
            assert [x async for x in streamed.scalars()] == [11, 21, 30]
            with pytest.raises(IntegrityError):
                await conn.execute(text("INSERT INTO t (x) VALUES (30)"))
    finally:
        await engine.dispose()
