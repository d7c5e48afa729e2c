"""`agora.db.monitoring`: pool gauges, checkout waits, statement metrics, slow-statement log."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import SingletonThreadPool

from agora.db import monitoring
from agora.db.engine import autocommit_engine, make_engine
from agora.db.monitoring import Instrumentation, instrument

MakeEngine = Callable[..., Awaitable[AsyncEngine]]


@pytest.fixture
async def make_test_engine(database_url: str) -> AsyncIterator[MakeEngine]:
    """`await make_test_engine(pool_size=..., ...)`: an engine of its own on the current
    backend's test database (the tests only read), disposed of after the test."""
    engines: list[AsyncEngine] = []

    async def make(**kwargs: Any) -> AsyncEngine:
        engine = make_engine(database_url, **kwargs)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.dispose()


class Metrics:
    """Reads one instrumented pool's samples from a registry."""

    def __init__(self, registry: CollectorRegistry, pool: str) -> None:
        self.registry = registry
        self.pool = pool

    def __call__(self, name: str) -> float:
        value = self.registry.get_sample_value(name, {"pool": self.pool})
        return 0.0 if value is None else value


def watch(engine: AsyncEngine, **kwargs: Any) -> tuple[Instrumentation, Metrics]:
    registry = CollectorRegistry()
    return instrument(engine, registry=registry, name="test", **kwargs), Metrics(registry, "test")


async def eventually(condition: Callable[[], bool]) -> None:
    """Let other tasks run until `condition()` holds (bounded; fails the test otherwise)."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


@pytest.fixture(params=["scraped", "written"])
def gauge_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How the pool gauges get their values: read from the instrumentation's counts when
    scraped (one process), or written on every change (prometheus-client's multiprocess
    mode, where a scrape reads other processes' files)."""
    if request.param == "written":
        monkeypatch.setattr(monitoring, "multiprocess_values", lambda: True)
    return str(request.param)


async def test_pool_gauges_follow_checkouts_and_overflow(
    make_test_engine: MakeEngine, gauge_mode: str
) -> None:
    engine = await make_test_engine(pool_size=2, max_overflow=1)
    instrumentation, m = watch(engine)
    assert instrumentation._write_gauges is (gauge_mode == "written")
    assert m("db_pool_size") == 2
    assert m("db_pool_checked_out") == 0

    first = await engine.connect()
    assert (m("db_pool_checked_out"), m("db_pool_connections")) == (1, 1)
    second, third = await engine.connect(), await engine.connect()
    assert m("db_pool_checked_out") == 3
    assert m("db_pool_overflow") == 1  # the third connection is beyond pool_size

    for conn in (first, second, third):
        await conn.close()
    assert m("db_pool_checked_out") == 0
    assert m("db_pool_overflow") == 0  # the overflow connection is closed, not kept
    assert m("db_pool_connections") == 2


def test_a_pool_that_reuses_its_checkout_counts_it_once() -> None:
    """`SingletonThreadPool` hands a thread the connection it already holds: one checkout,
    whatever the number of `connect()` calls (the `checkout` event tells; a queue pool's
    checkouts are counted where they are acquired)."""
    engine = create_engine("sqlite://", poolclass=SingletonThreadPool)
    _, m = watch(engine)  # type: ignore[arg-type]
    with engine.connect() as outer:
        with engine.connect() as inner:
            inner.execute(text("SELECT 1"))
            assert m("db_pool_checked_out") == 1
        outer.execute(text("SELECT 1"))
        assert m("db_pool_checked_out") == 1
    assert m("db_pool_checked_out") == 0
    assert m("db_pool_checkout_wait_seconds_count") == 2  # both acquisitions timed
    engine.dispose()


async def test_waiting_callers_and_their_wait_are_measured(
    make_test_engine: MakeEngine, gauge_mode: str
) -> None:
    engine = await make_test_engine(pool_size=1, max_overflow=0, pool_timeout=30)
    _, m = watch(engine)
    holder = await engine.connect()
    assert m("db_pool_checkout_wait_seconds_count") == 1

    async def acquire() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    waiter = asyncio.create_task(acquire())
    await eventually(lambda: m("db_pool_waiting") == 1)
    assert m("db_pool_checked_out") == 1
    await holder.close()
    await waiter
    assert m("db_pool_waiting") == 0
    assert m("db_pool_checkout_wait_seconds_count") == 2
    assert m("db_pool_checkout_timeouts_total") == 0


async def test_an_acquisition_that_times_out_is_counted(make_test_engine: MakeEngine) -> None:
    engine = await make_test_engine(pool_size=1, max_overflow=0, pool_timeout=0.2)
    _, m = watch(engine)
    async with engine.connect():
        with pytest.raises(sa_exc.TimeoutError):
            await engine.connect()
    assert m("db_pool_checkout_timeouts_total") == 1
    assert m("db_pool_waiting") == 0
    assert m("db_pool_checked_out") == 0


async def test_waits_are_still_measured_after_dispose(make_test_engine: MakeEngine) -> None:
    """`dispose()` swaps in a new pool; the instrumentation follows it."""
    engine = await make_test_engine()
    _, m = watch(engine)
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    await engine.dispose()
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
        assert m("db_pool_checked_out") == 1
    assert m("db_pool_checkout_wait_seconds_count") == 2
    assert m("db_pool_checked_out") == 0


async def _run(conn: AsyncConnection, *statements: str) -> None:
    for statement in statements:
        await conn.execute(text(statement))


async def test_statements_are_counted_timed_and_errors_counted(
    make_test_engine: MakeEngine,
) -> None:
    engine = await make_test_engine()
    _, m = watch(engine)
    async with autocommit_engine(engine).connect() as conn:  # no BEGIN/ROLLBACK in the count
        await _run(conn, "SELECT 1", "SELECT 2", "SELECT 3")
        with pytest.raises(sa_exc.DBAPIError):
            await conn.execute(text("SELECT * FROM no_such_table"))
    assert m("db_statements_total") == 3
    assert m("db_statement_duration_seconds_count") == 3
    assert m("db_statement_errors_total") == 1


async def test_remove_stops_the_counting(make_test_engine: MakeEngine) -> None:
    engine = await make_test_engine()
    instrumentation, m = watch(engine)
    async with autocommit_engine(engine).connect() as conn:
        await _run(conn, "SELECT 1")
        instrumentation.remove()
        await _run(conn, "SELECT 2")
    assert m("db_statements_total") == 1
    assert m("db_pool_checked_out") == 1  # frozen at its value when removed


async def test_two_engines_share_one_registry(make_test_engine: MakeEngine) -> None:
    registry = CollectorRegistry()
    one, two = await make_test_engine(pool_size=3), await make_test_engine(pool_size=4)
    instrument(one, registry=registry, name="one")
    instrument(two, registry=registry, name="two")
    assert registry.get_sample_value("db_pool_size", {"pool": "one"}) == 3
    assert registry.get_sample_value("db_pool_size", {"pool": "two"}) == 4


def _slow_sql(engine: AsyncEngine, backend: str, ms: int) -> str:
    """A statement that takes `ms` milliseconds on the server."""
    if backend == "postgresql":
        return f"SELECT pg_sleep({ms / 1000}), :secret AS s"

    def sleep_ms(ms: int) -> int:
        time.sleep(ms / 1000)
        return ms

    @event.listens_for(engine.sync_engine, "connect")
    def _add_sleep(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("sleep_ms", 1, sleep_ms)

    return f"SELECT sleep_ms({ms}), :secret AS s"


def _slow_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "agora.db.monitoring"]


async def test_slow_statements_are_logged_without_their_parameters(
    make_test_engine: MakeEngine, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = await make_test_engine()
    sql = _slow_sql(engine, backend, 200)
    _, m = watch(engine, slow_statement_ms=100)
    caplog.set_level(logging.WARNING, "agora.db.monitoring")
    async with autocommit_engine(engine).connect() as conn:
        await conn.execute(text("SELECT 1"))  # fast: not logged
        await conn.execute(text(sql), {"secret": "hunter2-password"})

    [record] = _slow_records(caplog)
    assert "sleep" in record.getMessage()
    assert "hunter2-password" not in record.getMessage()
    assert record.parameters == "[hidden]"  # type: ignore[attr-defined]
    assert record.duration_ms >= 200  # type: ignore[attr-defined]
    assert m("db_slow_statements_total") == 1


async def test_parameters_are_logged_when_asked(
    make_test_engine: MakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    engine = await make_test_engine()
    watch(engine, slow_statement_ms=0, log_parameters=True)  # 0: every statement
    caplog.set_level(logging.WARNING, "agora.db.monitoring")
    async with autocommit_engine(engine).connect() as conn:
        await conn.execute(text("SELECT :secret AS s"), {"secret": "visible-value"})
    [record] = _slow_records(caplog)
    assert "visible-value" in record.getMessage()
