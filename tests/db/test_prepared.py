"""`Prepared`: the direct paths (a pooled connection for a read-only unit, the session's
connection and transaction for a write unit) return what the session returns, leave the pool
as they found it, and keep transactions, errors, lost connections, cancellation and metrics
SQLAlchemy's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Float, Integer, bindparam, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from agora.db.engine import autocommit_engine, make_engine
from agora.db.errors import DatabaseTimeout, Duplicate, ServiceUnavailable, translate
from agora.db.monitoring import instrument
from agora.db.prepared import Prepared
from agora.db.session import Database
from agora.db.testing import count_queries
from tests.db.models import Counter, Ticket, TicketStatus, ToolkitBase

T = ToolkitBase.metadata.tables["ticket"]
OPEN_TICKETS = Prepared(
    select(T.c.id, T.c.title, T.c.status, T.c.price, T.c.due_at.label("due"))
    .where(
        T.c.status == TicketStatus.open,  # a value of the statement's own, bound by SQLAlchemy
        T.c.price >= bindparam("min_price"),
        T.c.deleted_at.is_(None),
    )
    .order_by(T.c.id)
)
TITLE = Prepared(select(T.c.title).where(T.c.id == bindparam("id", type_=Integer)))
DUE_BEFORE = Prepared(select(T.c.id).where(T.c.due_at < bindparam("when")))
DUE = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def _session_path(engine: AsyncEngine) -> Database:
    """The same engine, with session factories of its own: no direct path."""
    return Database(
        engine,
        sessionmaker=async_sessionmaker(engine, expire_on_commit=False),
        read_sessionmaker=async_sessionmaker(autocommit_engine(engine), expire_on_commit=False),
    )


async def _add_tickets(db: Database) -> list[int]:
    async with db.uow() as uow:
        tickets = [
            Ticket(title="due", status=TicketStatus.open, price=Decimal("12.50"), due_at=DUE),
            Ticket(title="undated", status=TicketStatus.open, price=Decimal("3.00")),
            Ticket(title="closed", status=TicketStatus.closed, price=Decimal("20.00")),
            Ticket(title="gone", status=TicketStatus.open, price=Decimal("9.00"), deleted_at=DUE),
            Ticket(title="cheap", status=TicketStatus.open, price=Decimal("0.50")),
        ]
        uow.session.add_all(tickets)
        await uow.commit()
        return [t.id for t in tickets]


async def test_a_direct_read_returns_what_the_session_returns(
    committed_database: Database, toolkit_engine: AsyncEngine
) -> None:
    ids = await _add_tickets(committed_database)
    async with committed_database.uow(read_only=True) as uow:
        direct = await OPEN_TICKETS.all(uow.session, min_price=Decimal("1"))
        # Again: on asyncpg, a statement whose column types are known runs on the driver.
        again = await OPEN_TICKETS.all(uow.session, min_price=Decimal("1"))
        title = await TITLE.scalar(uow.session, id=ids[2])
        one = await TITLE.one_or_none(uow.session, id=ids[0])
        missing = await TITLE.one_or_none(uow.session, id=-1)
        # The direct path: the session never began, and no connection stays checked out.
        assert not uow.session.in_transaction()
        assert toolkit_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with committed_database.uow() as uow:  # a write unit: in its transaction
        in_transaction = await OPEN_TICKETS.all(uow.session, min_price=Decimal("1"))
        assert uow.session.in_transaction()
    async with _session_path(toolkit_engine).uow(read_only=True) as uow:
        through_session = await OPEN_TICKETS.all(uow.session, min_price=Decimal("1"))
        assert uow.session.in_transaction()  # `session.execute()` began the session

    assert direct == again == in_transaction == through_session
    assert [row["title"] for row in direct] == ["due", "undated"]
    first = direct[0]
    assert list(first) == ["id", "title", "status", "price", "due"]
    assert first["status"] is TicketStatus.open
    assert first["price"] == Decimal("12.50")
    assert isinstance(first["price"], Decimal)
    assert first["due"] == DUE
    assert first["due"].tzinfo is not None
    assert direct[1]["due"] is None
    assert title == "closed"
    assert one == {"title": "due"}
    assert missing is None


async def test_given_the_unit_a_read_needs_no_session_and_a_write_opens_one(
    committed_database: Database, toolkit_engine: AsyncEngine
) -> None:
    ids = await _add_tickets(committed_database)
    async with committed_database.uow(read_only=True) as uow:
        by_unit = await OPEN_TICKETS.all(uow, min_price=Decimal("1"))
        assert await TITLE.scalar(uow, id=ids[2]) == "closed"
        assert uow.opened_session is None  # a read-only unit's direct reads: no session at all
        by_session = await OPEN_TICKETS.all(uow.session, min_price=Decimal("1"))
    assert by_unit == by_session
    assert [row["title"] for row in by_unit] == ["due", "undated"]
    async with committed_database.uow() as uow:  # a write unit: its session, its transaction
        created = await NEW_COUNTER.one_or_none(uow, namespace="unit", key="k", value=1)
        assert created is not None
        assert uow.opened_session is not None
        assert uow.session.in_transaction()
        # leaving without commit rolls the INSERT back
    async with committed_database.uow(read_only=True) as uow:
        assert await COUNTERS.all(uow, namespace="unit") == []
    # A statement listener the direct path cannot serve: the unit opens its session for it.
    async with (
        count_queries(toolkit_engine) as queries,
        committed_database.uow(read_only=True) as uow,
    ):
        assert await TITLE.scalar(uow, id=ids[0]) == "due"
        assert uow.opened_session is not None
    assert queries.count == 1
    async with _session_path(toolkit_engine).uow(read_only=True) as uow:  # no direct path
        assert await OPEN_TICKETS.all(uow, min_price=Decimal("1")) == by_session
        assert uow.session.in_transaction()


async def test_bound_values_go_through_the_column_types(committed_database: Database) -> None:
    ids = await _add_tickets(committed_database)
    async with committed_database.uow(read_only=True) as uow:
        rows = await DUE_BEFORE.all(uow.session, when=datetime(2027, 1, 1, tzinfo=UTC))
        assert rows == [{"id": ids[0]}]
        # UTCDateTime refuses a naive datetime: the error SQLAlchemy gives, not a bare one.
        with pytest.raises(StatementError, match="naive datetime"):
            await DUE_BEFORE.all(uow.session, when=datetime(2027, 1, 1))


async def test_a_connection_goes_back_to_the_pool_transactional(
    toolkit_engine: AsyncEngine, committed_database: Database
) -> None:
    # One connection: the write below runs on the very connection the direct read used.
    db = Database(make_engine(toolkit_engine.url, pool_size=1, max_overflow=0))
    try:
        async with db.uow(read_only=True) as uow:
            assert await TITLE.one_or_none(uow.session, id=1) is None
            assert await TITLE.one_or_none(uow.session, id=1) is None  # on asyncpg: the driver
        async with db.uow() as uow:
            uow.session.add(Counter(namespace="prepared", key="k", value=1))
            await uow.flush()  # written inside the transaction, never committed
        async with db.uow(read_only=True) as uow:
            count = await uow.session.scalar(select(func.count()).select_from(Counter))
        assert count == 0, "the write was committed: the connection stayed in autocommit"
    finally:
        await db.dispose()


C = ToolkitBase.metadata.tables["counter"]
BUMP = Prepared(
    update(C)
    .where(C.c.namespace == bindparam("namespace"))
    .values(value=C.c.value + bindparam("by", type_=Integer))
    .returning(C.c.key, C.c.value)
)
NEW_COUNTER = Prepared(
    insert(C)
    .values(namespace=bindparam("namespace"), key=bindparam("key"), value=bindparam("value"))
    .returning(C.c.id, C.c.value)
)
COUNTERS = Prepared(
    select(C.c.key, C.c.value).where(C.c.namespace == bindparam("namespace")).order_by(C.c.key)
)


async def test_writes_in_a_unit_commit_or_roll_back_with_it(committed_database: Database) -> None:
    async with committed_database.uow() as uow:
        uow.session.add(Counter(namespace="tx", key="a", value=1))
        await uow.flush()  # an ORM write of the same transaction, then direct ones
        created = await NEW_COUNTER.one_or_none(uow.session, namespace="tx", key="b", value=5)
        assert created is not None
        assert created["value"] == 5
        bumped = await BUMP.all(uow.session, namespace="tx", by=10)
        assert sorted(bumped, key=lambda row: row["key"]) == [
            {"key": "a", "value": 11},
            {"key": "b", "value": 15},
        ]
        await uow.commit()
    async with committed_database.uow() as uow:
        await BUMP.all(uow.session, namespace="tx", by=100)  # sends the BEGIN
        await BUMP.all(uow.session, namespace="tx", by=1000)  # on asyncpg: the driver, inside
        assert {r["value"] for r in await COUNTERS.all(uow.session, namespace="tx")} == {
            1111,
            1115,
        }
        # leaving without commit: both UPDATEs are rolled back
    async with committed_database.uow(read_only=True) as uow:
        rows = await COUNTERS.all(uow.session, namespace="tx")
    assert rows == [{"key": "a", "value": 11}, {"key": "b", "value": 15}]


async def test_a_refused_write_is_typed_and_the_unit_rolls_back(
    committed_database: Database,
) -> None:
    async with committed_database.uow() as uow:
        await NEW_COUNTER.all(uow.session, namespace="dup", key="k", value=1)
        await uow.commit()
    async with committed_database.uow() as uow:
        await BUMP.all(uow.session, namespace="dup", by=1)
        with pytest.raises(DBAPIError) as caught:  # (namespace, key) is unique
            await NEW_COUNTER.all(uow.session, namespace="dup", key="k", value=2)
        assert isinstance(translate(caught.value), Duplicate)
        await uow.rollback()
        assert await COUNTERS.all(uow.session, namespace="dup") == [{"key": "k", "value": 1}]


def test_statements_the_direct_path_cannot_run_as_the_session_would_are_refused() -> None:
    a = ToolkitBase.metadata.tables["article"]
    with pytest.raises(TypeError, match="RETURNING"):
        Prepared(update(C).values(value=1))
    with pytest.raises(ValueError, match="updated_at"):  # TimestampMixin's onupdate
        Prepared(update(a).values(title="x").returning(a.c.id))
    with pytest.raises(ValueError, match="created_at"):  # TimestampMixin's default
        authors = ToolkitBase.metadata.tables["author"]
        Prepared(insert(authors).values(name="x", email="y").returning(authors.c.id))


def test_orm_statements_and_expanding_in_are_refused() -> None:
    with pytest.raises(TypeError, match="Core statements"):
        Prepared(select(Ticket))
    with pytest.raises(TypeError, match="Core statements"):  # an ORM attribute anywhere
        Prepared(select(T.c.id).where(Ticket.title == "x"))
    with pytest.raises(ValueError, match="expanding IN"):
        Prepared(select(T.c.id).where(T.c.id.in_(bindparam("ids", expanding=True))))


async def test_statement_listeners_see_every_read(
    committed_database: Database, toolkit_engine: AsyncEngine
) -> None:
    await _add_tickets(committed_database)
    # A listener the direct path cannot serve (e.g. tracing): the read goes the session's way.
    async with (
        count_queries(toolkit_engine) as queries,
        committed_database.uow(read_only=True) as uow,
    ):
        assert len(await OPEN_TICKETS.all(uow.session, min_price=Decimal(0))) == 3
        assert uow.session.in_transaction()
    assert queries.count == 1
    # agora.db.monitoring registers with the direct path, which reports to it.
    registry = CollectorRegistry()
    instrumentation = instrument(toolkit_engine, registry=registry, name="prepared")
    try:
        async with committed_database.uow(read_only=True) as uow:
            await OPEN_TICKETS.all(uow.session, min_price=Decimal(0))
            assert not uow.session.in_transaction()
    finally:
        instrumentation.remove()
    labels = {"pool": "prepared"}
    assert registry.get_sample_value("db_statements_total", labels) == 1
    assert registry.get_sample_value("db_statement_duration_seconds_count", labels) == 1


# --- PostgreSQL: timeouts, lost connections, cancellation ---------------------------------

SLEEP = Prepared(select(func.pg_sleep(bindparam("seconds", type_=Float)).label("slept")))
PID = Prepared(select(func.pg_backend_pid().label("pid")))


async def test_a_statement_timeout_is_typed_and_keeps_the_connection(pg_database_url: str) -> None:
    db = Database(
        make_engine(pg_database_url, pool_size=1, max_overflow=0, statement_timeout_ms=100)
    )
    try:
        async with db.uow(read_only=True) as uow:
            before = await PID.scalar(uow.session)
            await SLEEP.scalar(uow.session, seconds=0)  # column types known: on the driver now
            with pytest.raises(DBAPIError) as caught:
                await SLEEP.scalar(uow.session, seconds=2)
            assert isinstance(translate(caught.value), DatabaseTimeout)
            assert not caught.value.connection_invalidated
            assert await PID.scalar(uow.session) == before  # still the same, healthy connection
    finally:
        await db.dispose()


@pytest.fixture
async def single_connection(pg_database_url: str) -> AsyncIterator[Database]:
    """A `Database` with a pool of one connection: whether it is replaced shows."""
    db = Database(make_engine(pg_database_url, pool_size=1, max_overflow=0))
    yield db
    await db.dispose()


@pytest.fixture
async def other_connection(pg_database_url: str) -> AsyncIterator[AsyncConnection]:
    """A connection of its own, to act on or watch the server from outside."""
    engine = make_engine(pg_database_url, pool_size=1, max_overflow=0)
    async with engine.connect() as conn:
        yield conn
    await engine.dispose()


async def test_a_lost_connection_is_invalidated_not_reused(
    single_connection: Database, other_connection: AsyncConnection
) -> None:
    db = single_connection
    async with db.uow(read_only=True) as uow:
        pid = await PID.scalar(uow.session)
    await other_connection.execute(select(func.pg_terminate_backend(pid)))
    async with db.uow(read_only=True) as uow:
        with pytest.raises(DBAPIError) as caught:
            await PID.scalar(uow.session)
        assert caught.value.connection_invalidated
        assert isinstance(translate(caught.value), ServiceUnavailable)
        assert await PID.scalar(uow.session) not in (None, pid)  # a fresh connection


async def test_a_cancelled_read_does_not_hand_its_connection_on(
    single_connection: Database, other_connection: AsyncConnection
) -> None:
    db = single_connection
    async with db.uow(read_only=True) as uow:
        pid = await PID.scalar(uow.session)
        await SLEEP.scalar(uow.session, seconds=0)  # column types known: on the driver now
        sleeping = asyncio.create_task(SLEEP.scalar(uow.session, seconds=30))
        # Cancel only once the server runs the statement (not while it is being sent).
        running = text("SELECT wait_event FROM pg_stat_activity WHERE pid = :pid")
        for _ in range(500):  # 10 s at most
            if (await other_connection.execute(running, {"pid": pid})).scalar() == "PgSleep":
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the statement never started on the server")
        sleeping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeping
    # The connection was mid-statement: it is discarded, and the pool works on at once.
    async with asyncio.timeout(5):
        async with db.uow(read_only=True) as uow:
            assert await PID.scalar(uow.session) != pid
        async with db.uow() as uow:
            one = await uow.session.scalar(select(func.count()).select_from(select(1).subquery()))
            assert one == 1
